"""Camera video through PyAV: encoding episodes into mp4 files and decoding frames by timestamp.

Torch-free (numpy + av) so the runtime can record rollouts with the same code. LeRobot stores many episodes
per
mp4 (v3.0) and locates an episode's frames by timestamp; so do we: a frame at dataset time `t` of an episode
that
starts at `from_timestamp` is the decoded frame whose presentation time is `from_timestamp + t`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import DatasetError, VideoDecodeError

log = logging.getLogger(__name__)

# Encoder preference per codec name as written in info.json (`video.codec`).
_ENCODERS = {"av1": ("libsvtav1",), "h264": ("libx264", "h264"), "mpeg4": ("mpeg4",), "hevc": ("libx265",)}
_CODEC_NAMES = {"libsvtav1": "av1", "libx264": "h264", "h264": "h264", "mpeg4": "mpeg4", "libx265": "hevc"}


@dataclass
class VideoSettings:
    """How camera streams are encoded. `codec` is `auto` (av1, else h264, else mpeg4) or one of
    av1/h264/mpeg4."""

    codec: str = "auto"
    crf: int = 20  # visually lossless-ish at these sizes; image stats stay within 1e-2 of the originals
    gop: int = 2  # LeRobot's default: a keyframe every 2 frames keeps random access cheap
    pix_fmt: str = "yuv420p"

    def __post_init__(self) -> None:
        if self.codec != "auto" and self.codec not in _ENCODERS:
            raise ValueError(
                f"VideoSettings.codec must be auto or one of {sorted(_ENCODERS)}, got {self.codec!r}"
            )
        if not 0 <= self.crf <= 63:
            raise ValueError(f"VideoSettings.crf must be in 0..63, got {self.crf}")
        if self.gop < 1:
            raise ValueError(f"VideoSettings.gop must be >= 1, got {self.gop}")


def _have_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # av raises UnknownCodecError (a ValueError) or FFmpegError depending on version
        return False
    return True


def pick_encoder(codec: str) -> tuple[str, str]:
    """(ffmpeg encoder name, info.json codec name) for a codec request; `auto` prefers av1 like LeRobot."""
    wanted = ("av1", "h264", "mpeg4") if codec == "auto" else (codec,)
    for name in wanted:
        for encoder in _ENCODERS[name]:
            if _have_encoder(encoder):
                return encoder, name
    raise DatasetError(f"no video encoder available for {codec!r} in this PyAV build (tried {wanted})")


class VideoEncoder:
    """Appends RGB uint8 frames (T, H, W, 3) to one mp4 file; frame n has presentation time n / fps."""

    def __init__(self, path: Path, *, fps: int, height: int, width: int, settings: VideoSettings) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder, self.codec = pick_encoder(settings.codec)
        self.height, self.width, self.fps = height, width, fps
        options = {"crf": str(settings.crf)}
        if self.encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
            options["preset"] = "10"
        elif self.encoder == "libx264":
            options["preset"] = "veryfast"
        elif self.encoder == "mpeg4":
            options = {"qscale": "2"}
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(self.encoder, rate=fps, options=options)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = settings.pix_fmt
        self._stream.codec_context.gop_size = settings.gop
        self._stream.codec_context.time_base = Fraction(1, fps)
        self.frames_written = 0
        self.bytes_written = 0  # muxed so far; the encoder may still hold a few frames of lookahead

    def _mux(self, packets) -> None:
        for packet in packets:
            self.bytes_written += packet.size
            self._container.mux(packet)

    def write(self, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise DatasetError(
                f"{self.path}: frames must be uint8 (T, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames_written
            frame.time_base = Fraction(1, self.fps)
            self._mux(self._stream.encode(frame))
            self.frames_written += 1

    def close(self) -> None:
        self._mux(self._stream.encode())
        self._container.close()


def probe(path: Path) -> dict:
    """Codec, size, pixel format and frame rate of the first video stream of a file."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            rate = stream.average_rate or stream.base_rate
            return {
                "codec": ctx.name,
                "height": ctx.height,
                "width": ctx.width,
                "pix_fmt": ctx.pix_fmt,
                "fps": float(rate) if rate else None,
                "frames": stream.frames,
            }
    except (av.FFmpegError, IndexError, OSError) as err:
        raise VideoDecodeError(f"{path}: cannot read video stream: {err}") from err


def _open(path: Path):
    try:
        container = av.open(str(path))
        return container, container.streams.video[0]
    except (av.FFmpegError, OSError, IndexError) as err:
        raise VideoDecodeError(f"{path}: cannot open video: {err}") from err


def _frames(container, stream, path: Path, start_s: float | None) -> Iterator[tuple[float, np.ndarray]]:
    """(presentation time s, uint8 (H, W, 3)) from the keyframe at or before `start_s` (None: here) on."""
    try:
        if start_s is not None:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                raise VideoDecodeError(f"{path}: frame without a presentation timestamp")
            yield float(frame.pts * stream.time_base), frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, IndexError) as err:
        raise VideoDecodeError(f"{path}: decoding failed: {err}") from err


def iter_frames(path: Path, *, start_s: float = 0.0) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (presentation time in seconds, uint8 (H, W, 3)) for every frame from `start_s` on, in order."""
    container, stream = _open(path)
    stream.thread_type = "AUTO"  # whole-file decoding: frame threads pay off
    try:
        yield from _frames(container, stream, path, start_s if start_s > 0 else None)
    finally:
        container.close()


def decode_at(path: Path, times_s, *, tolerance_s: float, max_gap_s: float = 1.0) -> np.ndarray:
    """Decode the frames at the given presentation times (seconds): uint8 (n, H, W, 3) in the order asked.

    Requested times closer than `max_gap_s` are decoded in one forward run; each run starts with a seek to the
    keyframe before it. Every time must match a decoded frame within `tolerance_s`, otherwise VideoDecodeError
    names the file and the time.
    """
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    order = np.argsort(times, kind="stable")
    out: list[np.ndarray | None] = [None] * len(times)
    container, stream = _open(path)
    with container:
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and times[order[j + 1]] - times[order[j]] <= max_gap_s:
                j += 1
            span = order[i : j + 1]
            _fill_span(container, stream, path, times, span, out, tolerance_s)
            i = j + 1
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def _fill_span(container, stream, path, times, span, out, tol) -> None:
    k = 0
    for t, img in _frames(container, stream, path, float(times[span[0]])):
        while k < len(span) and times[span[k]] <= t + tol:
            if abs(times[span[k]] - t) > tol:
                raise VideoDecodeError(
                    f"{path}: no frame at t={times[span[k]]:.6f}s (nearest decoded {t:.6f}s)"
                )
            out[span[k]] = img
            k += 1
        if k == len(span):
            return
    raise VideoDecodeError(f"{path}: video ends before t={times[span[k]]:.6f}s")
