"""The Python face of the C++ runtime core (`edgeact.runtime._core`); the API is in docs/runtime.md.

`Policy.load(model)` -> immutable model; `policy.session()` -> one episode's pre -> infer -> ensemble ->
post; `Loop(session, LoopParams(...))` -> the real-time loop in its own C++ thread. Validation (shapes,
dtypes, params) happens here, at the boundary, with errors naming the camera, field or file; the C++ side
returns status codes. On import this module finds the ONNX Runtime library inside the `onnxruntime`
wheel and hands it to the core.
Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edgeact.runtime import _core
from edgeact.runtime.artifact import ArtifactError, PolicyArtifact, load_artifact, sha256_file
from edgeact.runtime.core_types import (
    Command,
    ConfigError,
    CoreError,
    LoopParams,
    LoopStats,
    ModelLoadError,
    ObservationError,
    PolicyParams,
    PostParams,
    Status,
    StepTimings,
)
from edgeact.runtime.ensemble_ref import ExecutionConfig
from edgeact.runtime.policy_io import STATE

__all__ = [
    "Command", "ConfigError", "CoreError", "Loop", "LoopParams", "LoopStats", "ModelLoadError",
    "ObservationError", "Policy", "PolicyParams", "PostParams", "Session", "Status", "StepTimings",
    "available_backends", "ort_library_path",
]  # fmt: skip

log = logging.getLogger(__name__)


def ort_library_path() -> Path:
    """The ONNX Runtime shared library: $EDGEACT_ORT_LIBRARY, else the one inside the onnxruntime wheel."""
    env = os.environ.get("EDGEACT_ORT_LIBRARY")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the onnxruntime package is not installed (pip install 'edgeact[runtime]')")
    capi = Path(next(iter(spec.submodule_search_locations))) / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"))
    if not libs:
        raise ModelLoadError(f"no libonnxruntime.so* in {capi}")
    return libs[-1]


def _init_onnxruntime() -> None:
    if not _core.onnxruntime_ready():
        path = ort_library_path()
        try:
            _core.init_onnxruntime(str(path))
        except RuntimeError as err:
            raise ModelLoadError(str(err)) from err


def available_backends() -> tuple[str, ...]:
    out = []
    try:
        _init_onnxruntime()
        out.append("onnxruntime")
    except ModelLoadError:
        pass
    if _core.tensorrt_compiled():
        out.append("tensorrt")
    return tuple(out)


_LEVELS = {10: logging.DEBUG, 20: logging.INFO, 30: logging.WARNING, 40: logging.ERROR}
_core.set_log_callback(lambda level, msg: log.log(_LEVELS.get(level, logging.INFO), "%s", msg))
try:
    _init_onnxruntime()
except ModelLoadError as _err:  # reported again by Policy.load
    log.debug("ONNX Runtime not initialised: %s", _err)


_STATUSES = tuple(Status)  # index = the C++ status value
_U8, _F32 = np.dtype(np.uint8), np.dtype(np.float32)


def _per_joint(name: str, value: Any, n: int) -> list[float]:
    if value is None:
        return []
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ConfigError(f"PostParams.{name} must be a finite float or {n} finite values, got {value!r}")
    return [float(x) for x in arr]


# ----------------------------------------------------------------------------------------------------
class Policy:
    """An immutable loaded model with its sidecar. Create with `Policy.load`."""

    def __init__(self, model: Any, artifact: PolicyArtifact, backend: str) -> None:
        self._model, self.artifact, self.backend = model, artifact, backend

    @classmethod
    def load(cls, model_path: str | os.PathLike[str], params: PolicyParams | None = None) -> Policy:
        params = params or PolicyParams()
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: model file not found")
        try:
            art = load_artifact(path)
        except ArtifactError as err:
            raise ModelLoadError(str(err)) from err
        backend = params.backend
        if backend == "auto":
            backend = "tensorrt" if path.suffix == ".engine" else "onnxruntime"
        if params.verify_sha256 and sha256_file(path) != art.model_sha256:
            raise ModelLoadError(
                f"{path}: sha256 differs from {art.path} field 'model_sha256' (corrupt or replaced)"
            )
        if backend == "onnxruntime":
            _init_onnxruntime()
        mp = _core.ModelParams()
        mp.backend = _core.BackendKind.TENSORRT if backend == "tensorrt" else _core.BackendKind.ONNXRUNTIME
        mp.intra_op_threads, mp.warmup_runs = params.intra_op_threads, params.warmup_runs
        mp.ort_config = [tuple(e) for e in params.ort_config]
        mp.release_load_memory = bool(params.release_load_memory)
        try:
            model = _core.Model.load(str(path), _model_spec(art), mp)
        except (RuntimeError, ValueError) as err:
            raise ModelLoadError(str(err)) from err
        log.info("loaded %s (%s, chunk %d, %d actions)", path, backend, art.chunk_size, art.action_dim)
        return cls(model, art, backend)

    cameras = property(lambda self: self.artifact.cameras)
    vectors = property(lambda self: self.artifact.vectors)  # VectorInput(feature, names), graph order
    state_dim = property(lambda self: self.artifact.state_dim)
    action_dim = property(lambda self: self.artifact.action_dim)
    chunk_size = property(lambda self: self.artifact.chunk_size)
    fps = property(lambda self: self.artifact.fps)
    state_names = property(lambda self: self.artifact.state_names)
    action_names = property(lambda self: self.artifact.action_names)
    execution = property(lambda self: self.artifact.execution)

    def infer(
        self,
        images: Mapping[str, np.ndarray],
        state: Any = None,
        vectors: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """One raw forward pass (pre-processing + backend) -> float32 (1, k, A). Not the control path."""
        shapes = {c.name: np.shape(images[c.name])[:2] if c.name in images else None for c in self.cameras}
        frames, vecs = _check_observation(self.artifact, images, state, vectors, shapes)
        return self._model.infer(frames, vecs)

    def session(
        self,
        execution: ExecutionConfig | None = None,
        post: PostParams | None = None,
        frame_shapes: Mapping[str, tuple[int, int]] | None = None,
    ) -> Session:
        return Session(self, execution or self.execution, post or PostParams(), frame_shapes)


def _model_spec(art: PolicyArtifact) -> Any:
    spec = _core.ModelSpec()
    cams = []
    for c in art.cameras:
        ci = _core.CameraInput()
        ci.name, ci.input_name, ci.height, ci.width, ci.channels = (
            c.name,
            c.input_name,
            c.height,
            c.width,
            c.channels,
        )
        ci.layout = _core.Layout.NCHW if c.layout == "NCHW" else _core.Layout.NHWC
        cams.append(ci)
    spec.cameras = cams
    spec.vectors = [_core.VectorInput(v.input_name, v.dim) for v in art.vectors]
    spec.output_name, spec.chunk_size, spec.action_dim = art.output_name, art.chunk_size, art.action_dim
    return spec


def _vector_value(feature: str, state: Any, vectors: Mapping[str, Any] | None) -> Any:
    """`state` feeds `observation.state` (or `vectors["observation.state"]` when state is None)."""
    if feature == STATE and state is not None:
        return state
    return None if vectors is None else vectors.get(feature)


def _check_observation(
    art: PolicyArtifact,
    images: Mapping[str, np.ndarray],
    state: Any,
    vectors: Mapping[str, Any] | None,
    shapes: Mapping[str, Any],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames in camera order (uint8 contiguous (H, W, C)) and the float32 vectors in graph order; raises
    ObservationError naming the camera or the vector."""
    frames = []
    for cam in art.cameras:
        if cam.name not in images:
            raise ObservationError(f"observation has no frame for camera {cam.name!r} (got {sorted(images)})")
        f = images[cam.name]
        h, w = shapes[cam.name]
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.shape != (h, w, cam.channels):
            got = f"{getattr(f, 'dtype', type(f).__name__)} {getattr(f, 'shape', '')}"
            raise ObservationError(
                f"camera {cam.name!r}: frame must be uint8 ({h}, {w}, {cam.channels}), got {got}"
            )
        frames.append(np.ascontiguousarray(f))
    vecs = []
    for v in art.vectors:
        label = "state" if v.feature == STATE else v.feature
        value = _vector_value(v.feature, state, vectors)
        if value is None:
            got = sorted(vectors or {}) + (["state"] if state is not None else [])
            raise ObservationError(f"observation has no {label} ({v.dim} values; got {got})")
        try:
            arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32).reshape(-1))
        except (TypeError, ValueError) as err:
            raise ObservationError(f"{label} must be {v.dim} numbers, got {type(value).__name__}") from err
        if arr.shape != (v.dim,):
            names = list(v.names) if v.dim <= 8 else [*v.names[:3], "...", v.names[-1]]
            raise ObservationError(f"{label} must have {v.dim} values ({names}), got {arr.shape}")
        vecs.append(arr)
    return frames, vecs


