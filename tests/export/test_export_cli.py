"""`export-policy` on bad input: each failure has its exit code and message, and nothing is written."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from edgeact.export import artifact, verify
from edgeact.export.cli import main


def _copy_checkpoint(run: Path, dst: Path) -> Path:
    """A real copy of the newest step folder, safe to edit."""
    step = dst / "step"
    shutil.copytree((run / "checkpoints" / "last").resolve(), step)
    return step


def _edit_config(step: Path, edit) -> None:
    path = step / "config.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_not_a_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    rc, text = _run(capsys, [str(junk), "--output", str(out / "policy.onnx")])
    assert rc == 3 and "not a checkpoint" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, text = _run(capsys, [str(empty), "--output", str(out / "policy.onnx")])
    assert rc == 3 and str(empty) in text
    rc, text = _run(capsys, [str(tmp_path / "missing"), "--output", str(out / "policy.onnx")])
    assert rc == 3 and "no such checkpoint" in text
    assert not list(out.iterdir())


def test_unknown_schema_version(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    step = _copy_checkpoint(tiny_checkpoint, tmp_path)
    _edit_config(step, lambda doc: doc.update(schema_version=99))
    rc, text = _run(capsys, [str(step), "--output", str(tmp_path / "policy.onnx")])
    assert rc == 3 and "schema_version" in text and "99" in text
    assert not (tmp_path / "policy.onnx").exists() and not (tmp_path / "policy.json").exists()


def test_missing_stats(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    step = _copy_checkpoint(tiny_checkpoint, tmp_path)
    _edit_config(step, lambda doc: doc["dataset"]["stats"].pop("action"))
    rc, text = _run(capsys, [str(step), "--output", str(tmp_path / "policy.onnx")])
    assert rc == 3 and "stats" in text and "'action'" in text
    assert not (tmp_path / "policy.onnx").exists()


def test_output_folder_is_created_and_files_follow_the_umask(
    tiny_checkpoint: Path, tiny_dataset: Path, checkpoint_factory, tmp_path: Path, capsys
) -> None:
    """Issue 12: the output folder is created; model and sidecar get the umask's mode, not mkstemp's 0600
    (a robot service running as another user must read them)."""
    old = os.umask(0o022)
    try:
        argv = ["--parity-frames", "0", "--parity-random", "1"]
        rc, text = _run(capsys, [str(tiny_checkpoint), "--output", str(tmp_path / "deploy" / "v1"), *argv])
        assert rc == 0, text
        out = tmp_path / "deploy" / "v1"
        assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.onnx"]
        assert {stat.S_IMODE((out / n).stat().st_mode) for n in ("policy.onnx", "policy.json")} == {0o644}
        os.umask(0o077)
        (tmp_path / "private").mkdir()
        artifact.write_artifact(tmp_path / "private" / "p.onnx", b"model", {"schema_version": 2})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private" / "p.onnx").stat().st_mode) == 0o600
    old = os.umask(0o022)
    try:  # the checkpoint export reads: safetensors alone would create it 0600
        run = checkpoint_factory(tmp_path / "run", tiny_dataset)
    finally:
        os.umask(old)
    files = [p for p in (run / "checkpoints").rglob("*") if p.is_file() and not p.is_symlink()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, text = _run(capsys, [str(tiny_checkpoint), "--output", str(blocker / "policy.onnx")])
    assert rc == 4 and "cannot create the output folder" in text and str(blocker) in text
    rc, text = _run(capsys, [str(tiny_checkpoint), "--output", str(tmp_path / "policy.pt")])
    assert rc == 4 and ".onnx" in text


def test_onnx_input_needs_trt_format(tmp_path: Path, capsys) -> None:
    fake = tmp_path / "policy.onnx"
    fake.write_bytes(b"\x00")
    rc, text = _run(capsys, [str(fake), "--output", str(tmp_path / "out.onnx")])
    assert rc == 3 and "needs a checkpoint" in text


def test_parity_failure_writes_nothing(tiny_checkpoint: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """With a zero tolerance the float32 round-off alone fails the check (legacy exporter, opset 17)."""
    monkeypatch.setattr(verify, "ONNX_PARITY_TOLERANCE", 0.0)
    monkeypatch.setattr(verify, "PARITY_FACTOR", 0.0)
    argv = [str(tiny_checkpoint), "--output", str(tmp_path), "--exporter", "legacy", "--parity-frames", "2"]
    rc, text = _run(capsys, [*argv, "--parity-random", "1"])
    assert rc == 5 and "FAILED" in text and "nothing written" in text
    assert "max abs normalized" in text
    assert not list(tmp_path.iterdir())


def test_int8_over_the_bound_is_refused(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    argv = [str(tiny_checkpoint), "--output", str(tmp_path / "policy.onnx"), "--quantize", "int8"]
    rc, text = _run(capsys, [*argv, "--parity-frames", "2", "--parity-random", "1"])
    assert rc == 6 and "--force" in text and "nothing written" in text
    assert not list(tmp_path.iterdir())


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    real_replace = artifact.os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the model's rename (after the journal's): nothing replaced yet
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(artifact.os, "replace", flaky_replace)
    with pytest.raises(artifact.OutputPathError, match="No space left"):
        artifact.write_artifact(tmp_path / "policy.onnx", b"model", {"schema_version": 1})
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_trt_without_tensorrt_says_how_to_build_on_the_target(tiny_checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "policy.engine"
    rc, text = _run(capsys, [str(tiny_checkpoint), "--format", "trt", "--output", str(out), "--fp16"])
    assert rc == 7
    assert "TensorRT is not installed" in text and "Jetson" in text
    assert "export-policy policy.onnx --format trt --output policy.engine --workspace-mb 1024 --fp16" in text
    assert (
        "trtexec --onnx=policy.onnx --saveEngine=policy.engine --memPoolSize=workspace:1024M --fp16" in text
    )
    assert not list(tmp_path.iterdir())


class _Killed(BaseException):
    """Stands for SIGKILL: no handler runs, whatever was renamed stays renamed."""


def _pair(folder: Path, model: bytes) -> tuple[Path, bytes, dict]:
    from edgeact.runtime.policy_io import STATE, PolicyIO, VectorInput

    io = PolicyIO((), (VectorInput(STATE, ("x",)),), ("a",), 2)
    sha = artifact.sha256_bytes(model)
    doc = {"schema_version": 2, "format": "onnx", "model_file": "policy.onnx", "model_sha256": sha,
           "graph_sha256": "0" * 64, **io.to_json(), "fps": 10}  # fmt: skip
    return folder / "policy.onnx", model, doc


def _kill_at_sidecar_rename(monkeypatch, error: BaseException) -> None:
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "policy.json":
            raise error
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def _consistent(folder: Path, model: bytes) -> None:
    from edgeact.runtime.artifact import load_artifact, sha256_file

    art = load_artifact(folder / "policy.onnx")
    assert (folder / "policy.onnx").read_bytes() == model
    assert art.model_sha256 == sha256_file(folder / "policy.onnx")  # the runtime's file check passes


@pytest.mark.parametrize("next_step", ["load", "export"])
def test_kill_between_the_two_renames_is_rolled_forward(tmp_path: Path, monkeypatch, next_step) -> None:
    """Issue 12: killed after the model's rename and before the sidecar's, the folder held the new model
    beside the old sidecar ("sha256 differs"). The next reader or exporter completes the change."""
    artifact.write_artifact(
        *_pair(tmp_path, b"old model"),
    )
    with monkeypatch.context() as m:
        _kill_at_sidecar_rename(m, _Killed())
        with pytest.raises(_Killed):
            artifact.write_artifact(*_pair(tmp_path, b"new model"))
    assert (tmp_path / "policy.onnx").read_bytes() == b"new model"  # the state a kill leaves
    if next_step == "load":
        _consistent(tmp_path, b"new model")
    else:
        artifact.write_artifact(*_pair(tmp_path, b"third model"))
        _consistent(tmp_path, b"third model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx"]


def test_interrupted_export_read_only_and_dead_temporaries(tmp_path: Path, monkeypatch) -> None:
    """A reader that may not write the folder reads the new pair without moving anything; temporary files
    of an export killed before its commit point are removed by the next export."""
    artifact.write_artifact(*_pair(tmp_path, b"old model"))
    with monkeypatch.context() as m:
        _kill_at_sidecar_rename(m, _Killed())
        with pytest.raises(_Killed):
            artifact.write_artifact(*_pair(tmp_path, b"new model"))
    before = sorted(p.name for p in tmp_path.iterdir())
    with monkeypatch.context() as m:
        _kill_at_sidecar_rename(m, PermissionError(13, "Permission denied"))
        _consistent(tmp_path, b"new model")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    dead = tmp_path / ".policy.onnx.999999999.x1.tmp"  # no such pid
    dead.write_bytes(b"half a model")
    artifact.write_artifact(*_pair(tmp_path, b"third model"))
    _consistent(tmp_path, b"third model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx"]


def test_parity_dataset_missing_a_camera_or_gone(
    tiny_checkpoint: Path, tmp_path: Path, capsys, checkpoint_factory
) -> None:
    """Issue 12: a two-camera checkpoint whose dataset lacks a camera raised KeyError in the parity step;
    a dataset that is not here fell back to random inputs silently. Both: a stderr warning, random inputs."""
    from edgeact.train.data.synthetic import make_synthetic_dataset

    one_cam = make_synthetic_dataset(
        tmp_path / "one_cam", episodes=1, length=10, cameras=("observation.images.top",), image_hw=(64, 48),
        state_dim=3, action_dim=4,
    )  # fmt: skip
    step = _copy_checkpoint(tiny_checkpoint, tmp_path)
    _edit_config(step, lambda doc: doc["dataset"].update(root=str(one_cam), id=str(one_cam), repo_id=None))
    argv = ["--parity-frames", "2", "--parity-random", "1"]
    rc = main([str(step), "--output", str(tmp_path / "a"), *argv])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: parity without real frames" in err and "observation.images.wrist" in err

    gone = tmp_path / "gone" / "pusht"
    _edit_config(
        step, lambda doc: doc["dataset"].update(root=str(gone), id="pusht_gone", repo_id="me/pusht_gone")
    )
    rc = main([str(step), "--output", str(tmp_path / "b"), *argv])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: parity without real frames" in err
    assert f"root {str(gone)!r}" in err and "repo_id 'me/pusht_gone'" in err
