"""pusht-sim: the Robot interface over gym-pusht, the PushT metrics and the angle-first reset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgeact.runtime.robots import EpisodeResult, RobotError, RobotStoppedError, make_robot
from edgeact.runtime.robots.pusht_sim import (
    PushTSim,
    coverage_to_reward,
    is_success,
    make_pusht_env,
    pusht_metrics,
    reset_pusht,
)

GOAL_STATE = [100.0, 100.0, 256.0, 256.0, math.pi / 4]  # block exactly on the goal pose, agent far away


@pytest.fixture(scope="module")
def robot() -> PushTSim:
    r = make_robot("pusht-sim")
    assert isinstance(r, PushTSim)
    r.connect()
    yield r
    r.disconnect()


def test_reward_and_success_follow_reference_definitions() -> None:
    assert coverage_to_reward(0.0) == 0.0
    assert coverage_to_reward(0.475) == pytest.approx(0.5)
    assert coverage_to_reward(0.95) == 1.0
    assert coverage_to_reward(1.0) == 1.0  # clipped
    assert not is_success(0.95)  # strictly greater than 0.95
    assert is_success(0.9501)


def test_pusht_metrics_mean_of_per_episode_max() -> None:
    eps = [
        EpisodeResult(seed=0, steps=10, success=False, max_reward=0.5, sum_reward=3.0),
        EpisodeResult(seed=1, steps=4, success=True, max_reward=1.0, sum_reward=2.0),
        EpisodeResult(seed=2, steps=300, success=False, max_reward=0.3, sum_reward=20.0),
        EpisodeResult(seed=3, steps=300, success=False, max_reward=0.2, sum_reward=20.0),
    ]
    m = pusht_metrics(eps)
    assert m.n_episodes == 4
    assert m.success_rate == pytest.approx(0.25)
    assert m.avg_max_overlap == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one"):
        pusht_metrics([])


def test_observation_fits_spec_and_time_advances(robot: PushTSim) -> None:
    obs = robot.reset(seed=3)
    obs.validate(robot.spec)
    assert obs.images["image"].shape == (96, 96, 3) and obs.images["image"].dtype == np.uint8
    assert obs.state.dtype == np.float32 and obs.timestamp == 0.0
    sent = robot.command(np.array([600.0, -5.0]))
    np.testing.assert_array_equal(sent, np.array([512.0, 0.0], dtype=np.float32))  # clipped to Box(0, 512)
    assert robot.observe().timestamp == pytest.approx(0.1)


def test_seeded_reset_is_reproducible(robot: PushTSim) -> None:
    a = robot.reset(seed=7)
    img_a, state_a = a.images["image"].copy(), a.state.copy()
    b = robot.reset(seed=7)
    np.testing.assert_array_equal(b.images["image"], img_a)
    np.testing.assert_array_equal(b.state, state_a)
    c = robot.reset(seed=8)
    assert not np.array_equal(c.images["image"], img_a)


def test_reward_matches_gym_pusht_and_result_tracks_max(robot: PushTSim) -> None:
    env = make_pusht_env()
    reset_pusht(env, seed=11)
    robot.reset(seed=11)
    rewards = []
    for k in range(8):
        act = np.array([200.0 + 10 * k, 250.0], dtype=np.float32)
        _, env_reward, _, _, _ = env.step(act)
        robot.command(act)
        rewards.append(float(env_reward))
    env.close()
    res = robot.episode_result()
    assert res.steps == 8 and res.seed == 11
    assert res.max_reward == pytest.approx(max(rewards), abs=1e-12)
    assert res.sum_reward == pytest.approx(sum(rewards), abs=1e-9)


def test_block_on_goal_is_success_and_ends_episode(robot: PushTSim) -> None:
    robot.reset(state=GOAL_STATE)
    robot.command(np.array([100.0, 100.0]))
    res = robot.episode_result()
    assert robot.episode_done and res.success and res.max_reward == 1.0
    assert res.extra["max_coverage"] > 0.95
    with pytest.raises(RobotStoppedError, match="already ended"):
        robot.command(np.array([100.0, 100.0]))


def test_time_limit_and_safe_stop() -> None:
    r = PushTSim(max_episode_steps=3)
    with r:
        r.reset(seed=0)
        for _ in range(3):
            assert not r.episode_done
            r.command(np.array([256.0, 256.0]))
        assert r.episode_done and r.episode_result().steps == 3
        r.reset(seed=1)
        r.safe_stop("camera image stalled")
        assert r.episode_done and r.stop_reason == "camera image stalled"
        with pytest.raises(RobotStoppedError, match="camera image stalled"):
            r.command(np.array([256.0, 256.0]))
    assert not r.is_connected


def test_bad_commands_are_refused(robot: PushTSim) -> None:
    robot.reset(seed=0)
    with pytest.raises(RobotError, match="NaN"):
        robot.command(np.array([np.nan, 1.0]))
    with pytest.raises(RobotError, match="takes 2 actions"):
        robot.command(np.zeros(3))
    fresh = PushTSim()
    with pytest.raises(RobotError, match="not connected"):
        fresh.observe()


def test_angle_first_reset_reproduces_recorded_poses(shared_datasets) -> None:
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(shared_datasets / "pusht_cchi_v7_replay.zarr"), mode="r")
    ends = root["meta/episode_ends"][:]
    starts = np.concatenate([[0], ends[:-1]])[:30]
    states = root["data/state"][:][starts]  # (30, 5): agent x, y, block x, y, angle
    env = make_pusht_env()
    err_first, err_legacy = [], []
    for s in states:
        _, info = reset_pusht(env, state=s)
        err_first.append(np.abs(info["block_pose"][:2] - s[2:4]).max())
        _, info = reset_pusht(env, state=s, angle_first=False)
        err_legacy.append(np.abs(info["block_pose"][:2] - s[2:4]).max())
    env.close()
    assert max(err_first) < 1e-9
    assert max(err_legacy) > 10.0  # gym-pusht's own order misplaces the block (docs/datasets.md)
