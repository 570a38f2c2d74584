"""Pure-numpy reference of action execution: temporal ensembling, chunk execution, asynchronous inference.

This is the one definition of docs/design.md "Action execution". The C++ core (`edgeact.runtime._core`)
mirrors it and tests hold both to 1e-6; training-side evaluation imports it so that eval and the robot
execute chunks the same way. It needs only numpy.

Semantics (k = chunk_size, t = ticks since `reset()`):
- A chunk predicted at tick s covers ticks s .. s+k-1; its entry j is the action for tick s+j.
- `ensemble` (ACT temporal ensembling, Zhao et al. 2023 section IV-B): infer every tick; the action for
  tick t is the weighted mean of entry t-s of every chunk s with t-k < s <= t, weight exp(-m*i), i = 0 the
  OLDEST chunk still covering t. Chunks are selected by their origin tick, never by testing values (the
  original code's `row != 0` test dropped predictions containing an exact 0.0; this one does not).
- `chunk`: infer when no queued action remains (every n ticks, n <= k) and execute the entries in order.
- `async`: inference runs beside the loop. A chunk requested at tick s that becomes ready at tick s+d
  enters with its first d entries already in the past; until then the newest earlier chunk continues, or,
  when none covers the tick, `update()` returns None and the caller holds its last command. A new request
  starts every n ticks once the previous one has arrived.

One episode::

    ex = ActionExecutor(ExecutionConfig(chunk_size=100, action_dim=2, mode="ensemble"))
    ex.reset()
    for obs in episode:
        action = ex.step(lambda: policy(obs))   # (A,) float32, or None: hold the last command

or, with the inference driven by the caller: `if ex.wants_chunk(): ex.push(chunk, origin)`, then
`ex.update()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("ensemble", "chunk", "async")


@dataclass
class ExecutionConfig:
    """How chunks become one action per tick (the sidecar's `execution` block plus the model's sizes)."""

    chunk_size: int
    action_dim: int
    mode: str = "ensemble"
    temporal_ensemble_coeff: float = 0.01  # m in w_i = exp(-m * i); ACT's default
    n_action_steps: int | None = None  # chunk/async: ticks between inferences; None means chunk_size
    latency_ticks: int = 0  # async in `step()` only: a chunk requested at tick s enters at tick s + this

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"execution.mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"execution.chunk_size must be a positive int, got {self.chunk_size!r}")
        if not isinstance(self.action_dim, int) or self.action_dim < 1:
            raise ValueError(f"execution.action_dim must be a positive int, got {self.action_dim!r}")
        m = self.temporal_ensemble_coeff
        if not isinstance(m, (int, float)) or not math.isfinite(m):
            raise ValueError(f"execution.temporal_ensemble_coeff must be a finite number, got {m!r}")
        if self.n_action_steps is None:
            self.n_action_steps = self.chunk_size
        n = self.n_action_steps
        if not isinstance(n, int) or not 1 <= n <= self.chunk_size:
            raise ValueError(
                f"execution.n_action_steps must be an int in [1, chunk_size={self.chunk_size}], got {n!r}"
            )
        if not isinstance(self.latency_ticks, int) or not 0 <= self.latency_ticks < self.chunk_size:
            raise ValueError(
                f"execution.latency_ticks must be an int in [0, chunk_size), got {self.latency_ticks!r}"
            )

    @classmethod
    def from_sidecar(cls, execution: dict[str, Any], chunk_size: int, action_dim: int) -> ExecutionConfig:
        """Build from a policy.json `execution` block (unknown keys are rejected by name)."""
        known = {"mode", "temporal_ensemble_coeff", "n_action_steps", "latency_ticks"}
        unknown = sorted(set(execution) - known)
        if unknown:
            raise ValueError(f"execution: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(chunk_size=chunk_size, action_dim=action_dim, **execution)


class ActionExecutor:
    """Turns chunks into one action per tick. All state is allocated once, in the constructor."""

    def __init__(self, config: ExecutionConfig) -> None:
        self.config = config
        k, a = config.chunk_size, config.action_dim
        # i = 0 is the oldest chunk still covering the tick.
        self._weights = np.exp(
            -float(config.temporal_ensemble_coeff) * np.arange(k, dtype=np.float64)
        )  # (k,)
        self._chunks = np.zeros((k, k, a), dtype=np.float32)  # ring of the last k chunks, (slot, j, A)
        self._origins = np.zeros(k, dtype=np.int64)  # origin tick per ring slot
        self._pending = np.zeros((k, a), dtype=np.float32)  # async simulation in step(): the chunk in flight
        self._slot_order = np.arange(k, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forget every chunk and request; tick 0 starts now. Call at every episode start."""
        self._t = 0
        self._head = 0  # next ring slot to write
        self._count = 0  # chunks stored (<= k)
        self._newest = -1  # origin of the newest chunk, -1 when none
        self._in_flight = False
        self._last_request = -1
        self._pending_origin = -1

    @property
    def tick(self) -> int:
        """Index of the tick the next `update()` produces."""
        return self._t

    def wants_chunk(self) -> bool:
        """Whether an inference should start at this tick."""
        cfg = self.config
        if cfg.mode == "ensemble":
            return True
        if cfg.mode == "chunk":
            return self._newest < 0 or self._t - self._newest >= cfg.n_action_steps
        # async: one request in flight at most, a new one every n ticks.
        return not self._in_flight and (
            self._last_request < 0 or self._t - self._last_request >= cfg.n_action_steps
        )

    def begin_request(self) -> int:
        """Async: note that an inference for this tick's observation started; returns its origin tick."""
        if self._in_flight:
            raise RuntimeError("an inference request is already in flight")
        self._in_flight = True
        self._last_request = self._t
        return self._t

    def cancel_request(self) -> None:
        """Async: the inference in flight failed; a new one may start at once."""
        self._in_flight = False

    def push(self, chunk: np.ndarray, origin: int | None = None) -> None:
        """Add a chunk predicted from the observation of tick `origin` (default: the current tick)."""
        cfg = self.config
        k, a = cfg.chunk_size, cfg.action_dim
        chunk = np.asarray(chunk)
        if chunk.shape == (1, k, a):
            chunk = chunk[0]  # (k, A)
        if chunk.shape != (k, a):
            raise ValueError(f"chunk shape must be ({k}, {a}) or (1, {k}, {a}), got {chunk.shape}")
        if not np.all(np.isfinite(chunk)):
            raise ValueError("chunk contains NaN or Inf")
        origin = self._t if origin is None else int(origin)
        if origin > self._t:
            raise ValueError(f"chunk origin {origin} is in the future (current tick {self._t})")
        if origin <= self._newest:
            raise ValueError(f"chunk origin {origin} is not newer than the last one ({self._newest})")
        self._chunks[self._head] = chunk
        self._origins[self._head] = origin
        self._head = (self._head + 1) % k
        self._count = min(self._count + 1, k)
        self._newest = origin
        self._in_flight = False

    def update(
        self, chunk: np.ndarray | None = None, origin: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Push `chunk` (if given); return this tick's action (A,) float32 or None (hold); advance a tick."""
        if chunk is not None:
            self.push(chunk, origin)
        action = self._combine(self._t, out)
        self._t += 1
        return action

    def advance(self, n: int) -> None:
        """Skip n ticks without producing actions (a loop that skipped missed deadlines)."""
        if n < 0:
            raise ValueError(f"advance: n must be >= 0, got {n}")
        self._t += n

    def step(self, infer: Callable[[], np.ndarray]) -> np.ndarray | None:
        """One tick with a synchronous `infer()` (simulators, eval); async latency is latency_ticks."""
        cfg = self.config
        if cfg.mode != "async":
            return self.update(infer() if self.wants_chunk() else None)
        if self._pending_origin >= 0 and self._t >= self._pending_origin + cfg.latency_ticks:
            self.push(self._pending, self._pending_origin)
            self._pending_origin = -1
        if self.wants_chunk():
            origin = self.begin_request()
            chunk = infer()
            if cfg.latency_ticks == 0:
                self.push(chunk, origin)
            else:
                self._pending[...] = np.asarray(chunk).reshape(self._pending.shape)
                self._pending_origin = origin
        return self.update()

    def _combine(self, t: int, out: np.ndarray | None) -> np.ndarray | None:
        k = self.config.chunk_size
        if self._newest < 0 or self._newest + k <= t:
            return None  # nothing covers t (no chunk yet, or the newest one is used up): hold
        if out is None:
            out = np.empty(self.config.action_dim, dtype=np.float32)
        if self.config.mode != "ensemble":
            slot = (self._head - 1) % k
            out[...] = self._chunks[slot, t - self._newest]
            return out
        slots = (self._head - self._count + self._slot_order[: self._count]) % k  # oldest first
        origins = self._origins[slots]
        live = origins > t - k  # chunks still covering t
        slots, origins = slots[live], origins[live]
        vals = self._chunks[slots, t - origins].astype(np.float64)  # (n, A)
        w = self._weights[: len(slots)]  # (n,), w[0] for the oldest
        out[...] = (w[:, None] * vals).sum(axis=0) / w.sum()
        return out
