"""`train-act` on bad input and after kills: resume rules, output folders, interrupted start-ups."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from edgeact.train import checkpoint as ck
from edgeact.train.checkpoint import load_training_state
from edgeact.train.cli import EXIT_ERROR, EXIT_INTERRUPTED, main
from train_run_helpers import OneThread, tiny_cli, weights


@pytest.fixture(autouse=True)
def _one_thread():
    with OneThread():
        yield


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A tiny run trained to step 3 (copied per test so tests may break it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with OneThread():
        assert main(tiny_cli(tiny_dataset, out, steps=3)) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out, symlinks=True)
    return out


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["--policy.dropout=0.5", "--policy.kl_weight=1.0"], ["policy.dropout", "policy.kl_weight"]),
        (["--policy.dim_model=128"], ["policy.dim_model"]),
    ],
)
def test_resume_refuses_policy_changes_by_name(run, capsys, overrides, named):
    before = weights(run)
    assert main(["--output", str(run), "--resume", "--steps", "5", *overrides]) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    for name in named:
        assert name in line
    assert load_training_state(run) == 3
    assert all((weights(run)[k] == v).all() for k, v in before.items())


def test_resume_with_fewer_steps_does_nothing(run, capsys):
    step_dir = (run / "checkpoints" / "last").resolve()
    mtime = (step_dir / "model.safetensors").stat().st_mtime_ns
    assert main(["--output", str(run), "--resume", "--steps", "2"]) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "--steps 2" in line and "step 3" in line and "nothing" in line
    assert (step_dir / "model.safetensors").stat().st_mtime_ns == mtime
    # The checkpoint's own step: nothing to train, said so, exit 0, nothing rewritten.
    assert main(["--output", str(run), "--resume", "--steps", "3"]) == 0
    assert "already at step 3" in capsys.readouterr().out
    assert (step_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_hand_edited_state_json_is_one_line(run, capsys):
    path = run / "checkpoints" / "last" / "training_state" / "state.json"
    state = json.loads(path.read_text())
    state["step"] = "three"
    path.write_text(json.dumps(state))
    assert main(["--output", str(run), "--resume", "--steps", "5"]) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "state.json" in line and "'step'" in line


def test_unwritable_output_fails_before_training(tiny_dataset, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(tiny_cli(tiny_dataset, blocker / "run", steps=2)) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert str(blocker / "run") in line and "--output" in line


def test_disk_full_while_saving_keeps_last(run, capsys, monkeypatch):
    import errno

    good = (run / "checkpoints" / "last").resolve()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_file", full)
    assert main(["--output", str(run), "--resume", "--steps", "4"]) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(run / "checkpoints") in line
    assert (run / "checkpoints" / "last").resolve() == good
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_ctrl_c_during_start_up(tiny_dataset, tmp_path, capsys, monkeypatch):
    import edgeact.train.loop as loop

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    assert main(tiny_cli(tiny_dataset, tmp_path / "run", steps=2)) == EXIT_INTERRUPTED
    line = _one_line(capsys.readouterr().err)
    assert "interrupted" in line and "before" in line


def _start(args, out):
    return subprocess.Popen(
        [sys.executable, "-m", "edgeact.train.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigterm_is_named_sigterm(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    proc = _start(tiny_cli(tiny_dataset, out, steps=100_000, save_every=100_000, num_threads=1), out)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "stopped by SIGTERM" in stderr and "SIGINT" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_is_one_clean_line(tiny_dataset, tmp_path, signum):
    out = tmp_path / "run"
    proc = _start(tiny_cli(tiny_dataset, out, steps=2, num_threads=1), out)
    time.sleep(1.0)  # inside the imports of torch and the dataset, before the loop
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr and "TORCH_LIBRARY" not in stderr, stderr
    if not (out / "metrics.jsonl").exists():  # the signal landed before the first step, as meant
        assert "interrupted before the run finished" in stderr


def test_resume_cleans_what_a_killed_save_left(run, caplog):
    root = run / "checkpoints"
    shutil.copytree(root / "000003", root / f".tmp-000004-{2**22 + 1}")
    os.rename(root / "000003", root / f".old-000003-{2**22 + 1}")  # killed between the two renames
    assert main(["--output", str(run), "--resume", "--steps", "4"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["000003", "000004", "last"]
    assert "restored 000003" in caplog.text and ".tmp-000004" in caplog.text
    assert load_training_state(run) == 4
