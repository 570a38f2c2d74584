"""Shared test fixtures: where the real datasets live, and markers that skip what this machine cannot run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path:
    """The real PushT data (zarr + LeRobot v3.0 metadata); tests that need it skip when it is absent."""
    return Path(os.environ.get("EDGEACT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    path = shared_datasets_dir()
    if not (path / "pusht_cchi_v7_replay.zarr").is_dir():
        pytest.skip(f"real PushT data not found at {path} (set EDGEACT_SHARED_DATASETS)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _frame_cache_dir(tmp_path_factory):
    """Frame caches built during tests go to a session folder, never into the user's ~/.cache."""
    old = os.environ.get("EDGEACT_CACHE_DIR")
    os.environ["EDGEACT_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgeact_cache"))
    yield
    if old is None:
        os.environ.pop("EDGEACT_CACHE_DIR", None)
    else:
        os.environ["EDGEACT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A synthetic LeRobot v3.0 dataset: 3 episodes x 30 frames, one 64x64 camera, state 2, action 2, 10 fps.
    Variants: `edgeact.train.data.synthetic.make_synthetic_dataset(root, cameras=..., state_dim=...)`."""
    from edgeact.train.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="session")
def pusht_dataset(shared_datasets, tmp_path_factory) -> Path:
    """The real PushT (206 episodes) imported once per session from the shared zarr into v3.0 (~25 s)."""
    from edgeact.train.data import import_diffusion_policy_zarr

    zarr_path = shared_datasets / "pusht_cchi_v7_replay.zarr"
    return import_diffusion_policy_zarr(zarr_path, tmp_path_factory.mktemp("pusht") / "pusht", progress=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip hardware/GPU/TensorRT tests unless their dependency is importable here."""
    import importlib.util

    have_trt = importlib.util.find_spec("tensorrt") is not None
    have_lerobot = importlib.util.find_spec("lerobot") is not None
    run_hw = os.environ.get("EDGEACT_HARDWARE") == "1"
    for item in items:
        if "trt" in item.keywords and not have_trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed on this machine"))
        if "gpu" in item.keywords:
            try:
                import torch

                has_cuda = torch.cuda.is_available()
            except ImportError:
                has_cuda = False
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))
        if "lerobot" in item.keywords and not have_lerobot:
            item.add_marker(pytest.mark.skip(reason="the lerobot package is not installed"))
        if "hardware" in item.keywords and not run_hw:
            item.add_marker(pytest.mark.skip(reason="needs real hardware; set EDGEACT_HARDWARE=1"))
