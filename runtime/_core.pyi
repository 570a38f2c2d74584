"""Type stub of the C++ extension edgeact.runtime._core (cpp_ext/src/bindings.cpp); see runtime/core.py."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

__version__: str
STAGES: tuple[str, ...]

def init_onnxruntime(library_path: str) -> None: ...
def onnxruntime_ready() -> bool: ...
def tensorrt_compiled() -> bool: ...
def status_name(status: int) -> str: ...
def set_log_callback(fn: object) -> None: ...
def resize(
    frame: npt.NDArray[np.uint8], height: int, width: int, layout: Layout = ...
) -> npt.NDArray[np.uint8]: ...

class Layout(enum.Enum):
    NHWC = 0
    NCHW = 1

class BackendKind(enum.Enum):
    ONNXRUNTIME = 0
    TENSORRT = 1

class ExecMode(enum.Enum):
    ENSEMBLE = 0
    CHUNK = 1
    ASYNC = 2

class CameraInput:
    name: str
    input_name: str
    height: int
    width: int
    channels: int
    layout: Layout
    def __init__(self) -> None: ...

class VectorInput:
    input_name: str
    dim: int
    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self, input_name: str, dim: int) -> None: ...

class ModelSpec:
    cameras: list[CameraInput]
    vectors: list[VectorInput]
    output_name: str
    chunk_size: int
    action_dim: int
    def __init__(self) -> None: ...

class ModelParams:
    backend: BackendKind
    intra_op_threads: int
    warmup_runs: int
    def __init__(self) -> None: ...

class ExecutionParams:
    mode: ExecMode
    temporal_ensemble_coeff: float
    n_action_steps: int
    latency_ticks: int
    def __init__(self) -> None: ...

class PostParams:
    lower: list[float]
    upper: list[float]
    max_delta: list[float]
    def __init__(self) -> None: ...

class LoopParams:
    rate_hz: float
    stale_timeout_s: float
    max_consecutive_overruns: int
    stop_on_fault: bool
    realtime_priority: int
    lock_memory: bool
    cpu_affinity: list[int]
    spin_us: float
    timing_capacity: int
    def __init__(self) -> None: ...

class Ensembler:
    tick: int
    in_flight: bool
    def __init__(self, chunk_size: int, action_dim: int, params: ExecutionParams) -> None: ...
    def reset(self) -> None: ...
    def wants_chunk(self) -> bool: ...
    def begin_request(self) -> int: ...
    def cancel_request(self) -> None: ...
    def push(self, chunk: npt.NDArray[np.float32], origin: int) -> int: ...
    def update(self) -> npt.NDArray[np.float32] | None: ...
    def advance(self, n: int) -> None: ...

class PostProcessor:
    def __init__(self, action_dim: int, params: PostParams) -> None: ...
    def reset(self, initial: npt.NDArray[np.float32] | None = None) -> None: ...
    def apply(self, action: npt.NDArray[np.float32] | None) -> tuple[npt.NDArray[np.float32] | None, int]: ...

class Model:
    spec: ModelSpec
    backend: BackendKind
    @staticmethod
    def load(path: str, spec: ModelSpec, params: ModelParams) -> Model: ...
    def infer(
        self, frames: Sequence[npt.NDArray[np.uint8]], vectors: Sequence[npt.NDArray[np.float32]]
    ) -> npt.NDArray[np.float32]: ...

class Session:
    tick: int
    has_command: bool
    def __init__(
        self,
        model: Model,
        execution: ExecutionParams,
        post: PostParams,
        frame_shapes: Sequence[tuple[int, int]],
    ) -> None: ...
    def reset(self, initial: npt.NDArray[np.float32] | None = None) -> None: ...
    def step(
        self, frames: Sequence[npt.NDArray[np.uint8]], vectors: Sequence[npt.NDArray[np.float32]]
    ) -> tuple[npt.NDArray[np.float32] | None, int, tuple[int, int, int, int, int]]: ...

class Loop:
    running: bool
    def __init__(self, session: Session, params: LoopParams) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def post_observation(
        self,
        frames: Sequence[npt.NDArray[np.uint8]],
        vectors: Sequence[npt.NDArray[np.float32]],
        stamp_ns: int,
    ) -> int: ...
    def latest_command(self) -> tuple[int, int, npt.NDArray[np.float32] | None, int, int] | None: ...
    def wait_command(
        self, after_seq: int, timeout_s: float
    ) -> tuple[int, int, npt.NDArray[np.float32] | None, int, int] | None: ...
    def stats(self) -> dict[str, object]: ...
    def timings(self, stage: int) -> npt.NDArray[np.int64]: ...
    def jitter_histogram(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
