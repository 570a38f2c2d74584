"""rt-run serves keypoint policies on pusht-sim (no camera, `observation.environment_state`: gym-pusht's
`environment_state_agent_pos`), chosen by the policy's inputs, and refuses before anything runs a policy whose
inputs the robot cannot provide, naming the input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_policy import build_tiny_policy

pytest.importorskip("gym_pusht")

from edgeact.runtime.cli import main
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig
from edgeact.runtime.policy_io import ENV_STATE, STATE, CameraInput, PolicyIO, VectorInput
from edgeact.runtime.robots.pusht_sim import (
    PUSHT_KEYPOINT_NAMES,
    coverage_to_reward,
    make_pusht_env,
    reset_pusht,
)
from edgeact.runtime.runner import robot_options_for_policy

STEPS = 12


@pytest.fixture(scope="module")
def keypoint_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_policy(
        tmp_path_factory.mktemp("kp"), cameras=(), env_state_names=PUSHT_KEYPOINT_NAMES, target=(300.0, 200.0)
    )


def _run(tmp_path: Path, model: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "summary.json"
    argv = ["--robot", "pusht-sim", "--model", str(model), "--episodes", "2", "--seed", "3"]
    argv += ["--max-episode-steps", str(STEPS), "--json", str(out), *extra]
    rc = main(argv)
    return rc, (json.loads(out.read_text()) if out.exists() else {})


def _reference_rollouts(model: Path, seeds: list[int], execution: ExecutionConfig) -> list[tuple[int, float]]:
    """(steps, max reward) per episode from onnxruntime + the numpy executor on the keypoint env."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    env = make_pusht_env(max_episode_steps=STEPS, observation="keypoints")
    out = []
    for seed in seeds:
        raw, _ = reset_pusht(env, seed=seed)
        ex = ActionExecutor(execution)
        ex.reset()
        rewards, done = [], False
        while not done:
            feeds = {
                STATE: raw["agent_pos"].astype(np.float32)[None],  # (1, 2)
                ENV_STATE: raw["environment_state"].astype(np.float32)[None],  # (1, 16)
            }
            action = ex.step(lambda feeds=feeds: sess.run(None, feeds)[0])
            raw, _, term, trunc, info = env.step(np.clip(action, 0.0, 512.0).astype(np.float32))
            rewards.append(coverage_to_reward(info["coverage"]))
            done = term or trunc
        out.append((len(rewards), max(rewards)))
    env.close()
    return out


def test_keypoint_policy_runs_and_matches_the_reference(tmp_path: Path, keypoint_model: Path, capsys) -> None:
    rc, summary = _run(tmp_path, keypoint_model)
    assert rc == 0, capsys.readouterr().err
    assert "success rate" in capsys.readouterr().out
    assert summary["inputs"] == [STATE, ENV_STATE] and summary["n_episodes"] == 2
    ref = _reference_rollouts(keypoint_model, [3, 4], ExecutionConfig(chunk_size=10, action_dim=2))
    got = [(ep["steps"], ep["max_reward"]) for ep in summary["episodes"]]
    assert [s for s, _ in got] == [s for s, _ in ref]
    np.testing.assert_allclose([r for _, r in got], [r for _, r in ref], atol=1e-4)
    assert summary["statuses"] == {"OK": sum(s for s, _ in ref)} and summary["safe_stops"] == []


def test_observation_mode_follows_the_policy_inputs() -> None:
    keypoints = PolicyIO((), (VectorInput(STATE, ("x", "y")), VectorInput(ENV_STATE, ("k",))), ("x", "y"), 4)
    image = PolicyIO((CameraInput("image", 96, 96),), (VectorInput(STATE, ("x", "y")),), ("x", "y"), 4)
    assert robot_options_for_policy("pusht-sim", keypoints, {}) == {"observation": "keypoints"}
    assert robot_options_for_policy("pusht-sim", image, {"a": 1}) == {"a": 1, "observation": "pixels"}
    assert robot_options_for_policy("pusht-sim", image, {"observation": "keypoints"}) == {
        "observation": "keypoints"
    }  # an explicit option is kept (and then refused by the input check)
    assert robot_options_for_policy("widowx", keypoints, {}) == {}


@pytest.mark.parametrize(
    ("policy", "flags", "message"),
    [
        (
            "keypoints",
            ("--robot-option", "observation=pixels"),
            r"cannot provide input 'observation\.environment_state' \(16 values",
        ),
        ("image", ("--robot-option", "observation=keypoints"), r"cannot provide input 'observation\.image'"),
        ("env10", (), r"input 'observation\.environment_state' has 10 values in the model, robot gives 16"),
    ],
)
def test_inputs_the_robot_cannot_provide_are_refused(tmp_path: Path, policy, flags, message, capsys) -> None:
    import re

    kwargs = {
        "keypoints": {"cameras": (), "env_state_names": PUSHT_KEYPOINT_NAMES},
        "image": {},
        "env10": {"cameras": (), "env_state_names": tuple(f"k{i}" for i in range(10))},
    }[policy]
    model = build_tiny_policy(tmp_path / policy, **kwargs)
    rc, summary = _run(tmp_path, model, *flags)
    assert rc == 2 and summary == {}  # exit 2: bad input, before any episode (runtime/cli.py)
    err = capsys.readouterr().err
    assert "does not fit robot pusht-sim" in err and re.search(message, err), err


def test_a_state_free_keypoint_policy_fits_the_keypoint_sim() -> None:
    from types import SimpleNamespace

    from edgeact.runtime.robots.pusht_sim import PushTSim
    from edgeact.runtime.runner import PolicyMismatchError, check_policy_matches_robot

    spec = PushTSim(observation="keypoints").spec
    policy = SimpleNamespace(
        cameras=(), vectors=(VectorInput(ENV_STATE, PUSHT_KEYPOINT_NAMES),), state_names=(),
        action_names=spec.action_names, fps=spec.fps,
    )  # fmt: skip
    check_policy_matches_robot(policy, spec)  # the robot's state is simply not used
    policy.vectors = (VectorInput(STATE, ("x", "y", "z")), *policy.vectors)
    policy.state_names = ("x", "y", "z")
    with pytest.raises(PolicyMismatchError, match=r"input 'observation\.state' has 3 values in the model"):
        check_policy_matches_robot(policy, spec)
