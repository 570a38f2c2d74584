"""Plain types of the runtime core's Python face: errors, status codes, parameters and results.

They carry no behaviour beyond validation, so `edgeact.runtime.core` (which re-exports all of them) stays
about the model, the session and the loop. Nothing here imports torch or the C++ extension.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Command", "ConfigError", "CoreError", "LoopParams", "LoopStats", "ModelLoadError", "ObservationError",
    "PolicyParams", "PostParams", "Status", "StepTimings",
]  # fmt: skip


class CoreError(Exception):
    """Base of the errors raised by the runtime core."""


class ModelLoadError(CoreError):
    """A model or its sidecar cannot be loaded; the message names the file and the reason."""


class ObservationError(CoreError, ValueError):
    """An observation has the wrong cameras, shapes, dtypes or state size."""


class ConfigError(CoreError, ValueError):
    """Invalid runtime parameters; the message names the field."""


class Status(enum.IntEnum):
    """Per-tick status, mirroring `edgeact::rt::Status`."""

    OK = 0
    HOLD = 1
    NO_OBSERVATION = 2
    BAD_OBSERVATION = 3
    BAD_OUTPUT = 4
    BACKEND_ERROR = 5
    SAFE_STOP = 6
    INVALID = 7

    @property
    def is_fault(self) -> bool:
        return self in (Status.BAD_OBSERVATION, Status.BAD_OUTPUT, Status.BACKEND_ERROR, Status.SAFE_STOP,
                        Status.INVALID)  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# ONNX Runtime: the wheel's library, dlopened by the core once.


@dataclass(frozen=True)
class PolicyParams:
    backend: str = "auto"  # "auto" (from the file suffix), "onnxruntime" or "tensorrt"
    intra_op_threads: int = 1
    warmup_runs: int = 3
    verify_sha256: bool = True
    # ONNX Runtime session config entries, e.g. (("session.use_device_allocator_for_initializers", "1"),)
    ort_config: tuple[tuple[str, str], ...] = ()
    release_load_memory: bool = True  # malloc_trim after load: the freed parse buffers leave the RSS

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "onnxruntime", "tensorrt"):
            raise ConfigError(f"PolicyParams.backend must be auto/onnxruntime/tensorrt, got {self.backend!r}")
        for name in ("intra_op_threads", "warmup_runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"PolicyParams.{name} must be an int >= 0, got {value!r}")
        if not all(len(e) == 2 and all(isinstance(x, str) for x in e) for e in self.ort_config):
            raise ConfigError(
                f"PolicyParams.ort_config must be (key, value) string pairs, got {self.ort_config!r}"
            )


@dataclass(frozen=True)
class PostParams:
    """Post-processing bounds: a float or one value per joint; None = unbounded."""

    lower: Sequence[float] | float | None = None
    upper: Sequence[float] | float | None = None
    max_delta: Sequence[float] | float | None = None


@dataclass(frozen=True)
class LoopParams:
    rate_hz: float = 50.0
    stale_timeout_s: float = 0.5
    max_consecutive_overruns: int = 10
    stop_on_fault: bool = True
    realtime_priority: int = 0
    lock_memory: bool = False
    cpu_affinity: Sequence[int] | None = None
    timing_capacity: int = 65536
    spin_us: float = 0.0  # busy-wait the last spin_us before each deadline (CPU for lower wake-up lateness)

    def __post_init__(self) -> None:
        if not (isinstance(self.rate_hz, (int, float)) and 0 < self.rate_hz <= 100_000):
            raise ConfigError(f"LoopParams.rate_hz must be in (0, 100000], got {self.rate_hz!r}")
        if not (isinstance(self.stale_timeout_s, (int, float)) and self.stale_timeout_s > 0):
            raise ConfigError(f"LoopParams.stale_timeout_s must be > 0, got {self.stale_timeout_s!r}")
        if not isinstance(self.max_consecutive_overruns, int) or self.max_consecutive_overruns < 0:
            raise ConfigError(
                f"LoopParams.max_consecutive_overruns must be >= 0, got {self.max_consecutive_overruns!r}"
            )
        if not isinstance(self.realtime_priority, int) or not 0 <= self.realtime_priority <= 99:
            raise ConfigError(
                f"LoopParams.realtime_priority must be in [0, 99], got {self.realtime_priority!r}"
            )
        if not isinstance(self.timing_capacity, int) or self.timing_capacity < 1:
            raise ConfigError(f"LoopParams.timing_capacity must be >= 1, got {self.timing_capacity!r}")
        half_period_us = 0.5e6 / self.rate_hz
        if not (isinstance(self.spin_us, (int, float)) and 0 <= self.spin_us <= half_period_us):
            raise ConfigError(
                f"LoopParams.spin_us must be in [0, {half_period_us:g}] (half the period), "
                f"got {self.spin_us!r}"
            )


@dataclass(frozen=True)
class StepTimings:
    pre_ns: int
    infer_ns: int
    ensemble_ns: int
    post_ns: int
    total_ns: int  # the whole C++ step; total - infer is what the runtime adds around the model


@dataclass(frozen=True)
class Command:
    seq: int
    tick: int
    values: np.ndarray | None  # (A,) float32, None while there is no safe command
    status: Status
    stamp_ns: int


@dataclass(frozen=True)
class LoopStats:
    ticks: int
    overruns: int
    skipped_ticks: int
    inferences: int
    holds: int
    faults: int
    max_consecutive_overruns: int
    last_inference_ns: int
    safe_stopped: bool
    safe_stop_reason: str
    realtime_warnings: list[str] = field(default_factory=list)
