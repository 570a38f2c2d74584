"""Camera capture threads: PyAV decoding, the synthetic source, newest-frame handover, stall detection."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest
from edgeact.runtime.cameras import (
    Camera,
    CameraConfig,
    CameraError,
    CameraRig,
    synthetic_image,
    synthetic_index,
)

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _write_video(path: Path, n_frames: int, width: int = 64, height: int = 48) -> None:
    """An mpeg4 file whose frame i is a solid COLORS[i % 3]."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[:] = COLORS[i % 3]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cam") / "clip.mp4"
    _write_video(path, 6)
    return path


def test_synthetic_pattern_round_trips_index() -> None:
    img = synthetic_image(70000, 8, 10)
    assert img.shape == (8, 10, 3) and img.dtype == np.uint8
    assert synthetic_index(img) == 70000


def test_file_camera_decodes_resizes_and_stalls_at_end(video: Path) -> None:
    cfg = CameraConfig("top", str(video), width=32, height=24, fps=100, stall_timeout_s=0.15)
    cam = Camera(cfg)
    assert cam.latest() is None and "not started" in cam.stall_reason()
    with cam:
        first = cam.wait_first_frame()
        assert first.image.shape == (24, 32, 3) and first.image.dtype == np.uint8
        assert np.abs(first.image.astype(int) - COLORS[0]).mean() < 20  # mpeg4 is lossy
        _wait_for(lambda: cam.stall_reason() is not None)
        last = cam.latest()
        assert last.index == 5  # all six frames were handed over, then nothing
        reason = cam.stall_reason()
        assert "stalled" in reason and "end of file" in reason and str(video) in reason


def test_looping_file_keeps_delivering(video: Path) -> None:
    cfg = CameraConfig("top", str(video), width=64, height=48, fps=200, loop=True, stall_timeout_s=0.5)
    with Camera(cfg) as cam:
        _wait_for(lambda: (f := cam.latest()) is not None and f.index >= 14)
        assert cam.stall_reason() is None
        frame = cam.latest()
        assert np.abs(frame.image.astype(int) - COLORS[frame.index % 6 % 3]).mean() < 20


def test_synthetic_camera_hands_over_newest_frame_and_reports_stall() -> None:
    cfg = CameraConfig("wrist", "synthetic", 16, 12, fps=200, stall_timeout_s=0.1, stall_after_frames=20)
    with Camera(cfg) as cam:
        _wait_for(lambda: (f := cam.latest()) is not None and f.index >= 5)
        f = cam.latest()
        assert synthetic_index(f.image) == f.index  # the image and its index travel together
        _wait_for(lambda: cam.stall_reason() is not None)
        assert cam.latest().index == 19
        assert "wrist (synthetic) stalled" in cam.stall_reason()


def test_stall_reason_uses_given_clock() -> None:
    cfg = CameraConfig("c", "synthetic", 8, 8, fps=100, stall_timeout_s=0.2)
    with Camera(cfg) as cam:
        frame = cam.wait_first_frame()
        assert cam.stall_reason(now=frame.timestamp + 0.1) is None
        assert "stalled" in cam.stall_reason(now=frame.timestamp + 10.0)


def test_missing_sources_raise_naming_the_source(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(CameraError, match=r"nope\.mp4 does not exist"):
        Camera(CameraConfig("top", str(missing), 8, 8)).start()
    with pytest.raises(CameraError, match="/dev/video97"):
        Camera(CameraConfig("top", "/dev/video97", 8, 8)).start()
    not_video = tmp_path / "x.mp4"
    not_video.write_bytes(b"not a video at all")
    with pytest.raises(CameraError, match=r"x\.mp4"):
        Camera(CameraConfig("top", str(not_video), 8, 8)).start()


def test_config_validation_names_field() -> None:
    with pytest.raises(ValueError, match="width"):
        CameraConfig("c", "synthetic", 0, 8)
    with pytest.raises(ValueError, match="stall_timeout_s"):
        CameraConfig("c", "synthetic", 8, 8, stall_timeout_s=0)
    with pytest.raises(ValueError, match="stall_after_frames"):
        CameraConfig("c", "/dev/video0", 8, 8, stall_after_frames=3)


def test_rig_reads_all_cameras_and_lists_stalls() -> None:
    rig = CameraRig(
        [
            CameraConfig("a", "synthetic", 8, 8, fps=200),
            CameraConfig("b", "synthetic", 4, 6, fps=200, stall_timeout_s=0.1, stall_after_frames=3),
        ]
    )
    with rig:
        images, stamps = rig.read()
        assert images["a"].shape == (8, 8, 3) and images["b"].shape == (6, 4, 3)
        assert set(stamps) == {"a", "b"}
        _wait_for(lambda: bool(rig.stall_reasons()))
        reasons = rig.stall_reasons()
        assert len(reasons) == 1 and reasons[0].startswith("camera b")
    with pytest.raises(ValueError, match="duplicate"):
        CameraRig([CameraConfig("a", "synthetic", 8, 8), CameraConfig("a", "synthetic", 8, 8)])
