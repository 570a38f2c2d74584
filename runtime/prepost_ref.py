"""Pure-numpy reference of the runtime's pre- and post-processing, and of one whole synchronous tick.

The C++ core mirrors these definitions (cpp_ext/src/prepost.cpp, session.cpp); tests hold both to the same
numbers. Needs only numpy.

- `resize_bilinear`: uint8 HWC -> uint8 HWC at the model's resolution, bilinear with half-pixel centers
  (source coordinate `(x + 0.5) * in / out - 0.5`, clamped at 0, neighbours clamped at the edge), computed in
  float64 and rounded half-up. This is torch `interpolate(mode="bilinear", align_corners=False,
  antialias=False)` on float input followed by rounding; `cv2.resize(INTER_LINEAR)` agrees within 1
  (fixed-point weights).
- `PostProcessor`: NaN/Inf guard (hold the last safe command), per-tick maximum change (LeRobot's
  `max_relative_target`), joint limits.
- `preprocess`: camera frames and float vectors (the state, the environment state, ...) -> the model's feed
  dict, as `Session::preprocess` writes the input buffers.
- `ReferenceSession`: pre -> infer -> ensemble -> post for one tick, the same order and fault handling as the
  C++ `Session::step` (NaN/Inf in any vector input: bad observation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig

# Status names shared with the C++ core (edgeact::rt::status_name).
OK, HOLD, BAD_OBSERVATION, BAD_OUTPUT = "ok", "hold", "bad_observation", "bad_output"


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel source indices (lo, hi) and fractions for one axis."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def resize_bilinear(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (height, width, C)."""
    if frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f"frame must be uint8 (H, W, C), got {frame.dtype} {frame.shape}")
    h, w, _ = frame.shape
    if (h, w) == (height, width):
        return frame.copy()
    y0, y1, fy = _axis(h, height)
    x0, x1, fx = _axis(w, width)
    p = frame.astype(np.float64)
    wx = fx[None, :, None]  # (1, W', 1)
    wy = fy[:, None, None]  # (H', 1, 1)
    # The same expression, in the same order, as FrameResizer::run.
    top = (1.0 - wx) * p[y0][:, x0] + wx * p[y0][:, x1]  # (H', W', C)
    bot = (1.0 - wx) * p[y1][:, x0] + wx * p[y1][:, x1]
    v = (1.0 - wy) * top + wy * bot
    return np.floor(v + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class CameraInputRef:
    """What pre-processing needs to know about one image input of the model."""

    name: str
    input_name: str
    height: int
    width: int
    channels: int = 3
    layout: str = "NHWC"


def preprocess(
    images: Mapping[str, np.ndarray],
    vectors: Mapping[str, np.ndarray],
    cameras: Sequence[CameraInputRef],
    vector_inputs: Sequence[str],
) -> dict[str, np.ndarray]:
    """Camera frames and vectors (by graph input name, e.g. `observation.state`) -> the model's feed dict:
    uint8 (1,H,W,C) or (1,C,H,W) per camera, float32 (1,D) per name in `vector_inputs`."""
    feed: dict[str, np.ndarray] = {}
    for cam in cameras:
        img = resize_bilinear(images[cam.name], cam.height, cam.width)  # (H, W, C)
        if cam.layout == "NCHW":
            img = np.ascontiguousarray(img.transpose(2, 0, 1))  # (C, H, W)
        feed[cam.input_name] = img[None]
    for name in vector_inputs:
        feed[name] = np.asarray(vectors[name], dtype=np.float32).reshape(1, -1)  # (1, D)
    return feed


@dataclass
class PostConfig:
    """Per-joint bounds; None means unbounded. Scalars apply to every joint."""

    lower: Sequence[float] | float | None = None
    upper: Sequence[float] | float | None = None
    max_delta: Sequence[float] | float | None = None


class PostProcessor:
    """NaN/Inf guard -> max change from the last command -> joint limits. float32 throughout."""

    def __init__(self, action_dim: int, config: PostConfig | None = None) -> None:
        config = config or PostConfig()
        self.action_dim = action_dim

        def vec(name: str, v: Sequence[float] | float | None) -> np.ndarray | None:
            if v is None:
                return None
            arr = np.broadcast_to(np.asarray(v, dtype=np.float32), (action_dim,)).copy()
            if name == "max_delta" and not np.all(arr >= 0):
                raise ValueError(f"post.max_delta must be >= 0 per joint, got {v!r}")
            return arr

        self.lower = vec("lower", config.lower)
        self.upper = vec("upper", config.upper)
        self.max_delta = vec("max_delta", config.max_delta)
        if self.lower is not None and self.upper is not None and not np.all(self.lower <= self.upper):
            raise ValueError(f"post.lower must be <= post.upper, got {config.lower!r} > {config.upper!r}")
        self._last = np.zeros(action_dim, np.float32)
        self._has = False

    def reset(self, initial_command: np.ndarray | None = None) -> None:
        self._has = initial_command is not None
        if self._has:
            self._last[...] = np.asarray(initial_command, np.float32)

    def apply(self, action: np.ndarray | None) -> tuple[np.ndarray | None, str]:
        """(command or None when there is nothing to hold, status)."""
        if action is None or not np.all(np.isfinite(action)):
            status = HOLD if action is None else BAD_OUTPUT
            return (self._last.copy() if self._has else None), status
        v = np.asarray(action, np.float32).copy()
        if self._has and self.max_delta is not None:
            v = np.minimum(np.maximum(v, self._last - self.max_delta), self._last + self.max_delta)
        if self.lower is not None:
            v = np.maximum(v, self.lower)
        if self.upper is not None:
            v = np.minimum(v, self.upper)
        self._last[...] = v
        self._has = True
        return v.copy(), OK


class ReferenceSession:
    """One synchronous tick, the same pipeline and fault handling as the C++ `Session::step`."""

    def __init__(
        self,
        infer: Callable[[dict[str, np.ndarray]], np.ndarray],
        cameras: Sequence[CameraInputRef],
        vector_inputs: Sequence[str],
        execution: ExecutionConfig,
        post: PostConfig | None = None,
    ) -> None:
        if isinstance(vector_inputs, str):
            raise TypeError(f"vector_inputs must be a sequence of input names, got {vector_inputs!r}")
        self.infer, self.cameras, self.vector_inputs = infer, list(cameras), list(vector_inputs)
        self.executor = ActionExecutor(execution)
        self.post = PostProcessor(execution.action_dim, post)
        self._pending: np.ndarray | None = None
        self._pending_origin = -1

    def reset(self, initial_command: np.ndarray | None = None) -> None:
        self.executor.reset()
        self.post.reset(initial_command)
        self._pending, self._pending_origin = None, -1

    def step(
        self, images: Mapping[str, np.ndarray], vectors: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray | None, str]:
        """One tick; `vectors` maps each name in `vector_inputs` to its float values."""
        ex, cfg = self.executor, self.executor.config
        finite = all(np.all(np.isfinite(vectors[name])) for name in self.vector_inputs)
        status = OK if finite else BAD_OBSERVATION
        is_async = cfg.mode == "async"
        due = self._pending_origin >= 0 and ex.tick >= self._pending_origin + cfg.latency_ticks
        if status == OK and is_async and due:
            ex.push(self._pending, self._pending_origin)
            self._pending_origin = -1
        if status == OK and ex.wants_chunk():
            origin = ex.begin_request() if is_async else ex.tick
            feed = preprocess(images, vectors, self.cameras, self.vector_inputs)
            chunk = np.asarray(self.infer(feed), np.float32)
            if not np.all(np.isfinite(chunk)):
                status = BAD_OUTPUT
                if is_async:
                    ex.cancel_request()
            elif is_async and cfg.latency_ticks > 0:
                self._pending, self._pending_origin = chunk.copy(), origin
            else:
                ex.push(chunk, origin)
        action = ex.update()
        command, post_status = self.post.apply(action if status == OK else None)
        return command, (status if status != OK else post_status)
