"""What `rt-run` writes besides its summary: rollouts as a LeRobot v3.0 dataset, and an mp4 for people.

`RolloutRecorder` collects each episode's camera frames, states and the commands actually sent, and hands
finished episodes to the dataset writer of `edgeact.train.data` (torch-free: numpy, pyarrow, PyAV). That
module is imported only when a recorder is created, i.e. only with `rt-run --record DIR`, so a plain `rt-run`
never loads pyarrow. The dataset appears at DIR only when the run finishes (the writer writes to a temporary
folder and renames it).

`VideoWriter` encodes frames (uint8 (H, W, 3)) to H.264 (mpeg4 when this PyAV has no H.264 encoder) with
PyAV, writing to a temporary file renamed into place on `close()`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from edgeact.runtime.robots.base import Observation, RobotSpec

log = logging.getLogger(__name__)


class RecordError(Exception):
    """A rollout recording or video could not be written; the message names the path."""


def camera_feature(camera: str) -> str:
    """LeRobot's feature key for a camera (docs/design.md "Names": PushT's single camera is `image`)."""
    return "observation.image" if camera == "image" else f"observation.images.{camera}"


def dataset_features(spec: RobotSpec) -> dict[str, dict[str, Any]]:
    """The LeRobot v3.0 features of a rollout of `spec`'s robot."""
    feats: dict[str, dict[str, Any]] = {}
    for cam in spec.cameras:
        feats[camera_feature(cam.name)] = {
            "dtype": "video",
            "shape": [cam.height, cam.width, cam.channels],
            "names": ["height", "width", "channel"],
        }
    feats["observation.state"] = {
        "dtype": "float32",
        "shape": [len(spec.state_names)],
        "names": list(spec.state_names),
    }
    feats["action"] = {
        "dtype": "float32",
        "shape": [len(spec.action_names)],
        "names": list(spec.action_names),
    }
    return feats


class RolloutRecorder:
    """Buffers one episode at a time and appends it to a LeRobot v3.0 dataset at `root`."""

    def __init__(self, root: str | Path, spec: RobotSpec, *, task: str = "", overwrite: bool = False) -> None:
        try:  # lazy: only `--record` pulls in pyarrow and the dataset package
            from edgeact.train.data.writer import LeRobotWriter
        except ImportError as err:
            raise RecordError(
                f"--record {root} needs the dataset writer: pip install 'edgeact[train]'"
            ) from err
        fps = round(spec.fps)
        if abs(fps - spec.fps) > 1e-9:
            raise RecordError(
                f"--record {root}: LeRobot datasets need an integer fps, robot runs at {spec.fps}"
            )
        self.root, self.spec, self.task = Path(root), spec, task
        try:
            self._writer = LeRobotWriter(
                self.root, fps=fps, features=dataset_features(spec), robot_type=spec.name, overwrite=overwrite
            )
        except Exception as err:
            raise RecordError(f"--record {root}: {err}") from err
        self._clear()
        self.episodes = 0

    def _clear(self) -> None:
        self._images: dict[str, list[np.ndarray]] = {c.name: [] for c in self.spec.cameras}
        self._states: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._stamps: list[float] = []

    def add(self, obs: Observation, action: np.ndarray) -> None:
        """One frame: the observation the policy saw and the command sent in reply."""
        for name, frames in self._images.items():
            frames.append(obs.images[name])
        self._states.append(np.asarray(obs.state, dtype=np.float32))
        self._actions.append(np.asarray(action, dtype=np.float32))
        self._stamps.append(obs.timestamp)

    def end_episode(self) -> int | None:
        """Write the buffered episode (nothing when it has no frames); returns its index."""
        if not self._states:
            return None
        frames: dict[str, np.ndarray] = {
            camera_feature(name): np.stack(imgs) for name, imgs in self._images.items()
        }  # (T, H, W, 3) each
        frames["observation.state"] = np.stack(self._states)  # (T, S)
        frames["action"] = np.stack(self._actions)  # (T, A)
        stamps = np.asarray(self._stamps, dtype=np.float64)
        stamps = stamps - stamps[0]  # episode-relative, as LeRobot's `timestamp`
        try:
            index = self._writer.add_episode(frames, task=self.task, timestamps=stamps)
        except Exception as err:
            raise RecordError(f"--record {self.root}: episode {self.episodes}: {err}") from err
        self.episodes += 1
        self._clear()
        return index

    def close(self) -> Path | None:
        """Finish the dataset (moved into place); None when no episode was recorded."""
        if self.episodes == 0:
            self._writer.abort()
            log.warning("--record %s: no episode recorded; nothing written", self.root)
            return None
        try:
            return self._writer.finalize()
        except Exception as err:
            raise RecordError(f"--record {self.root}: {err}") from err

    def abort(self) -> None:
        self._writer.abort()


class VideoWriter:
    """An mp4 written with PyAV; the file appears at `path` only after `close()`."""

    def __init__(self, path: str | Path, fps: float) -> None:
        import av

        self.path = Path(path)
        self.fps = fps
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.mp4")
        self._av = av
        self._container: Any = None
        self._stream: Any = None
        self.frames = 0

    def _open(self, height: int, width: int) -> None:
        av = self._av
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self._tmp), mode="w")
        except (OSError, av.FFmpegError) as err:
            raise RecordError(f"--video {self.path}: cannot create the file: {err}") from err
        codec = "libx264"
        try:
            av.codec.Codec(codec, "w")
        except Exception:
            codec = "mpeg4"
        from fractions import Fraction

        self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1000))
        self._stream.width, self._stream.height = width - width % 2, height - height % 2  # yuv420p needs even
        self._stream.pix_fmt = "yuv420p"

    def add(self, frame: np.ndarray) -> None:
        """Append one uint8 (H, W, 3) RGB frame."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise RecordError(
                f"--video {self.path}: frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}"
            )
        if self._container is None:
            self._open(frame.shape[0], frame.shape[1])
        img = frame[: self._stream.height, : self._stream.width]
        vf = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path | None:
        if self._container is None:
            return None
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # a half-written file is deleted next anyway
                log.debug("closing %s during abort failed", self._tmp, exc_info=True)
            self._container = None
        self._tmp.unlink(missing_ok=True)
