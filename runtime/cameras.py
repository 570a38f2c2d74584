"""Camera capture in background threads: V4L2 devices and video files through PyAV, or a synthetic source.

Each `Camera` owns one capture thread that decodes frames, converts them to uint8 RGB (H, W, 3) at the
configured size and publishes the newest one by swapping a single reference (no queue, no lock on the
read side). The control loop calls `latest()`, which returns at once with the newest frame or None: a
camera is never waited for inside the tick (REFERENCE section 1: LeRobot #652, #1714).

A camera that stops delivering (unplugged, a file that ended, a decoder error) is reported by
`stall_reason()`: no frame within `stall_timeout_s` (or `start_timeout_s` before the first one) or a dead
capture thread. The robot turns that into a safe stop. `CameraRig` runs several cameras and checks them
together.

Sources: `/dev/videoN` (V4L2), a video file path, or `synthetic` (a moving test pattern whose top-left pixel
row encodes the frame index, for tests and `--dry-run`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


class CameraError(Exception):
    """A camera could not be opened or configured; the message names the camera and its source."""


@dataclass(frozen=True)
class CameraConfig:
    """One camera. `source`: a V4L2 device (/dev/videoN), a video file, or "synthetic"."""

    name: str
    source: str
    width: int
    height: int
    fps: float = 30.0
    stall_timeout_s: float = 0.5  # no new frame for this long after the first one -> stalled
    start_timeout_s: float = 5.0  # no first frame within this long after start() -> stalled
    loop: bool = False  # video files: start again at the end instead of stalling
    input_format: str | None = None  # V4L2 pixel format to ask for, e.g. "mjpeg"; None lets the driver choose
    stall_after_frames: int | None = None  # synthetic only: stop delivering after this many frames (tests)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"CameraConfig.name must not be empty (source {self.source!r})")
        if not self.source:
            raise ValueError(f"CameraConfig.source must not be empty (camera {self.name})")
        for fld in ("width", "height"):
            value = getattr(self, fld)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"CameraConfig.{fld} must be a positive int, got {value!r} (camera {self.name})"
                )
        for fld in ("fps", "stall_timeout_s", "start_timeout_s"):
            value = getattr(self, fld)
            if not value > 0:
                raise ValueError(f"CameraConfig.{fld} must be positive, got {value!r} (camera {self.name})")
        if self.stall_after_frames is not None and self.source != SYNTHETIC:
            raise ValueError(
                f"CameraConfig.stall_after_frames only applies to synthetic sources ({self.name})"
            )

    @property
    def kind(self) -> str:
        if self.source == SYNTHETIC:
            return "synthetic"
        return "v4l2" if self.source.startswith("/dev/video") else "file"


class Frame(NamedTuple):
    image: np.ndarray  # uint8 (H, W, 3) RGB
    timestamp: float  # time.monotonic() when the frame was handed over
    index: int  # frames delivered by this camera so far, from 0


def synthetic_image(index: int, height: int, width: int) -> np.ndarray:
    """The synthetic test pattern: a gradient moving with `index`; row 0, columns 0..3 hold index bytes."""
    ys = np.arange(height, dtype=np.int64)[:, None]
    xs = np.arange(width, dtype=np.int64)[None, :]
    img = np.empty((height, width, 3), dtype=np.uint8)  # (H, W, 3)
    img[..., 0] = (xs + index) % 256
    img[..., 1] = (ys + 2 * index) % 256
    img[..., 2] = (xs + ys) % 256
    code = np.frombuffer(int(index).to_bytes(4, "little"), dtype=np.uint8)
    n = min(4, width)
    img[0, :n, :] = code[:n, None]
    return img


def synthetic_index(image: np.ndarray) -> int:
    """Recover the frame index stored by `synthetic_image`."""
    return int.from_bytes(bytes(image[0, :4, 0].tolist()), "little")


class Camera:
    """One camera and its capture thread. `start()`/`stop()` by the owner; `latest()` from any thread."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._latest: Frame | None = None  # replaced whole by the capture thread: readers never lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._error: str | None = None
        self._ended = False

    # -- owner side -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the source (errors raise CameraError here, not in the thread) and start capturing."""
        if self._thread is not None:
            return
        frames = self._open()
        self._stop.clear()
        self._error, self._ended, self._latest = None, False, None
        self._started_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(frames,), name=f"camera-{self.config.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("camera %s: capture thread did not stop within %.1f s", self.config.name, timeout)

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- any thread -------------------------------------------------------------------------------------
    def latest(self) -> Frame | None:
        """The newest frame, or None before the first one. Never blocks."""
        return self._latest

    def wait_first_frame(self, timeout: float | None = None) -> Frame:
        """Block (outside the control loop: at connect time) until the first frame or a stall."""
        deadline = time.monotonic() + (self.config.start_timeout_s if timeout is None else timeout)
        while True:
            frame = self._latest
            if frame is not None:
                return frame
            reason = self.stall_reason()
            if reason is not None or time.monotonic() > deadline:
                raise CameraError(
                    reason or f"camera {self.config.name} ({self.config.source}): no first frame"
                )
            time.sleep(0.002)

    def stall_reason(self, now: float | None = None) -> str | None:
        """None while the camera delivers; otherwise why it is considered stalled."""
        cfg = self.config
        if self._error is not None:
            return f"camera {cfg.name} ({cfg.source}) failed: {self._error}"
        now = time.monotonic() if now is None else now
        frame = self._latest
        if frame is None:
            if self._thread is None:
                return f"camera {cfg.name} ({cfg.source}) is not started"
            if now - self._started_at > cfg.start_timeout_s:
                return f"camera {cfg.name} ({cfg.source}) gave no frame within {cfg.start_timeout_s:.2f} s"
            return None
        age = now - frame.timestamp
        if age > cfg.stall_timeout_s:
            end = " (end of file)" if self._ended else ""
            return f"camera {cfg.name} ({cfg.source}) stalled: last frame {age * 1e3:.0f} ms ago{end}"
        return None

    # -- capture thread ---------------------------------------------------------------------------------
    def _open(self) -> Iterator[np.ndarray]:
        cfg = self.config
        if cfg.kind == "synthetic":
            return self._synthetic_frames()
        if cfg.kind == "file" and not Path(cfg.source).is_file():
            raise CameraError(f"camera {cfg.name}: video file {cfg.source} does not exist")
        container = self._open_container()
        return self._decoded_frames(container)

    def _open_container(self) -> Any:
        import av  # PyAV: only needed for real sources

        cfg = self.config
        options: dict[str, str] = {}
        fmt = None
        if cfg.kind == "v4l2":
            fmt = "v4l2"
            options = {"video_size": f"{cfg.width}x{cfg.height}", "framerate": f"{cfg.fps:g}"}
            if cfg.input_format:
                options["input_format"] = cfg.input_format
        try:
            container = av.open(cfg.source, format=fmt, options=options)
        except (av.FFmpegError, OSError) as err:
            raise CameraError(f"camera {cfg.name}: cannot open {cfg.source}: {err}") from err
        if not container.streams.video:
            container.close()
            raise CameraError(f"camera {cfg.name}: {cfg.source} has no video stream")
        return container

    def _synthetic_frames(self) -> Iterator[np.ndarray]:
        cfg = self.config
        i = 0
        while cfg.stall_after_frames is None or i < cfg.stall_after_frames:
            yield synthetic_image(i, cfg.height, cfg.width)
            i += 1
        # a stalled camera: alive but silent until stopped
        self._stop.wait()

    def _decoded_frames(self, container: Any) -> Iterator[np.ndarray]:
        cfg = self.config
        try:
            while True:
                if self._ended:  # looping a file: back to its start
                    container.seek(0)
                    self._ended = False
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24", width=cfg.width, height=cfg.height)  # (H, W, 3)
                if cfg.kind != "file":
                    raise CameraError("the device stopped delivering frames")
                self._ended = True
                if not cfg.loop:
                    self._stop.wait()
                    return
        finally:
            container.close()

    def _run(self, frames: Iterator[np.ndarray]) -> None:
        cfg = self.config
        # Files and synthetic sources are paced at cfg.fps on absolute deadlines; devices pace themselves.
        pace = cfg.kind != "v4l2"
        period = 1.0 / cfg.fps
        next_t = time.monotonic()
        index = 0
        try:
            for image in frames:
                if self._stop.is_set():
                    break
                if pace:
                    next_t += period
                    delay = next_t - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                self._latest = Frame(image, time.monotonic(), index)
                index += 1
        except Exception as err:  # the thread reports through stall_reason(); the loop safe-stops
            self._error = f"{type(err).__name__}: {err}"
            log.error("camera %s (%s): capture failed: %s", cfg.name, cfg.source, self._error)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()


class CameraRig:
    """Several cameras started and checked together; `read()` never blocks."""

    def __init__(self, configs: Sequence[CameraConfig]) -> None:
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"CameraRig: duplicate camera names {names}")
        self.cameras = {c.name: Camera(c) for c in configs}

    def start(self, wait_first_frame: bool = True) -> None:
        try:
            for cam in self.cameras.values():
                cam.start()
            if wait_first_frame:
                for cam in self.cameras.values():
                    cam.wait_first_frame()
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        for cam in self.cameras.values():
            cam.stop()

    def read(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Newest image and capture time per camera; raises CameraError for a camera with no frame yet."""
        images, stamps = {}, {}
        for name, cam in self.cameras.items():
            frame = cam.latest()
            if frame is None:
                raise CameraError(f"camera {name} ({cam.config.source}) has no frame yet")
            images[name], stamps[name] = frame.image, frame.timestamp
        return images, stamps

    def stall_reasons(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [r for cam in self.cameras.values() if (r := cam.stall_reason(now)) is not None]

    def __enter__(self) -> CameraRig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
