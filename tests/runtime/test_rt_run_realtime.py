"""The real-time path of rt-run (`runner.run_realtime`) on a simulated arm with a synthetic camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeact.runtime import core
from edgeact.runtime.cameras import CameraConfig, CameraRig
from edgeact.runtime.config import RuntimeConfig
from edgeact.runtime.robots.base import CameraSpec, Observation, Robot, RobotSpec
from edgeact.runtime.runner import run_realtime
from tiny_policy import build_tiny_policy

TARGET = (1.0, -1.0)


class SimArm(Robot):
    """A two-joint arm that reaches each commanded position at once; its wrist camera is synthetic."""

    def __init__(self, stall_after_frames: int | None = None, frame_hw: tuple[int, int] = (32, 32)) -> None:
        self._spec = RobotSpec(
            name="sim-arm",
            fps=50.0,
            cameras=(CameraSpec("wrist", 32, 32),),
            state_names=("j0", "j1"),
            action_names=("j0", "j1"),
            action_low=(-2.0, -2.0),
            action_high=(2.0, 2.0),
        )
        h, w = frame_hw
        cam = CameraConfig("wrist", "synthetic", w, h, fps=100, stall_after_frames=stall_after_frames)
        self.rig = CameraRig([cam])
        self.state = np.zeros(2, np.float32)
        self.commands: list[np.ndarray] = []
        self.stop_reason: str | None = None
        self._connected = False

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self.rig.start()
        self._connected = True

    def disconnect(self) -> None:
        self.rig.stop()
        self._connected = False

    def observe(self) -> Observation:
        import time

        images, stamps = self.rig.read()
        return Observation(images, self.state.copy(), time.monotonic(), stamps)

    def command(self, action: np.ndarray) -> np.ndarray:
        act = self.clip_action(action)
        self.commands.append(act)
        self.state = act
        return act

    def safe_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_policy(
        tmp_path_factory.mktemp("arm"),
        cameras=(("wrist", 32, 32),),
        state_names=("j0", "j1"),
        action_names=("j0", "j1"),
        target=TARGET,
        chunk_size=10,
        fps=50,
    )


def test_loop_drives_the_arm_toward_the_policy_target(model: Path) -> None:
    policy = core.Policy.load(model)
    with SimArm() as arm:
        result = run_realtime(policy, arm, RuntimeConfig(robot="sim-arm", duration_s=0.6))
    assert result.stop_reasons == [None] and arm.stop_reason is None
    assert result.ticks >= 15 and len(arm.commands) >= 10
    assert result.first_action_at is not None
    # every chunk walks from the present state to the target, so the arm converges on it
    np.testing.assert_allclose(arm.state, TARGET, atol=0.05)
    assert len(result.stage_ns["step"]) == result.ticks
    # what the loop was asked for, for the JSON summary; nothing was refused
    assert result.realtime == {
        "rate_hz": float(arm.spec.fps),
        "priority": 0,
        "lock_memory": False,
        "cpu_affinity": [],
        "spin_us": 200.0,
        "refused": [],
    }


def test_stalled_camera_safe_stops_and_commands_end(model: Path) -> None:
    policy = core.Policy.load(model)
    with SimArm(stall_after_frames=10) as arm:
        cfg = RuntimeConfig(robot="sim-arm", duration_s=5.0, stale_timeout_s=0.15)
        result = run_realtime(policy, arm, cfg)
    assert result.stop_reasons[0] is not None and arm.stop_reason == result.stop_reasons[0]
    assert result.statuses.get("SAFE_STOP", 0) >= 1
    assert result.wall_s < 2.0  # stopped by the watchdog, not by duration_s
    # the last command predates the stall by less than the timeout plus one tick: no stale commands after it
    assert len(arm.commands) < result.ticks


def test_wrong_frame_size_safe_stops_before_any_command(model: Path) -> None:
    policy = core.Policy.load(model)
    with SimArm(frame_hw=(24, 32)) as arm:  # the camera delivers 24x32, the robot promised 32x32
        result = run_realtime(policy, arm, RuntimeConfig(robot="sim-arm", duration_s=2.0))
    reason = result.stop_reasons[0]
    assert reason is not None and reason.startswith("bad observation") and "wrist" in reason
    assert arm.stop_reason == reason and arm.commands == []
