"""The real-time Loop: commands equal the reference, stage timings and jitter histogram, watchdog (stale
observation, consecutive overruns, faults), async inference, real-time fallbacks."""

from __future__ import annotations

import time

import numpy as np
import pytest
from core_graphs import build_graph_policy
from edgeact.runtime.core import ConfigError, Loop, LoopParams, ObservationError, Policy, PolicyParams, Status
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = build_graph_policy(tmp_path_factory.mktemp("loop"), chunk_size=8, state_dim=3, action_dim=2)
    return Policy.load(path, PolicyParams(warmup_runs=1))


def _obs(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return {"image": image}, rng.uniform(-1, 1, 3).astype(np.float32)


def _collect(loop: Loop, seconds: float, post=None) -> list:
    cmds, seq, end = [], -1, time.monotonic() + seconds
    while time.monotonic() < end:
        if post is not None:
            post()
        cmd = loop.wait_command(after_seq=seq, timeout_s=0.05)
        if cmd is not None:
            cmds.append(cmd)
            seq = cmd.seq
    return cmds


def test_loop_commands_equal_the_reference_for_a_constant_observation(policy: Policy) -> None:
    """With one observation every chunk is the same chunk C, so tick t's command is a known function of t."""
    images, state = _obs()
    chunk = policy.infer(images, state)[0]  # (k, A)
    session = policy.session()
    session.reset()
    loop = Loop(session, LoopParams(rate_hz=20, stale_timeout_s=5.0))
    loop.post_observation(images, state)
    with loop:
        cmds = _collect(loop, 0.6, post=lambda: loop.post_observation(images, state))
    stats = loop.stats()
    assert len(cmds) >= 5 and stats.ticks >= len(cmds)
    timings = loop.timings()
    executed = timings["tick"]  # the ensembler tick of every loop tick; skipped deadlines leave gaps
    assert len(executed) == stats.ticks and executed[-1] + 1 <= stats.ticks + stats.skipped_ticks
    ref = ActionExecutor(ExecutionConfig(chunk_size=8, action_dim=2))
    want = {}
    for t in executed:
        ref.advance(int(t) - ref.tick)
        want[int(t)] = ref.update(chunk).copy()
    for c in cmds:
        assert c.status == Status.OK
        np.testing.assert_allclose(c.values, want[c.tick], rtol=0, atol=1e-6)
    assert set(timings) == {"pre", "infer", "ensemble", "post", "write", "total", "lateness", "tick"}
    assert all(len(v) == stats.ticks for v in timings.values())
    assert np.all(timings["infer"] > 0) and np.all(timings["total"] >= timings["infer"])
    edges, counts = loop.jitter_histogram()
    assert edges[0] == 0 and counts.sum() == stats.ticks
    assert stats.inferences == stats.ticks and not stats.safe_stopped


def test_stale_observation_latches_safe_stop_and_holds(policy: Policy) -> None:
    images, state = _obs(1)
    session = policy.session()
    session.reset()
    loop = Loop(session, LoopParams(rate_hz=100, stale_timeout_s=0.1))
    loop.post_observation(images, state)
    with loop:
        first = loop.wait_command(timeout_s=1.0)
        time.sleep(0.4)  # the camera stops delivering
        last = loop.latest_command()
    stats = loop.stats()
    assert first is not None and first.status == Status.OK
    assert stats.safe_stopped and "stale observation" in stats.safe_stop_reason
    assert last.status == Status.SAFE_STOP
    assert last.values is not None and np.all(np.isfinite(last.values))


def test_no_observation_at_all_latches_safe_stop(policy: Policy) -> None:
    session = policy.session()
    session.reset()
    with Loop(session, LoopParams(rate_hz=100, stale_timeout_s=0.05)) as loop:
        time.sleep(0.25)
        cmd = loop.latest_command()
    assert "no observation" in loop.stats().safe_stop_reason
    assert cmd.status == Status.SAFE_STOP and cmd.values is None  # nothing safe to hold: no command


def test_consecutive_overruns_are_counted_skipped_and_stop(policy: Policy) -> None:
    images, state = _obs(2)
    session = policy.session()
    session.reset()
    # 10 us ticks cannot fit an inference: every tick overruns.
    with Loop(session, LoopParams(rate_hz=100_000, max_consecutive_overruns=5, stale_timeout_s=5)) as loop:
        loop.post_observation(images, state)
        time.sleep(0.2)
    stats = loop.stats()
    assert stats.overruns >= 5 and stats.skipped_ticks >= stats.overruns
    assert stats.safe_stopped and "consecutive overruns" in stats.safe_stop_reason


def test_fault_in_output_stops_or_is_counted(policy: Policy) -> None:
    images, state = _obs(3)
    bad = state.copy()
    bad[0] = -30.0  # the graph's NaN trap
    chunk = policy.infer(images, state)[0]  # (k, A): every OK command is an ensemble of its rows
    for stop_on_fault in (True, False):
        session = policy.session()
        session.reset()
        # a generous stale timeout: a stalled, loaded machine must not latch a stale-observation stop here
        params = LoopParams(
            rate_hz=200, stale_timeout_s=5, max_consecutive_overruns=0, stop_on_fault=stop_on_fault
        )
        loop = Loop(session, params)
        loop.post_observation(images, state)
        with loop:
            good = loop.wait_command(timeout_s=1.0)
            loop.post_observation(images, bad)
            time.sleep(0.05)
            during = _collect(loop, 0.1, post=lambda lp=loop: lp.post_observation(images, bad))
        stats = loop.stats()
        assert good.status == Status.OK and stats.faults >= 1
        assert stats.safe_stopped is stop_on_fault
        # Under load a tick may still have run on the good observation; from the first fault on, all hold.
        first_fault = next(i for i, c in enumerate(during) if c.status != Status.OK)
        during = during[first_fault:]
        want = {Status.BAD_OUTPUT, Status.SAFE_STOP} if stop_on_fault else {Status.BAD_OUTPUT}
        assert len(during) >= 3 and all(c.status in want for c in during)
        assert during[-1].status == (Status.SAFE_STOP if stop_on_fault else Status.BAD_OUTPUT)
        if stop_on_fault:
            assert stats.safe_stop_reason.startswith("fault bad_output: NaN/Inf in the model output at tick ")
        held = during[0].values
        assert np.all(np.isfinite(held))
        for c in during:  # the last safe command, held tick after tick
            np.testing.assert_array_equal(c.values, held)
        lo, hi = chunk.min(axis=0), chunk.max(axis=0)  # a weighted mean of chunk rows lies within their range
        assert np.all(held >= lo - 1e-6) and np.all(held <= hi + 1e-6)


def test_async_loop_merges_chunks_from_the_inference_thread(policy: Policy) -> None:
    images, state = _obs(4)
    session = policy.session(ExecutionConfig(chunk_size=8, action_dim=2, mode="async", n_action_steps=4))
    session.reset()
    with Loop(session, LoopParams(rate_hz=200, stale_timeout_s=5, max_consecutive_overruns=0)) as loop:
        cmds = _collect(loop, 0.3, post=lambda: loop.post_observation(images, state))
    stats = loop.stats()
    chunk = policy.infer(images, state)[0]
    ok = [c for c in cmds if c.status == Status.OK]
    assert stats.inferences >= 2 and stats.last_inference_ns > 0 and len(ok) >= 5
    for c in ok:  # every executed action is an entry of the (constant) chunk
        assert np.min(np.abs(chunk - c.values).max(axis=1)) < 1e-6


def test_realtime_setup_falls_back_with_a_warning(policy: Policy, caplog: pytest.LogCaptureFixture) -> None:
    session = policy.session()
    session.reset()
    with caplog.at_level("WARNING"), Loop(session, LoopParams(rate_hz=50, cpu_affinity=[100_000])) as loop:
        time.sleep(0.05)
    warnings = loop.stats().realtime_warnings
    assert any("affinity" in w for w in warnings)
    assert any("affinity" in r.getMessage() for r in caplog.records)


def test_post_observation_validates_shapes(policy: Policy) -> None:
    session = policy.session()
    loop = Loop(session, LoopParams())
    with pytest.raises(ObservationError, match="camera 'image'"):
        loop.post_observation({"image": np.zeros((5, 5, 3), np.uint8)}, np.zeros(3, np.float32))


@pytest.mark.parametrize("spin_us", [-1.0, 10_001.0])
def test_spin_must_fit_in_half_a_period(spin_us: float) -> None:
    with pytest.raises(ConfigError, match="spin_us"):
        LoopParams(rate_hz=50, spin_us=spin_us)


def test_spinning_loop_never_starts_a_tick_early(policy: Policy) -> None:
    session = policy.session()
    session.reset()
    images, state = _obs()
    with Loop(session, LoopParams(rate_hz=200, stale_timeout_s=5, spin_us=2000)) as loop:
        while loop.stats().ticks < 30:
            loop.post_observation(images, state)
            time.sleep(0.005)
    lateness = loop.timings()["lateness"]
    assert len(lateness) >= 30 and lateness.min() >= 0
