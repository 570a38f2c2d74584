"""The WidowX and CAN arm robots (runtime Robot interface) end to end against the emulators (`dry_run`)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from edgeact.firmware_bridge.safety import StopReason
from edgeact.runtime.robots import RobotError, RobotStoppedError, available_robots, make_robot


@pytest.mark.parametrize("name", ["widowx", "can-arm"])
def test_dry_run_robot_observes_commands_and_stops(name):
    assert name in available_robots()
    robot = make_robot(name, dry_run=True, hold_s=0.0)
    spec = robot.spec
    with robot:
        obs = robot.observe()
        obs.validate(spec)
        target = np.asarray(obs.state, dtype=np.float32).copy()
        target[0] += 0.05
        step = np.asarray(spec.action_max_step, dtype=np.float32)  # what the runtime clamps to
        for _ in range(20):
            last = robot.arm.last_command.astype(np.float32)
            sent = robot.command(np.clip(target, last - step, last + step))
        assert sent.dtype == np.float32 and sent.shape == (len(spec.action_names),)
        obs = robot.observe()
        assert obs.state[0] == pytest.approx(target[0], abs=0.01)
        bad = target.copy()
        bad[1] = np.nan
        with pytest.raises(RobotStoppedError, match="NaN"):
            robot.command(bad)
        assert robot.stop_record.reason is StopReason.NAN and robot.stop_record.exit_code != 0
        with pytest.raises(RobotStoppedError):
            robot.command(target)


def test_widowx_spec_carries_the_limits_the_arm_checks():
    """Issue 11, one clamp: the spec holds the joint limits and per-joint max_step (the gripper's own) that
    the runtime clamps to; a command beyond them reaching the robot is a `limit` stop naming the joint (it
    used to be clipped here and again in the bridge)."""
    robot = make_robot("widowx", dry_run=True, hold_s=0.0, max_step=10.0)
    spec = robot.spec
    assert spec.action_max_step == (10.0,) * 6 + (5.0,)
    with robot:
        state = robot.observe().state
        target = state.copy()
        target[1] = -3.0
        with pytest.raises(RobotStoppedError, match=r"joint shoulder: target -3 below its lower limit"):
            robot.command(target)
        assert robot.stop_record.reason is StopReason.LIMIT


def test_camera_stall_stops_the_arm():
    robot = make_robot("widowx", dry_run=True, hold_s=0.0)
    with robot:
        robot.observe()
        for cam in robot._rig.cameras.values():  # the capture thread dies: frames stop coming
            cam.stop()
        cam_cfg = next(iter(robot._rig.cameras.values())).config
        time.sleep(cam_cfg.stall_timeout_s + 0.1)
        with pytest.raises(RobotStoppedError, match="camera"):
            robot.observe()
        assert robot.stop_record.reason is StopReason.CAMERA_STALL


def test_real_robot_needs_a_camera_source_and_a_reachable_port():
    with pytest.raises(RobotError, match="camera"):
        make_robot("widowx", port="/dev/null-port")
    robot = make_robot("widowx", port="/dev/does-not-exist", camera="synthetic")
    with pytest.raises(RobotError, match="/dev/does-not-exist"):
        robot.connect()
