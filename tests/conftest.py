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
