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
        for _ in range(20):
            sent = robot.command(target)
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


def test_widowx_clips_to_joint_limits():
    robot = make_robot("widowx", dry_run=True, hold_s=0.0, max_step=10.0)
    with robot:
        gripper = float(robot.observe().state[6])
        target = np.array([0, -3.0, 0, 0, 0, 0, 100.0], dtype=np.float32)
        sent = robot.command(target)
        assert sent[1] == pytest.approx(robot.spec.action_low[1], abs=1e-6)
        assert sent[6] == pytest.approx(min(74.0, gripper + 5.0), abs=1e-4)  # the gripper's own max_step


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
