"""What killed saves leave in `checkpoints/`, put right at the next start (checkpoint_recovery.py)."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch
from edgeact.train import checkpoint as ck
from edgeact.train.checkpoint_recovery import recover_checkpoints
from safetensors import SafetensorError
from test_checkpoint import _doc, _setup
from train_run_helpers import OneThread

DEAD_PID = 2**22 + 12345  # above the default pid_max: never a live process


@pytest.fixture(autouse=True)
def _one_thread():
    with OneThread():
        yield


@pytest.fixture
def saved(tmp_path):
    """A run with complete step folders 1 and 2, `last` -> 000002, `best` -> 000001."""
    cfg, policy, _, _ = _setup(tmp_path)
    for s in (1, 2):
        ck.save_checkpoint(cfg.output, s, policy=policy, config=_doc(cfg))
    ck.mark_best(ck.checkpoints_dir(cfg.output) / "000001", {"success_rate": 0.5, "avg_max_overlap": 0.5})
    return ck.checkpoints_dir(cfg.output)


def _names(root):
    return sorted(p.name for p in root.iterdir())


def test_leftover_tmp_folders_and_links_are_removed(saved):
    shutil.copytree(saved / "000002", saved / f".tmp-000003-{DEAD_PID}")
    os.symlink("000002", saved / f".last-{DEAD_PID}")
    os.symlink("000001", saved / f".best-{DEAD_PID}")
    (saved / "000001" / f".eval.json.{DEAD_PID}.tmp").write_text("{")
    done = recover_checkpoints(saved)
    assert len(done) == 4 and any("MB" in line for line in done)
    assert _names(saved) == ["000001", "000002", "best", "last"]
    assert _names(saved / "000001") == sorted(
        ["config.json", "eval.json", "model.safetensors", "training_state"]
    )
    assert recover_checkpoints(saved) == []  # nothing left to do


def test_kill_between_the_two_renames_restores_the_step(saved):
    # A re-save of step 2 killed after `000002` -> `.old-000002-PID` and before `.tmp-...` -> `000002`.
    os.rename(saved / "000002", saved / f".old-000002-{DEAD_PID}")
    shutil.copytree(saved / "000001", saved / f".tmp-000002-{DEAD_PID}")
    assert not (saved / "last").exists()  # dangling
    done = recover_checkpoints(saved)
    assert any("restored 000002" in line for line in done)
    assert _names(saved) == ["000001", "000002", "best", "last"]
    assert (saved / "last").resolve().name == "000002"
    assert ck.load_training_state(saved / "last") == 2


def test_dangling_last_and_best_are_repaired(saved):
    shutil.rmtree(saved / "000002")
    shutil.rmtree(saved / "000001" / "training_state")  # incomplete: not a target for `last`
    done = recover_checkpoints(saved)
    assert any("removed best" in line for line in done)
    assert any("removed last" in line for line in done)
    assert _names(saved) == ["000001"]


def test_dangling_last_points_at_the_newest_complete_step(saved):
    shutil.rmtree(saved / "000002")
    recover_checkpoints(saved)
    assert (saved / "last").resolve().name == "000001"
    assert (saved / "best").resolve().name == "000001"


def test_live_writers_are_left_alone(saved):
    os.symlink("000002", saved / f".last-{os.getppid()}")
    assert recover_checkpoints(saved) == []


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), SafetensorError("Error while serializing: IoError")],
)
def test_disk_full_names_the_folder_and_keeps_last(saved, monkeypatch, error):
    def full(*a, **k):
        raise error

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(ck.CheckpointError) as info:
        ck.save_checkpoint(saved.parent, 3, policy=torch.nn.Linear(2, 2), config={"policy": {}})
    msg = str(info.value)
    assert "\n" not in msg and str(saved / "000003") in msg and "last still names 000002" in msg
    assert _names(saved) == ["000001", "000002", "best", "last"]


def test_failed_second_rename_puts_the_old_step_back(saved, monkeypatch):
    real = os.rename
    calls = []

    def flaky(src, dst):
        calls.append(str(src))
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "rename", flaky)
    with pytest.raises(ck.CheckpointError, match="Input/output error"):
        ck.save_checkpoint(saved.parent, 2, policy=torch.nn.Linear(2, 2), config={"policy": {}})
    monkeypatch.setattr(os, "rename", real)
    assert _names(saved) == ["000001", "000002", "best", "last"]
    assert ck.load_training_state(saved / "last") == 2