class Session:
    """One episode: ensembler, post-processor and pre-allocated buffers. Create with `policy.session()`."""

    def __init__(
        self,
        policy: Policy,
        execution: ExecutionConfig,
        post: PostParams,
        frame_shapes: Mapping[str, tuple[int, int]] | None,
    ) -> None:
        art = policy.artifact
        if (execution.chunk_size, execution.action_dim) != (art.chunk_size, art.action_dim):
            raise ConfigError(
                f"execution has chunk_size={execution.chunk_size}, action_dim={execution.action_dim}; "
                f"the model has {art.chunk_size}, {art.action_dim}"
            )
        frame_shapes = dict(frame_shapes or {})
        unknown = sorted(set(frame_shapes) - {c.name for c in art.cameras})
        if unknown:
            raise ConfigError(f"frame_shapes names unknown camera(s) {unknown}")
        self.frame_shapes = {
            c.name: tuple(frame_shapes.get(c.name, (c.height, c.width))) for c in art.cameras
        }
        self.policy, self.execution, self.post = policy, execution, post
        ep = _core.ExecutionParams()
        ep.mode = {
            "ensemble": _core.ExecMode.ENSEMBLE,
            "chunk": _core.ExecMode.CHUNK,
            "async": _core.ExecMode.ASYNC,
        }[execution.mode]
        ep.temporal_ensemble_coeff = float(execution.temporal_ensemble_coeff)
        ep.n_action_steps, ep.latency_ticks = int(execution.n_action_steps or 0), execution.latency_ticks
        pp = _core.PostParams()
        a = art.action_dim
        pp.lower, pp.upper = _per_joint("lower", post.lower, a), _per_joint("upper", post.upper, a)
        pp.max_delta = _per_joint("max_delta", post.max_delta, a)
        try:
            self._s = _core.Session(policy._model, ep, pp, [self.frame_shapes[c.name] for c in art.cameras])
        except (ValueError, RuntimeError) as err:
            raise ConfigError(str(err)) from err
        # step()'s fast path: (camera, expected frame shape) in model order, timings kept as the raw tuple
        self._frame_specs = tuple((c.name, (*self.frame_shapes[c.name], c.channels)) for c in art.cameras)
        self._vector_specs = tuple((v.feature, (v.dim,)) for v in art.vectors)
        self._tm: tuple[int, ...] = (0, 0, 0, 0, 0)

    def reset(self, initial_command: np.ndarray | Sequence[float] | None = None) -> None:
        init = None
        if initial_command is not None:
            init = np.ascontiguousarray(np.asarray(initial_command, dtype=np.float32).reshape(-1))
            if init.shape != (self.policy.action_dim,) or not np.all(np.isfinite(init)):
                raise ValueError(
                    f"initial_command must be {self.policy.action_dim} finite values, got {init}"
                )
        self._s.reset(init)

    def step(
        self,
        images: Mapping[str, np.ndarray],
        state: Any = None,
        vectors: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray | None, Status]:
        # Fast path for observations already in the runtime's layout (what robots deliver): a few attribute
        # reads instead of a conversion per array. Called right after an inference has evicted the caches,
        # every Python object touched here costs cache misses (docs/runtime.md, "Overhead").
        frames = [images.get(name) for name, _ in self._frame_specs]
        vecs = [_vector_value(f, state, vectors) for f, _ in self._vector_specs]
        fast = True
        for v, (_, shape) in zip(vecs, self._vector_specs, strict=True):
            if type(v) is not np.ndarray or v.dtype != _F32 or v.shape != shape or not v.flags.c_contiguous:
                fast = False
                break
        if fast:
            for f, (_, shape) in zip(frames, self._frame_specs, strict=True):
                if (
                    type(f) is not np.ndarray
                    or f.dtype != _U8
                    or f.shape != shape
                    or not f.flags.c_contiguous
                ):
                    fast = False
                    break
        if not fast:  # converts what it can, raises ObservationError naming the camera or field otherwise
            frames, vecs = _check_observation(self.policy.artifact, images, state, vectors, self.frame_shapes)
        command, status, self._tm = self._s.step(frames, vecs)
        return command, _STATUSES[status]

    @property
    def last_timings(self) -> StepTimings:
        """Stage timings of the last `step` (built on access, off the step's path)."""
        return StepTimings(*self._tm)

    @property
    def tick(self) -> int:
        return self._s.tick


