"""Tests of the pure-numpy action-execution reference against offline formulas (docs/design.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig


def _chunks(rng: np.random.Generator, n: int, k: int, a: int) -> list[np.ndarray]:
    return [rng.standard_normal((k, a)).astype(np.float32) for _ in range(n)]


def _offline_ensemble(chunks: list[np.ndarray], t: int, k: int, m: float) -> np.ndarray:
    """The formula written out: chunks s = max(0, t-k+1) .. t, weight exp(-m*i), i = 0 the oldest."""
    first = max(0, t - k + 1)
    num = np.zeros(chunks[0].shape[1])
    den = 0.0
    for i, s in enumerate(range(first, t + 1)):
        w = math.exp(-m * i)
        num += w * chunks[s][t - s].astype(np.float64)
        den += w
    return num / den


@pytest.mark.parametrize("m", [0.01, 0.0, 0.5, -0.1])
def test_ensemble_matches_offline_formula(m: float) -> None:
    k, a, ticks = 7, 3, 40
    chunks = _chunks(np.random.default_rng(0), ticks, k, a)
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, temporal_ensemble_coeff=m))
    for t in range(ticks):
        assert ex.wants_chunk()
        got = ex.update(chunks[t])
        assert got is not None and got.dtype == np.float32
        np.testing.assert_allclose(got, _offline_ensemble(chunks, t, k, m), rtol=0, atol=1e-6)


def test_ensemble_matches_online_running_average() -> None:
    """An independent formulation: the running weighted average ACT implementations keep per future step."""
    k, a, ticks, m = 5, 2, 30, 0.2
    chunks = _chunks(np.random.default_rng(1), ticks, k, a)
    w = np.exp(-m * np.arange(k))
    cum = np.cumsum(w)
    avg: dict[int, np.ndarray] = {}  # future tick -> running average
    cnt: dict[int, int] = {}
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, temporal_ensemble_coeff=m))
    for t in range(ticks):
        for j in range(k):
            step = t + j
            x = chunks[t][j].astype(np.float64)
            if step not in avg:
                avg[step], cnt[step] = x, 1
            else:
                c = cnt[step]
                avg[step] = (avg[step] * cum[c - 1] + w[c] * x) / cum[c]
                cnt[step] = c + 1
        np.testing.assert_allclose(ex.update(chunks[t]), avg.pop(t), rtol=0, atol=1e-6)


def test_predictions_with_exact_zero_are_not_dropped() -> None:
    k, a, m = 4, 2, 0.01
    zero = np.zeros((k, a), np.float32)  # a perfectly valid prediction: every action exactly 0.0
    ones = np.ones((k, a), np.float32)
    ones[0, 0] = 0.0  # a single exact zero inside the second chunk too (its entry for tick 1)
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, temporal_ensemble_coeff=m))
    np.testing.assert_array_equal(ex.update(zero), [0.0, 0.0])
    got = ex.update(ones)
    w0, w1 = 1.0, math.exp(-m)
    np.testing.assert_allclose(got, [(w0 * 0 + w1 * 0) / (w0 + w1), (w0 * 0 + w1 * 1) / (w0 + w1)], atol=1e-7)


def test_ensemble_with_missed_inferences_weights_by_rank_among_covering_chunks() -> None:
    k, a, m = 6, 1, 0.3
    rng = np.random.default_rng(2)
    chunks = _chunks(rng, 20, k, a)
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, temporal_ensemble_coeff=m))
    have = {}
    for t in range(20):
        push = t % 3 != 2  # every third inference missing (an overrun)
        if push:
            have[t] = chunks[t]
        got = ex.update(chunks[t] if push else None)
        covering = [s for s in sorted(have) if t - k < s <= t]
        w = np.exp(-m * np.arange(len(covering)))
        want = (
            sum(wi * have[s][t - s].astype(np.float64) for wi, s in zip(w, covering, strict=True)) / w.sum()
        )
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_chunk_mode_executes_n_steps_of_each_chunk() -> None:
    k, a, n = 5, 2, 3
    chunks = _chunks(np.random.default_rng(3), 20, k, a)
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, mode="chunk", n_action_steps=n))
    inferred = []
    for t in range(12):
        wants = ex.wants_chunk()
        if wants:
            inferred.append(t)
        got = ex.update(chunks[t] if wants else None)
        s = (t // n) * n
        np.testing.assert_array_equal(got, chunks[s][t - s])
    assert inferred == [0, 3, 6, 9]


def test_async_latency_offsets_and_hold_before_first_chunk() -> None:
    k, a, n, d = 8, 2, 4, 2
    chunks = _chunks(np.random.default_rng(4), 40, k, a)
    ex = ActionExecutor(
        ExecutionConfig(chunk_size=k, action_dim=a, mode="async", n_action_steps=n, latency_ticks=d)
    )
    calls: list[int] = []

    def infer() -> np.ndarray:
        calls.append(ex.tick)
        return chunks[ex.tick]

    got = [ex.step(infer) for _ in range(20)]
    assert got[0] is None and got[1] is None  # first chunk not there yet: the caller holds
    assert calls == [0, 4, 8, 12, 16]
    for t in range(2, 20):
        # The chunk requested at s enters at s + d; until then the previous one continues.
        s = max(r for r in calls if r + d <= t)
        np.testing.assert_array_equal(got[t], chunks[s][t - s])


def test_async_with_latency_longer_than_period_requests_after_arrival() -> None:
    k, a, n, d = 10, 1, 2, 3
    ex = ActionExecutor(
        ExecutionConfig(chunk_size=k, action_dim=a, mode="async", n_action_steps=n, latency_ticks=d)
    )
    calls: list[int] = []

    def infer() -> np.ndarray:
        calls.append(ex.tick)
        return np.full((k, a), ex.tick, np.float32)

    for _ in range(12):
        ex.step(infer)
    assert calls == [0, 3, 6, 9]  # one request in flight at a time


def test_push_with_origin_in_the_past_skips_its_first_entries() -> None:
    k, a = 6, 1
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, mode="async", n_action_steps=6))
    for _ in range(3):
        assert ex.update() is None
    chunk = np.arange(k, dtype=np.float32)[:, None]
    ex.push(chunk, origin=0)  # requested at tick 0, ready at tick 3
    assert ex.update()[0] == 3.0
    assert ex.update()[0] == 4.0
    assert ex.update()[0] == 5.0
    assert ex.update() is None  # used up: hold


def test_reset_clears_everything() -> None:
    k, a = 4, 2
    chunks = _chunks(np.random.default_rng(5), 10, k, a)
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a))
    first = [ex.update(c).copy() for c in chunks]
    ex.reset()
    assert ex.tick == 0 and ex.wants_chunk()
    assert ex.update() is None  # nothing left from the last episode
    ex.reset()
    second = [ex.update(c).copy() for c in chunks]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


def test_state_is_allocated_once_and_out_is_filled_in_place() -> None:
    k, a = 4, 2
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a))
    buffers = (ex._chunks, ex._origins, ex._weights)
    out = np.empty(a, np.float32)
    for c in _chunks(np.random.default_rng(6), 9, k, a):
        assert ex.update(c, out=out) is out
    ex.reset()
    assert all(x is y for x, y in zip((ex._chunks, ex._origins, ex._weights), buffers, strict=True))


def test_advance_skips_ticks() -> None:
    k, a = 5, 1
    ex = ActionExecutor(ExecutionConfig(chunk_size=k, action_dim=a, mode="chunk", n_action_steps=5))
    ex.update(np.arange(k, dtype=np.float32)[:, None])
    ex.advance(2)
    assert ex.tick == 3
    assert ex.update()[0] == 3.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "temporal"}, "execution.mode"),
        ({"chunk_size": 0}, "execution.chunk_size"),
        ({"action_dim": -1}, "execution.action_dim"),
        ({"n_action_steps": 11}, "execution.n_action_steps"),
        ({"temporal_ensemble_coeff": float("nan")}, "execution.temporal_ensemble_coeff"),
        ({"latency_ticks": 10}, "execution.latency_ticks"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    base = {"chunk_size": 10, "action_dim": 2}
    with pytest.raises(ValueError, match=field):
        ExecutionConfig(**{**base, **kwargs})


def test_from_sidecar_and_unknown_field() -> None:
    cfg = ExecutionConfig.from_sidecar({"mode": "chunk", "n_action_steps": 20}, chunk_size=100, action_dim=2)
    assert cfg.mode == "chunk" and cfg.n_action_steps == 20
    assert ExecutionConfig.from_sidecar({}, 100, 2).n_action_steps == 100
    with pytest.raises(ValueError, match="unknown field"):
        ExecutionConfig.from_sidecar({"mod": "chunk"}, 100, 2)


def test_bad_chunks_are_refused() -> None:
    ex = ActionExecutor(ExecutionConfig(chunk_size=3, action_dim=2))
    with pytest.raises(ValueError, match="shape"):
        ex.push(np.zeros((3, 3), np.float32))
    bad = np.zeros((3, 2), np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ex.push(bad)
    ex.push(np.zeros((1, 3, 2), np.float32))  # the model's (1, k, A) output is accepted
    with pytest.raises(ValueError, match="not newer"):
        ex.push(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="future"):
        ex.push(np.zeros((3, 2), np.float32), origin=5)
