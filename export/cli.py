"""`export-policy`: a checkpoint in; a policy artifact (ONNX or TensorRT engine, plus policy.json) out.

    export-policy outputs/train/checkpoints/last --output policy.onnx
    export-policy outputs/train --output policy.onnx --quantize int8        # CPU targets
    export-policy policy.onnx --format trt --output policy.engine --fp16    # on the Jetson, from the ONNX

Every export checks parity (PyTorch vs ONNX Runtime on dataset frames and random inputs) and writes nothing
when it fails. Exit codes: 0 ok, 2 usage, 3 bad checkpoint or artifact, 4 bad output path, 5 parity failure,
6 int8 loss over its bound, 7 TensorRT not available here, 8 TensorRT build failure, 1 any other export error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeact.export.errors import CheckpointError, ExportError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export-policy",
        description="Export an ACT checkpoint to ONNX (normalization inside the graph) or a TensorRT engine.",
    )
    p.add_argument(
        "checkpoint", type=Path, help="checkpoint step folder, `last`, run folder, or (trt) a policy.onnx"
    )
    p.add_argument("--format", choices=("onnx", "trt"), default="onnx")
    p.add_argument(
        "--output", "-o", type=Path, help="model file or existing folder (default ./policy.onnx|engine)"
    )
    g = p.add_argument_group("onnx")
    g.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo")
    g.add_argument(
        "--opset", type=int, default=None, help="ONNX opset (default 18; legacy exporter: 17 works)"
    )
    g.add_argument("--no-fold", action="store_true", help="keep input-independent subgraphs as nodes")
    g.add_argument(
        "--parity-frames", type=int, default=8, help="dataset frames in the parity check (0: none)"
    )
    g.add_argument("--parity-random", type=int, default=4, help="random inputs in the parity check (>= 1)")
    q = p.add_argument_group("int8 (CPU targets)")
    q.add_argument("--quantize", choices=("int8",), default=None)
    q.add_argument("--force", action="store_true", help="write the int8 model even when it loses too much")
    t = p.add_argument_group("tensorrt (on the target)")
    t.add_argument("--fp16", action="store_true", help="allow fp16 kernels")
    t.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace pool (MiB)")
    t.add_argument(
        "--timing-cache", type=Path, default=None, help="TensorRT timing cache file (read and updated)"
    )
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def _load(checkpoint: Path) -> tuple[Any, dict[str, Any], Any]:
    """(policy, config.json, PolicySpec); the config and its stats are checked before the weights load."""
    if not checkpoint.exists():
        raise CheckpointError(f"{checkpoint}: no such checkpoint")
    if checkpoint.is_file():
        raise CheckpointError(
            f"{checkpoint}: not a checkpoint (expected a step folder, `last` or a run folder)"
        )
    from edgeact.export.artifact import spec_from_checkpoint_config
    from edgeact.train.checkpoint import load_policy, read_config, resolve_checkpoint
    from edgeact.train.train_config import TrainError

    try:
        folder = resolve_checkpoint(checkpoint)
        spec = spec_from_checkpoint_config(read_config(folder), where=str(folder / "config.json"))
        policy, doc = load_policy(folder)
    except (TrainError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{checkpoint}: not a usable checkpoint: {err}") from err
    return policy, doc, spec


@dataclass
class Checked:
    """An in-memory export that passed parity, with what the later steps need."""

    spec: Any
    model: Any
    config: dict[str, Any]
    report: Any
    cases: list
    reference: Callable[[dict[str, Any]], Any]


def export_checked(args: argparse.Namespace) -> Checked:
    """Load, export in memory, fold, and check parity against PyTorch."""
    from edgeact.export import onnx as onnx_export
    from edgeact.export import verify
    from edgeact.export.errors import ParityError
    from edgeact.export.wrap import ExportWrapper, float64_runner, run_torch

    policy, doc, spec = _load(args.checkpoint)
    # torch sets up its own loggers on import; its exporter's notes (optional torchvision ops) are noise.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    opset = args.opset or (onnx_export.DEFAULT_OPSET if args.exporter == "dynamo" else 17)
    model, fold = onnx_export.export_onnx(
        policy, spec, exporter=args.exporter, opset=opset, fold=not args.no_fold
    )
    if fold is not None:
        print(
            f"folded {fold.folded_nodes} input-independent nodes into {fold.new_initializers} constants: "
            f"{fold.before.nodes} -> {fold.after.nodes} nodes, "
            f"{fold.before.bytes / 1e6:.2f} -> {fold.after.bytes / 1e6:.2f} MB"
        )
    cases, why_not = verify.dataset_cases(spec, doc, args.parity_frames)
    if why_not and args.parity_frames > 0:  # loud: random inputs say little about real camera frames
        print(
            f"export-policy: warning: parity without real frames: {why_not}; random inputs only",
            file=sys.stderr,
        )
    cases += verify.random_cases(spec, args.parity_random)
    wrapper = ExportWrapper(policy, spec).eval()

    def reference(feeds: dict[str, Any]) -> Any:
        return run_torch(wrapper, spec, feeds)

    report = verify.check_parity_f64(
        float64_runner(policy, spec),
        reference,
        verify.ort_runner(model.SerializeToString()),
        spec,
        cases,
        factor=verify.PARITY_FACTOR,
        floor=verify.ONNX_PARITY_TOLERANCE,
    )
    print(report.summary())
    if not report.passed:
        raise ParityError(f"{args.checkpoint}: {report.summary()}; nothing written")
    return Checked(spec, model, doc, report, cases, reference)


def export_checkpoint_onnx(args: argparse.Namespace) -> Path:
    """`--format onnx`: export with parity, optionally quantize, then write model and sidecar atomically."""
    from edgeact.export import onnx as onnx_export
    from edgeact.export.artifact import build_sidecar, check_output_path, sha256_bytes, write_artifact

    out = check_output_path(args.output or Path("policy.onnx"), ".onnx")
    checked = export_checked(args)
    spec, model = checked.spec, checked.model
    parity = checked.report.to_json()
    quantization = None
    if args.quantize:
        from edgeact.export.quantize import quantize_checked

        model, qreport = quantize_checked(
            model, spec, checked.cases, checked.reference, config=checked.config, force=args.force
        )
        print(qreport.parity.summary())
        print(qreport.summary())
        parity = {**qreport.parity.to_json(), "fp32": parity, "int8": qreport.to_json()}
        quantization = "int8"
    sidecar = build_sidecar(
        spec,
        fmt="onnx",
        model_file=out.name,
        model_sha256=None,
        graph_sha256=onnx_export.graph_sha256(model),
        parity=parity,
        quantization=quantization,
    )
    data = onnx_export.embed_metadata(model, sidecar)
    sidecar["model_sha256"] = sha256_bytes(data)
    model_path, json_path = write_artifact(out, data, sidecar)
    print(f"wrote {model_path} ({len(data) / 1e6:.2f} MB) and {json_path}")
    return model_path


def _quiet_onnxruntime(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # exporter internals, not the user's model
        logging.getLogger(noisy).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:  # the ONNX Runtime quantizer logs advice on the root logger
        handler.addFilter(_quiet_onnxruntime)
    if args.parity_random < 1:
        print("export-policy: --parity-random must be >= 1", file=sys.stderr)
        return 2
    try:
        if args.format == "trt":
            from edgeact.export.trt import export_engine_cli

            export_engine_cli(args)
        else:
            if args.checkpoint.suffix == ".onnx":
                raise CheckpointError(
                    f"{args.checkpoint}: already an ONNX policy; --format onnx needs a checkpoint"
                )
            export_checkpoint_onnx(args)
    except ExportError as err:
        print(f"export-policy: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
