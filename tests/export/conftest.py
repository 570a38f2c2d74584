"""Fixtures for the export tests: a tiny synthetic LeRobot dataset and a tiny real (untrained) ACT checkpoint.

The checkpoint is a real `ACTPolicy` (ResNet18 backbone, a 32-wide transformer) saved through
`edgeact.train.checkpoint.save_checkpoint`, so export reads exactly what training writes.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

CAMERAS = ("observation.images.top", "observation.images.wrist")
IMAGE_HW = (64, 48)  # ResNet18 downsamples by 32: a 2x2 feature map, so the sine embedding is not trivial
TINY_POLICY = {
    "chunk_size": 8,
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 4,
}


def make_checkpoint(output: Path, dataset_root: Path, *, cameras=CAMERAS, seed: int = 0, **policy_kw) -> Path:
    """A checkpoint of a randomly initialised tiny ACTPolicy for `dataset_root`; returns the run folder."""
    from edgeact.train.checkpoint import save_checkpoint
    from edgeact.train.config import ACTConfig
    from edgeact.train.data import LeRobotDataset
    from edgeact.train.model import ACTPolicy

    meta = LeRobotDataset(dataset_root).meta
    keys = [*cameras, "observation.state", "action"]
    features = {k: dict(meta.features[k]) for k in keys}
    stats = {k: meta.stats[k] for k in keys}
    cfg = ACTConfig(**{**TINY_POLICY, **policy_kw})
    torch.manual_seed(seed)
    policy = ACTPolicy(cfg, features, stats).eval()
    config = {
        "policy": cfg.to_dict(),
        "dataset": {
            "id": str(dataset_root),
            "root": str(dataset_root),
            "fps": meta.fps,
            "features": features,
            "stats": stats,
            "camera_keys": list(cameras),
        },
        "train": {"steps": 0},
    }
    save_checkpoint(output, 0, policy=policy, config=config)
    return output


@pytest.fixture(scope="session")
def checkpoint_factory():
    """`make_checkpoint(output, dataset_root, cameras=..., **policy_kw)` for tests with their own dataset."""
    return make_checkpoint


@pytest.fixture(scope="session")
def tiny() -> SimpleNamespace:
    """The tiny configuration's constants, for assertions."""
    return SimpleNamespace(cameras=CAMERAS, image_hw=IMAGE_HW, policy=TINY_POLICY, state_dim=3, action_dim=4)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeact.train.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("export-data") / "tiny"
    return make_synthetic_dataset(
        root, episodes=2, length=12, cameras=CAMERAS, image_hw=IMAGE_HW, state_dim=3, action_dim=4
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("export-run") / "run", tiny_dataset)