class Loop:
    """The real-time loop around a session (docs/runtime.md). Use as a context manager or start()/stop()."""

    def __init__(self, session: Session, params: LoopParams | None = None) -> None:
        self.session, self.params = session, params or LoopParams()
        lp = _core.LoopParams()
        for name in ("rate_hz", "stale_timeout_s", "max_consecutive_overruns", "stop_on_fault",
                     "realtime_priority", "lock_memory", "timing_capacity", "spin_us"):  # fmt: skip
            setattr(lp, name, getattr(self.params, name))
        lp.cpu_affinity = list(self.params.cpu_affinity or [])
        self._loop = _core.Loop(session._s, lp)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> Loop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._loop.running

    def post_observation(
        self,
        images: Mapping[str, np.ndarray],
        state: Any = None,
        timestamp_ns: int | None = None,
        vectors: Mapping[str, Any] | None = None,
    ) -> None:
        frames, vecs = _check_observation(
            self.session.policy.artifact, images, state, vectors, self.session.frame_shapes
        )
        stamp = time.monotonic_ns() if timestamp_ns is None else int(timestamp_ns)
        status = self._loop.post_observation(frames, vecs, stamp)
        if status != Status.OK:
            raise ObservationError(f"observation refused by the loop ({Status(status).name})")

    @staticmethod
    def _command(t: tuple | None) -> Command | None:
        if t is None:
            return None
        seq, tick, values, status, stamp = t
        return Command(seq, tick, values, Status(status), stamp)

    def latest_command(self) -> Command | None:
        return self._command(self._loop.latest_command())

    def wait_command(self, after_seq: int = -1, timeout_s: float = 1.0) -> Command | None:
        """The newest command with seq > after_seq, waiting up to timeout_s (GIL released); None if none."""
        return self._command(self._loop.wait_command(int(after_seq), float(timeout_s)))

    def stats(self) -> LoopStats:
        return LoopStats(**self._loop.stats())

    def timings(self) -> dict[str, np.ndarray]:
        """Per-stage durations (ns) of the last ticks, oldest first: pre, infer, ensemble, post, write, total,
        lateness."""
        return {name: self._loop.timings(i) for i, name in enumerate(_core.STAGES)}

    def jitter_histogram(self) -> tuple[np.ndarray, np.ndarray]:
        return self._loop.jitter_histogram()
