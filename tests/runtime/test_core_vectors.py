"""Policies without cameras and with several vector inputs (a PushT keypoint policy: `observation.state` (2)
and `observation.environment_state` (16)) through the C++ core: every vector reaches the graph, the session
equals the numpy reference in every execution mode, and a missing, wrong-sized or non-finite vector is
refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from core_graphs import KEYPOINT_VECTORS, build_graph_policy, ort_infer
from edgeact.runtime.core import Loop, LoopParams, ObservationError, Policy, PolicyParams, PostParams, Status
from edgeact.runtime.ensemble_ref import ExecutionConfig
from edgeact.runtime.policy_io import ENV_STATE, STATE
from edgeact.runtime.prepost_ref import PostConfig, ReferenceSession, preprocess

INPUTS = [STATE, ENV_STATE]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_graph_policy(
        tmp_path_factory.mktemp("keypoints"), cameras=(), vectors=KEYPOINT_VECTORS, action_dim=2, chunk_size=6
    )


@pytest.fixture(scope="module")
def policy(model_path: Path) -> Policy:
    return Policy.load(model_path, PolicyParams(intra_op_threads=1, warmup_runs=1))


def _obs(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    state = rng.uniform(-1, 1, 2).astype(np.float32)
    return state, {ENV_STATE: rng.uniform(0, 512, 16).astype(np.float32)}


def test_load_reads_the_vectors(policy: Policy) -> None:
    assert policy.cameras == ()
    assert [(v.feature, v.dim) for v in policy.vectors] == [(STATE, 2), (ENV_STATE, 16)]
    assert (policy.state_dim, policy.action_dim, policy.chunk_size) == (2, 2, 6)
    assert [v.input_name for v in policy._model.spec.vectors] == INPUTS


def test_infer_equals_onnxruntime_and_sees_every_vector(policy: Policy, model_path: Path) -> None:
    ort = ort_infer(model_path)
    rng = np.random.default_rng(0)
    for _ in range(3):
        state, vectors = _obs(rng)
        got = policy.infer({}, state, vectors)
        np.testing.assert_allclose(got, ort(preprocess({}, {STATE: state, **vectors}, [], INPUTS)), atol=1e-5)
        for feature in INPUTS:  # one element of one vector changed: the output changes
            moved = {STATE: state.copy(), **{k: v.copy() for k, v in vectors.items()}}
            moved[feature][-1] += 1.0
            other = policy.infer({}, moved[STATE], {ENV_STATE: moved[ENV_STATE]})
            assert np.abs(other - got).max() > 1e-4, feature


EXECUTIONS = [
    ExecutionConfig(chunk_size=6, action_dim=2, mode="ensemble", temporal_ensemble_coeff=0.01),
    ExecutionConfig(chunk_size=6, action_dim=2, mode="chunk", n_action_steps=4),
    ExecutionConfig(chunk_size=6, action_dim=2, mode="async", n_action_steps=3, latency_ticks=2),
    ExecutionConfig(chunk_size=6, action_dim=2, mode="async", n_action_steps=2, latency_ticks=0),
]


@pytest.mark.parametrize(
    "execution", EXECUTIONS, ids=lambda e: f"{e.mode}-{e.n_action_steps}-{e.latency_ticks}"
)
def test_session_step_equals_reference_pipeline(
    policy: Policy, model_path: Path, execution: ExecutionConfig
) -> None:
    post = PostParams(lower=-40.0, upper=[40.0, 30.0], max_delta=[5.0, 8.0])
    session = policy.session(execution, post)
    ref = ReferenceSession(ort_infer(model_path), [], INPUTS, execution,
                           PostConfig(post.lower, post.upper, post.max_delta))  # fmt: skip
    rng = np.random.default_rng(1)
    statuses = set()
    for episode in range(2):
        init = None if episode == 0 else np.array([0.5, -0.5], np.float32)
        session.reset(init)
        ref.reset(init)
        for t in range(25):
            state, vectors = _obs(rng)
            if t == 5:
                vectors[ENV_STATE][7] = np.nan  # NaN in the second vector: held, a fault
            if t == 9:
                state[1] = np.inf
            if t == 13:
                state[0] = -20.0  # the graph's trap: NaN in the model output
            want, want_status = ref.step({}, {STATE: state, **vectors})
            got, got_status = session.step({}, state, vectors)
            assert got_status.name.lower() == want_status, (episode, t)
            statuses.add(got_status)
            if want is None:
                assert got is None
            else:
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert Status.BAD_OBSERVATION in statuses and Status.OK in statuses


def test_fast_and_converting_paths_agree(policy: Policy) -> None:
    fast, slow = policy.session(), policy.session()
    fast.reset(), slow.reset()
    rng = np.random.default_rng(2)
    for _ in range(4):
        state, vectors = _obs(rng)
        got_fast, st_fast = fast.step({}, state, vectors)
        listed = {ENV_STATE: vectors[ENV_STATE].astype(np.float64).tolist()}
        got_slow, st_slow = slow.step({}, None, {STATE: state.tolist(), **listed})  # state by feature key
        assert st_fast == st_slow == Status.OK
        np.testing.assert_array_equal(got_fast, got_slow)


@pytest.mark.parametrize(
    ("state", "vectors", "match"),
    [
        (np.zeros(2, np.float32), {}, "no observation.environment_state \\(16 values"),
        (None, {ENV_STATE: np.zeros(16, np.float32)}, "no state \\(2 values"),
        (np.zeros(2, np.float32), {ENV_STATE: np.zeros(15, np.float32)}, "environment_state must have 16"),
        (np.zeros(3, np.float32), {ENV_STATE: np.zeros(16, np.float32)}, "state must have 2 values"),
    ],
)
def test_missing_or_wrong_sized_vectors_raise_naming_them(policy: Policy, state, vectors, match) -> None:
    with pytest.raises(ObservationError, match=match):
        policy.session().step({}, state, vectors)
    loop = Loop(policy.session(), LoopParams(rate_hz=20))
    with pytest.raises(ObservationError, match=match):
        loop.post_observation({}, state, vectors=vectors)


def test_loop_serves_a_keypoint_policy(policy: Policy) -> None:
    """A constant observation: every OK command is an ensemble of the rows of one known chunk."""
    state, vectors = _obs(np.random.default_rng(3))
    chunk = policy.infer({}, state, vectors)[0]  # (k, A)
    session = policy.session()
    session.reset()
    loop = Loop(session, LoopParams(rate_hz=50, stale_timeout_s=5.0, max_consecutive_overruns=1000))
    loop.post_observation({}, state, vectors=vectors)
    cmds, seq = [], -1
    with loop:
        for _ in range(8):
            loop.post_observation({}, state, vectors=vectors)
            cmd = loop.wait_command(after_seq=seq, timeout_s=0.5)
            if cmd is not None:
                cmds.append(cmd)
                seq = cmd.seq
    assert cmds and all(c.status == Status.OK for c in cmds)
    lo, hi = chunk.min(axis=0) - 1e-5, chunk.max(axis=0) + 1e-5
    assert all(np.all((c.values >= lo) & (c.values <= hi)) for c in cmds)
    assert not loop.stats().safe_stopped


def test_a_policy_without_state_ignores_the_robots_state(tmp_path: Path) -> None:
    path = build_graph_policy(tmp_path, vectors=((ENV_STATE, 4),), chunk_size=4)
    policy = Policy.load(path, PolicyParams(warmup_runs=1))
    assert policy.state_dim == 0 and [v.feature for v in policy.vectors] == [ENV_STATE]
    rng = np.random.default_rng(4)
    images = {"image": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)}
    env = {ENV_STATE: rng.uniform(-1, 1, 4).astype(np.float32)}
    with_state, _ = policy.session().step(images, np.zeros(7, np.float32), env)  # any state: not an input
    without, _ = policy.session().step(images, None, env)
    np.testing.assert_array_equal(with_state, without)
    want = ort_infer(path)(preprocess(images, env, policy.cameras, [ENV_STATE]))[0, 0]
    np.testing.assert_allclose(without, want, atol=1e-5)
