"""The C++ ensembler against the numpy reference (edgeact.runtime.ensemble_ref), to 1e-6, in every mode."""

from __future__ import annotations

import numpy as np
import pytest
from edgeact.runtime import _core, core  # noqa: F401
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig


def _pair(cfg: ExecutionConfig) -> tuple[ActionExecutor, _core.Ensembler]:
    ep = _core.ExecutionParams()
    ep.mode = getattr(_core.ExecMode, cfg.mode.upper())
    ep.temporal_ensemble_coeff = cfg.temporal_ensemble_coeff
    ep.n_action_steps, ep.latency_ticks = cfg.n_action_steps, cfg.latency_ticks
    return ActionExecutor(cfg), _core.Ensembler(cfg.chunk_size, cfg.action_dim, ep)


@pytest.mark.parametrize(
    "cfg",
    [
        ExecutionConfig(chunk_size=8, action_dim=3, mode="ensemble", temporal_ensemble_coeff=0.01),
        ExecutionConfig(chunk_size=8, action_dim=3, mode="ensemble", temporal_ensemble_coeff=0.7),
        ExecutionConfig(chunk_size=8, action_dim=3, mode="chunk", n_action_steps=3),
        ExecutionConfig(chunk_size=8, action_dim=3, mode="chunk"),
        ExecutionConfig(chunk_size=8, action_dim=3, mode="async", n_action_steps=4),
    ],
)
def test_core_ensembler_equals_reference(cfg: ExecutionConfig) -> None:
    rng = np.random.default_rng(0)
    ref, cpp = _pair(cfg)
    pending: list[tuple[int, np.ndarray]] = []  # async: (origin, chunk) arriving after a random delay
    for episode in range(2):
        ref.reset()
        cpp.reset()
        pending.clear()
        for t in range(60):
            assert ref.tick == cpp.tick == t + (3 if t > 30 else 0)  # advance(3) at t == 30
            if t == 30:
                ref.advance(3)
                cpp.advance(3)
            if cfg.mode == "async":
                if pending and rng.random() < 0.5:
                    origin, chunk = pending.pop()
                    assert cpp.push(chunk, origin) == 0
                    ref.push(chunk, origin)
                assert ref.wants_chunk() == cpp.wants_chunk()
                if ref.wants_chunk():
                    o = ref.begin_request()
                    assert cpp.begin_request() == o
                    pending.append(
                        (o, rng.standard_normal((cfg.chunk_size, cfg.action_dim)).astype(np.float32))
                    )
            else:
                wants = ref.wants_chunk()
                assert cpp.wants_chunk() == wants
                skip = cfg.mode == "ensemble" and t % 5 == 4  # a missed inference
                if wants and not skip:
                    chunk = rng.standard_normal((cfg.chunk_size, cfg.action_dim)).astype(np.float32)
                    chunk[0, 0] = 0.0  # exact zeros are predictions like any other
                    ref.push(chunk)
                    assert cpp.push(chunk, cpp.tick) == 0
            want, got = ref.update(), cpp.update()
            if want is None:
                assert got is None, (episode, t)
            else:
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_core_push_statuses() -> None:
    _, cpp = _pair(ExecutionConfig(chunk_size=4, action_dim=2))
    ok = np.zeros((4, 2), np.float32)
    bad = ok.copy()
    bad[2, 1] = np.inf
    assert _core.status_name(cpp.push(bad, 0)) == "bad_output"
    assert cpp.push(ok, 0) == 0
    assert _core.status_name(cpp.push(ok, 0)) == "invalid"  # not newer
    assert _core.status_name(cpp.push(ok, 5)) == "invalid"  # in the future
    with pytest.raises(ValueError, match="chunk_size"):
        cpp.push(np.zeros(3, np.float32), 0)


def test_core_ensembler_params_are_validated() -> None:
    ep = _core.ExecutionParams()
    ep.n_action_steps = 9
    with pytest.raises(ValueError, match="n_action_steps"):
        _core.Ensembler(8, 2, ep)
