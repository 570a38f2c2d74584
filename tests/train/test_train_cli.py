"""`train-act`: flags and dotted overrides, resume rules, clear errors, SIGINT saves and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from edgeact.train.checkpoint import load_training_state, read_config
from edgeact.train.cli import main, split_overrides
from edgeact.train.train_config import ConfigError
from train_run_helpers import OneThread, tiny_cli


@pytest.fixture(autouse=True)
def _one_thread():
    with OneThread():
        yield


def test_split_overrides_forms():
    assert split_overrides(["--policy.chunk_size=50", "--lr", "3e-5", "--eval.mode=chunk"]) == [
        "policy.chunk_size=50",
        "lr=3e-5",
        "eval.mode=chunk",
    ]
    with pytest.raises(ConfigError, match="has no value"):
        split_overrides(["--policy.chunk_size"])
    with pytest.raises(ConfigError, match="unexpected argument 'stray'"):
        split_overrides(["stray"])


def test_print_config_precedence(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\nbatch_size: 2\npolicy:\n  chunk_size: 30\n  n_action_steps: 30\n")
    assert main(["--config", str(f), "--steps", "9", "--policy.dim_model=256", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["steps"], cfg["batch_size"]) == (9, 2)
    assert (cfg["policy"]["chunk_size"], cfg["policy"]["dim_model"]) == (30, 256)
    assert main(["--dataset", "pusht", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["policy"]["chunk_size"] == 32  # the shipped PushT YAML


def test_train_then_resume_and_errors(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_cli(tiny_dataset, out, steps=2)) == 0
    assert "done at step 2" in capsys.readouterr().out
    assert load_training_state(out) == 2 and read_config(out)["train"]["steps"] == 2
    # Resume extends the run; the checkpoint's config is the base.
    assert main(["--output", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert load_training_state(out) == 3
    # A resumed run may not change the math.
    assert main(["--output", str(out), "--resume", "--steps", "4", "--lr=0.1"]) == 2
    assert "lr differ from the checkpoint" in capsys.readouterr().err
    # Starting a new run over an existing one is refused, nothing overwritten.
    assert main(tiny_cli(tiny_dataset, out, steps=2)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert load_training_state(out) == 3
    # Unknown dataset, unknown field, --resume without a checkpoint.
    assert main(tiny_cli(tmp_path / "no_such_dataset", tmp_path / "r2")) == 2
    assert "no_such_dataset" in capsys.readouterr().err
    assert main(tiny_cli(tiny_dataset, tmp_path / "r3", policy={"chunk_sise": 5})) == 2
    assert "policy.chunk_sise" in capsys.readouterr().err
    assert main(["--output", str(tmp_path / "r4"), "--resume"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_sigint_saves_and_exits_cleanly(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    args = tiny_cli(tiny_dataset, out, steps=100_000, save_every=100_000, num_threads=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeact.train.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted at step" in stdout
    step = load_training_state(out)
    assert 2 <= step < 100_000
    assert (out / "checkpoints/last").resolve().name == f"{step:06d}"
    last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert last_logged == step
