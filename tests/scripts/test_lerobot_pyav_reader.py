"""scripts/lerobot_pyav_reader.py: the PyAV reader that LeRobot's pyav decode path gets in the benchmarks.
It must seek to the keyframe at or before a time and decode forward, with frames as (C, H, W) uint8 and pts
in seconds, as torchvision's pyav `VideoReader` did."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from edgeact.train.data.video import VideoEncoder, VideoSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from lerobot_pyav_reader import PyAVVideoReader


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    # frame n is a flat grey of 8 n, so a decoded frame says which one it is (lossy: within a few levels)
    frames = np.stack([np.full((32, 48, 3), 8 * n, np.uint8) for n in range(30)])
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    enc = VideoEncoder(path, fps=10, height=32, width=48, settings=VideoSettings(codec="av1", gop=4, crf=20))
    enc.write(frames)
    enc.close()
    return path, frames


def _index(frame: torch.Tensor) -> int:
    return round(float(frame.float().mean()) / 8)


def test_seek_lands_on_the_keyframe_before_and_decodes_forward(video: tuple[Path, np.ndarray]) -> None:
    path, _ = video
    reader = PyAVVideoReader(str(path), "video")
    reader.seek(1.5, keyframes_only=True)  # frame 15; keyframes every 4 frames: 12 is the one before
    got = []
    for frame in reader:
        assert frame["data"].shape == (3, 32, 48) and frame["data"].dtype == torch.uint8
        got.append((round(frame["pts"] * 10), _index(frame["data"])))
        if frame["pts"] >= 1.7:
            break
    assert got == [(12, 12), (13, 13), (14, 14), (15, 15), (16, 16), (17, 17)]
    reader.container.close()


def test_iterating_without_seek_starts_at_the_first_frame(video: tuple[Path, np.ndarray]) -> None:
    path, frames = video
    reader = PyAVVideoReader(str(path))
    pts = [f["pts"] for f in reader]
    assert len(pts) == len(frames) and pts[0] == 0.0 and np.allclose(np.diff(pts), 0.1)
    with pytest.raises(ValueError, match="video"):
        PyAVVideoReader(str(path), "audio")
