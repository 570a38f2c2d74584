"""Checkpoints: safetensors + JSON only, atomic `last`, exact optimizer/scheduler/RNG restore, schema."""

from __future__ import annotations

import json

import pytest
import torch
from edgeact.train import checkpoint as ck
from edgeact.train.config import ACTConfig
from edgeact.train.model import ACTPolicy
from edgeact.train.optim import make_optimizer, make_scheduler
from edgeact.train.train_config import config_to_dict, load_train_config
from train_run_helpers import TINY_POLICY, OneThread

FEATURES = {
    "observation.image": {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channel"]},
    "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
    "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
}
STATS = {
    "observation.image": {"mean": [[[0.4]], [[0.5]], [[0.6]]], "std": [[[0.2]], [[0.25]], [[0.3]]]},
    "observation.state": {
        "mean": [250.0, 260.0],
        "std": [90.0, 80.0],
        "min": [10.0, 12.0],
        "max": [500.0, 505.0],
    },
    "action": {"mean": [240.0, 255.0], "std": [95.0, 85.0], "min": [8.0, 9.0], "max": [510.0, 511.0]},
}


@pytest.fixture(autouse=True)
def _one_thread():
    with OneThread():
        yield


def _setup(tmp_path, scheduler="cosine"):
    cfg = load_train_config(
        overrides={"policy": TINY_POLICY, "output": str(tmp_path / "run"), "scheduler": scheduler,
                   "warmup_steps": 2, "steps": 10, "lr": 1e-3}
    )  # fmt: skip
    torch.manual_seed(0)
    policy = ACTPolicy(cfg.policy, FEATURES, STATS)
    opt = make_optimizer(policy, cfg, torch.device("cpu"))
    sched = make_scheduler(opt, cfg)
    return cfg, policy, opt, sched


def _batch(n=3, k=5):
    g = torch.Generator().manual_seed(1)
    return {
        "observation.image": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        "observation.state": torch.rand(n, 2, generator=g) * 500,
        "action": torch.rand(n, k, 2, generator=g) * 500,
        "action_is_pad": torch.zeros(n, k, dtype=torch.bool),
    }


def _step(policy, opt, sched):
    loss, _ = policy(_batch())
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def _doc(cfg):
    return {"policy": config_to_dict(cfg.policy), "dataset": {"id": "x", "fps": 10, "features": FEATURES,
            "stats": STATS, "camera_keys": ["observation.image"]}, "train": config_to_dict(cfg)}  # fmt: skip


def test_round_trip_restores_everything(tmp_path):
    cfg, policy, opt, sched = _setup(tmp_path)
    for _ in range(3):
        _step(policy, opt, sched)
    torch.manual_seed(123)
    step_dir = ck.save_checkpoint(
        cfg.output, 3, policy=policy, config=_doc(cfg), optimizer=opt, scheduler=sched
    )
    expected_rng = torch.rand(4)
    # Only safetensors and JSON: nothing that needs pickle to read.
    files = sorted(p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file())
    assert files == ["config.json", "model.safetensors", "training_state/state.json",
                     "training_state/state.safetensors"]  # fmt: skip
    assert (tmp_path / "run/checkpoints/last").resolve() == step_dir
    doc = json.loads((step_dir / "config.json").read_text())
    assert (
        doc["schema_version"] == ck.SCHEMA_VERSION and doc["step"] == 3 and doc["policy"]["chunk_size"] == 5
    )

    _, policy2, opt2, sched2 = _setup(tmp_path)
    ck.load_weights(policy2, step_dir)
    assert ck.load_training_state(step_dir, opt2, sched2) == 3
    assert torch.equal(torch.rand(4), expected_rng)  # RNG state restored
    assert sched2.state_dict() == sched.state_dict()
    for p, q in zip(policy.parameters(), policy2.parameters(), strict=True):
        assert torch.equal(p, q)
        for name, v in opt.state[p].items():
            assert torch.equal(v, opt2.state[q][name])
    # One more identical step on both gives identical weights (the optimizer really continues).
    torch.manual_seed(5)
    _step(policy, opt, sched)
    torch.manual_seed(5)
    _step(policy2, opt2, sched2)
    for p, q in zip(policy.parameters(), policy2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_load_policy_from_run_last_or_step(tmp_path):
    cfg, policy, _, _ = _setup(tmp_path)
    ck.save_checkpoint(cfg.output, 1, policy=policy, config=_doc(cfg))
    step = ck.save_checkpoint(cfg.output, 2, policy=policy, config=_doc(cfg))
    policy.eval()
    b = _batch(2)
    ref = policy.predict_chunk({"observation.image": b["observation.image"]}, b["observation.state"])
    for where in (tmp_path / "run", tmp_path / "run/checkpoints/last", step):
        loaded, doc = ck.load_policy(where)
        assert not loaded.training and doc["step"] == 2 and isinstance(loaded.config, ACTConfig)
        out = loaded.predict_chunk({"observation.image": b["observation.image"]}, b["observation.state"])
        assert torch.equal(out, ref)
    with pytest.raises(ck.CheckpointError, match="not a checkpoint"):
        ck.load_policy(tmp_path)


def test_other_schema_version_is_refused(tmp_path):
    cfg, policy, _, _ = _setup(tmp_path)
    step = ck.save_checkpoint(cfg.output, 1, policy=policy, config=_doc(cfg))
    doc = json.loads((step / "config.json").read_text())
    doc["schema_version"] = 99
    (step / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ck.CheckpointError, match=r"schema_version 99.*reads schema_version 1"):
        ck.load_policy(step)


def test_failed_save_leaves_last_and_no_partial_folder(tmp_path, monkeypatch):
    cfg, policy, opt, sched = _setup(tmp_path)
    good = ck.save_checkpoint(cfg.output, 1, policy=policy, config=_doc(cfg), optimizer=opt, scheduler=sched)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_write_json", boom)
    with pytest.raises(
        ck.CheckpointError, match=r"cannot write checkpoint .*000002: .*No space left.*000001"
    ):
        ck.save_checkpoint(cfg.output, 2, policy=policy, config=_doc(cfg))
    root = tmp_path / "run/checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["000001", "last"]
    assert (root / "last").resolve() == good


def test_keep_prunes_old_step_folders(tmp_path):
    cfg, policy, _, _ = _setup(tmp_path)
    for s in (1, 2, 3):
        ck.save_checkpoint(cfg.output, s, policy=policy, config=_doc(cfg), keep=2)
    root = tmp_path / "run/checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["000002", "000003", "last"]
