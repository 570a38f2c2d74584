"""Policy and Session through the bindings: exact agreement with onnxruntime's Python API and the numpy
references in every execution mode, and clear errors or fault statuses on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core_graphs import build_graph_policy, ort_infer
from edgeact.runtime.core import (
    ConfigError,
    ModelLoadError,
    ObservationError,
    Policy,
    PolicyParams,
    PostParams,
    Status,
    available_backends,
)
from edgeact.runtime.ensemble_ref import ExecutionConfig
from edgeact.runtime.policy_io import STATE
from edgeact.runtime.prepost_ref import CameraInputRef, PostConfig, ReferenceSession, preprocess

CAMS = (("top", 12, 16, "NHWC"), ("wrist", 10, 8, "NCHW"))
FRAMES = {"top": (30, 40), "wrist": (10, 8)}  # top is resized, wrist is copied


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_graph_policy(tmp_path_factory.mktemp("graph"), cameras=CAMS, state_dim=3, action_dim=2)


@pytest.fixture(scope="module")
def policy(model_path: Path) -> Policy:
    return Policy.load(model_path, PolicyParams(intra_op_threads=1, warmup_runs=1))


def _obs(rng: np.random.Generator, shapes: dict = FRAMES) -> tuple[dict[str, np.ndarray], np.ndarray]:
    images = {n: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for n, (h, w) in shapes.items()}
    return images, rng.uniform(-1, 1, 3).astype(np.float32)


def _ref_cameras(policy: Policy) -> list[CameraInputRef]:
    return [
        CameraInputRef(c.name, c.input_name, c.height, c.width, c.channels, c.layout) for c in policy.cameras
    ]


def test_load_reads_the_sidecar(policy: Policy) -> None:
    assert "onnxruntime" in available_backends()
    assert policy.backend == "onnxruntime"
    assert [c.name for c in policy.cameras] == ["top", "wrist"]
    assert (policy.state_dim, policy.action_dim, policy.chunk_size, policy.fps) == (3, 2, 6, 50.0)


def test_infer_equals_onnxruntime_python(policy: Policy, model_path: Path) -> None:
    ort = ort_infer(model_path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        images, state = _obs(rng)
        want = ort(preprocess(images, {STATE: state}, _ref_cameras(policy), [STATE]))
        got = policy.infer(images, state)
        assert got.shape == (1, 6, 2)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


EXECUTIONS = [
    ExecutionConfig(chunk_size=6, action_dim=2, mode="ensemble", temporal_ensemble_coeff=0.01),
    ExecutionConfig(chunk_size=6, action_dim=2, mode="ensemble", temporal_ensemble_coeff=0.5),
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
    post = PostParams(lower=[-3.0, -2.0], upper=3.0, max_delta=[0.8, 1.5])
    session = policy.session(execution, post, frame_shapes=FRAMES)
    ref = ReferenceSession(ort_infer(model_path), _ref_cameras(policy), [STATE], execution,
                           PostConfig(post.lower, post.upper, post.max_delta))  # fmt: skip
    rng = np.random.default_rng(1)
    for episode in range(2):
        init = None if episode == 0 else np.array([0.5, -0.5], np.float32)
        session.reset(init)
        ref.reset(init)
        for t in range(25):
            images, state = _obs(rng)
            if t == 7:
                state[1] = np.nan  # a bad observation: held, counted as a fault
            if t == 11:
                state[0] = -20.0  # the graph's trap: NaN in the model output
            want, want_status = ref.step(images, {STATE: state})
            got, got_status = session.step(images, state)
            assert got_status.name.lower() == want_status, (episode, t)
            if want is None:
                assert got is None
            else:
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert session.tick == 25
    assert session.last_timings.post_ns >= 0


def test_nan_guard_holds_the_last_safe_command(policy: Policy) -> None:
    session = policy.session(frame_shapes=FRAMES)
    session.reset()
    rng = np.random.default_rng(2)
    images, state = _obs(rng)
    first, status = session.step(images, state)
    assert status == Status.OK and first is not None
    state[0] = -50.0
    held, status = session.step(images, state)
    assert status == Status.BAD_OUTPUT and status.is_fault
    np.testing.assert_array_equal(held, first)
    state[0] = np.inf
    held, status = session.step(images, state)
    assert status == Status.BAD_OBSERVATION
    np.testing.assert_array_equal(held, first)


def test_no_command_before_the_first_action(policy: Policy) -> None:
    execution = ExecutionConfig(chunk_size=6, action_dim=2, mode="async", latency_ticks=3)
    session = policy.session(execution, frame_shapes=FRAMES)
    session.reset()
    images, state = _obs(np.random.default_rng(3))
    assert session.step(images, state) == (None, Status.HOLD)
    session.reset(initial_command=[0.25, 0.5])
    cmd, status = session.step(images, state)
    assert status == Status.HOLD
    np.testing.assert_array_equal(cmd, [0.25, 0.5])


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda im, st: im.pop("wrist"), "no frame for camera 'wrist'"),
        (lambda im, st: im.__setitem__("top", np.zeros((31, 40, 3), np.uint8)), "camera 'top'.*30, 40, 3"),
        (lambda im, st: im.__setitem__("top", np.zeros((30, 40, 4), np.uint8)), "camera 'top'"),
        (lambda im, st: im.__setitem__("wrist", np.zeros((10, 8), np.uint8)), "camera 'wrist'"),
        (lambda im, st: im.__setitem__("wrist", np.zeros((10, 8, 3), np.float32)), "camera 'wrist'.*float32"),
    ],
)
def test_bad_observations_raise_naming_the_camera(policy: Policy, mutate, match: str) -> None:
    session = policy.session(frame_shapes=FRAMES)
    images, state = _obs(np.random.default_rng(4))
    mutate(images, state)
    with pytest.raises(ObservationError, match=match):
        session.step(images, state)


def test_wrong_state_size_raises(policy: Policy) -> None:
    images, _ = _obs(np.random.default_rng(5))
    with pytest.raises(ObservationError, match="state must have 3 values"):
        policy.session(frame_shapes=FRAMES).step(images, np.zeros(4, np.float32))


def test_session_config_errors(policy: Policy) -> None:
    with pytest.raises(ConfigError, match="frame_shapes names unknown"):
        policy.session(frame_shapes={"side": (10, 10)})
    with pytest.raises(ConfigError, match=r"PostParams\.lower"):
        policy.session(post=PostParams(lower=[0.0, 0.0, 0.0]))
    with pytest.raises(ConfigError, match="chunk_size=5"):
        policy.session(ExecutionConfig(chunk_size=5, action_dim=2))


def _copy_artifact(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    (dst_dir / src.name).write_bytes(src.read_bytes())
    (dst_dir / src.with_suffix(".json").name).write_text(src.with_suffix(".json").read_text())
    return dst_dir / src.name


def test_missing_model_and_sidecar(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        Policy.load(tmp_path / "nope.onnx")
    path = _copy_artifact(model_path, tmp_path / "a")
    path.with_suffix(".json").unlink()
    path.write_bytes(b"\x00not a model")
    with pytest.raises(ModelLoadError, match=r"sidecar|metadata"):
        Policy.load(path)


def test_corrupt_model_is_refused(tmp_path: Path, model_path: Path) -> None:
    path = _copy_artifact(model_path, tmp_path / "b")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        Policy.load(path)
    with pytest.raises(ModelLoadError, match=str(path)):
        Policy.load(path, PolicyParams(verify_sha256=False))  # ONNX Runtime itself refuses it


def test_sidecar_that_disagrees_with_the_graph(tmp_path: Path, model_path: Path) -> None:
    path = _copy_artifact(model_path, tmp_path / "c")
    side = json.loads(path.with_suffix(".json").read_text())
    side["inputs"][0]["shape"] = [1, 14, 16, 3]
    side["cameras"][0]["height"] = 14
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelLoadError, match=r"'observation.images.top' has shape \[1, 12, 16, 3\]"):
        Policy.load(path)


def test_engine_without_tensorrt(tmp_path: Path, model_path: Path) -> None:
    from edgeact.runtime import _core

    if _core.tensorrt_compiled():
        pytest.skip("this build has TensorRT")
    path = tmp_path / "policy.engine"
    path.write_bytes(b"engine bytes")
    side = json.loads(model_path.with_suffix(".json").read_text())
    side.update(format="tensorrt", model_file="policy.engine")
    import hashlib

    side["model_sha256"] = hashlib.sha256(b"engine bytes").hexdigest()
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelLoadError, match="TensorRT"):
        Policy.load(path)


def test_status_names_mirror_the_core() -> None:
    from edgeact.runtime import _core

    for status in Status:
        assert _core.status_name(int(status)) == status.name.lower()


def test_step_fast_and_converting_paths_agree(policy: Policy) -> None:
    """Frames already in the runtime's layout take step()'s fast path; anything else is converted first
    (non-contiguous frames, a float64 list as state) and must give the same commands."""
    fast, slow = policy.session(frame_shapes=FRAMES), policy.session(frame_shapes=FRAMES)
    fast.reset(), slow.reset()
    rng = np.random.default_rng(8)
    for _ in range(5):
        images, state = _obs(rng)
        strided = {n: np.asfortranarray(f) for n, f in images.items()}  # same values, other memory layout
        assert not strided["top"].flags.c_contiguous
        got_fast, st_fast = fast.step(images, state)
        got_slow, st_slow = slow.step(strided, state.astype(np.float64).tolist())
        assert st_fast == st_slow == Status.OK and type(st_fast) is Status
        np.testing.assert_array_equal(got_fast, got_slow)
        t = fast.last_timings
        assert t.infer_ns > 0 and t.total_ns >= t.pre_ns + t.infer_ns + t.ensemble_ns + t.post_ns


def test_load_options_pass_through(model_path: Path) -> None:
    images, state = _obs(np.random.default_rng(9))
    got = []
    for params in (
        PolicyParams(warmup_runs=1, release_load_memory=False),
        PolicyParams(warmup_runs=1, ort_config=(("session.use_device_allocator_for_initializers", "1"),)),
    ):
        session = Policy.load(model_path, params).session(frame_shapes=FRAMES)
        session.reset()
        got.append(session.step(images, state)[0])
    np.testing.assert_array_equal(got[0], got[1])
    with pytest.raises(ConfigError, match="ort_config"):
        PolicyParams(ort_config=(("session.disable_prepacking", 1),))
