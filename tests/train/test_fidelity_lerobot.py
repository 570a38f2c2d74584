"""scripts/fidelity_lerobot.py against the real `lerobot` package (marked `lerobot`, skipped without it): on a
tiny keypoint-shaped dataset, our training step and LeRobot's give the same losses from the same weights
(dropout 0), and both validation L1s agree before training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.lerobot

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fidelity_lerobot.py"
TINY = ["--dim-model", "32", "--n-heads", "4", "--dim-feedforward", "64", "--n-encoder-layers", "2"]
TINY += ["--n-vae-encoder-layers", "1", "--chunk-size", "8", "--batch-size", "16", "--holdout-every", "4"]


def _script():
    spec = importlib.util.spec_from_file_location("fidelity_lerobot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keypoint_dataset(root: Path) -> Path:
    """PushT-keypoints-shaped: state (2), environment state (16), action (2); 8 episodes of 25-32 frames."""
    from edgeact.train.data.writer import LeRobotWriter

    def vec(n: int) -> dict:
        return {"dtype": "float32", "shape": [n], "names": [f"v{i}" for i in range(n)]}

    features = {"observation.state": vec(2), "observation.environment_state": vec(16), "action": vec(2)}
    rng = np.random.default_rng(0)
    with LeRobotWriter(root, fps=10, features=features, robot_type="synthetic") as writer:
        for ep in range(8):
            n = 25 + ep
            walk = np.cumsum(rng.normal(size=(n + 1, 2)), axis=0).astype(np.float32)  # (T+1, 2)
            env = (walk[:-1] @ rng.normal(size=(2, 16)) + 50).astype(np.float32)  # (T, 16)
            writer.add_episode(
                {
                    "observation.state": walk[:-1] * 10,
                    "observation.environment_state": env,
                    "action": walk[1:],
                },
                task="keypoints",
            )
    return root


def _build(tmp_path: Path, extra: list[str]):
    fid = _script()
    from edgeact.train.lerobot_import import ensure_torchvision_importable

    ensure_torchvision_importable()
    torch.set_num_threads(1)
    args = fid.parse_args(["--dataset", str(_keypoint_dataset(tmp_path / "kp")), *TINY, *extra])
    trainer, val, held = fid.build_ours(args, tmp_path)
    lr_policy, pre, opt, clip = fid.build_lerobot(trainer, args)
    fid.copy_weights(lr_policy, trainer.policy)
    return fid, args, trainer, val, held, lr_policy, pre, opt, clip


def test_same_weights_same_losses_without_dropout(tmp_path):
    fid, _, trainer, _, held, lr_policy, pre, opt, clip = _build(tmp_path, ["--dropout", "0"])
    assert held == [0, 4]
    rows = fid.check_mechanics(trainer, lr_policy, pre, opt, clip, 3)
    for row in rows:
        # fp32 reductions in another order (fused vs foreach AdamW, LeRobot's normalizer outside the model).
        assert row["loss_diff"] <= 1e-5 * row["loss_ours"], row
        assert row["grad_norm_ours"] == pytest.approx(row["grad_norm_lerobot"], rel=1e-4), row
        assert row["max_weight_diff"] < 1e-5, row


def test_validation_agrees_before_training_and_curves_are_written(tmp_path):
    fid, args, trainer, val, _, lr_policy, pre, opt, clip = _build(
        tmp_path, ["--samples", "64", "--eval-every", "32"]
    )
    v_o, v_l, gap = fid.validation_l1(trainer.policy, lr_policy, pre, fid.val_batches(val, 7))
    assert gap < 1e-5
    assert v_o == pytest.approx(v_l, rel=1e-5)
    result = fid.train_both(trainer, val, lr_policy, pre, opt, clip, args)
    curve = result["curve"]
    assert curve["samples"] == [0, 32, 64]
    assert all(np.isfinite(curve["val_l1_ours"])) and all(np.isfinite(curve["val_l1_lerobot"]))
    assert curve["train_l1_ours"][0] is None and curve["train_l1_lerobot"][-1] > 0
