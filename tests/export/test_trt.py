"""TensorRT engines from the ONNX artifact (need TensorRT and a GPU: marked `trt`, skipped here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from edgeact.export.cli import main
from edgeact.export.trt import TRT_FP16_TOLERANCE, TRT_FP32_TOLERANCE, target_instructions


def test_target_instructions_name_every_setting() -> None:
    text = target_instructions("runs/act", "arm.engine", fp16=False, workspace_mb=512, cache="t.cache")
    assert "export-policy runs/act --format onnx --output policy.onnx" in text
    assert (
        "export-policy policy.onnx --format trt --output arm.engine --workspace-mb 512 --timing-cache t.cache"
        in text
    )
    assert "--memPoolSize=workspace:512M" in text and "--timingCacheFile=t.cache" in text
    assert "--fp16" not in text


@pytest.mark.trt
@pytest.mark.parametrize("fp16", [False, True])
def test_engine_from_onnx_artifact(tiny_checkpoint: Path, tmp_path: Path, fp16: bool) -> None:
    onnx_path = tmp_path / "policy.onnx"
    assert main([str(tiny_checkpoint), "--output", str(onnx_path), "--parity-frames", "2"]) == 0
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    engine = engine_dir / "policy.engine"
    cache = tmp_path / "timing.cache"
    argv = [str(onnx_path), "--format", "trt", "--output", str(engine), "--timing-cache", str(cache)]
    assert main([*argv, *(["--fp16"] if fp16 else [])]) == 0
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    onnx_sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    assert sidecar["format"] == "tensorrt" and sidecar["model_file"] == "policy.engine"
    assert sidecar["model_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert sidecar["graph_sha256"] == onnx_sidecar["graph_sha256"]
    assert sidecar["inputs"] == onnx_sidecar["inputs"] and sidecar["outputs"] == onnx_sidecar["outputs"]
    assert {"gpu", "compute_capability", "tensorrt_version"} <= set(sidecar["engine"])
    assert sidecar["engine"]["precision"] == ("fp16" if fp16 else "fp32")
    assert sidecar["parity"]["max_abs_err_normalized"] <= (TRT_FP16_TOLERANCE if fp16 else TRT_FP32_TOLERANCE)
    assert cache.stat().st_size > 0
