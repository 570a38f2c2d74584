"""One clamp (issue 11): one step-limit setting, `max_step`, merged per joint with the robot's and handed to
the C++ post-processor; the old name `max_delta` is still read, with a deprecation warning."""

from __future__ import annotations

import math

import pytest
from edgeact.runtime.config import RuntimeConfig, RuntimeConfigError, load_runtime_config
from edgeact.runtime.robots.base import CameraSpec, RobotSpec
from edgeact.runtime.runner import step_limits


def _spec(max_step=None) -> RobotSpec:
    return RobotSpec(
        name="arm",
        fps=50.0,
        cameras=(CameraSpec("top", 8, 8),),
        state_names=("a", "b"),
        action_names=("a", "b"),
        action_low=(-1.0, -1.0),
        action_high=(1.0, 1.0),
        action_max_step=max_step,
    )


def test_the_smaller_step_per_joint_is_clamped_to():
    assert step_limits(_spec(), RuntimeConfig()) is None
    assert step_limits(_spec(), RuntimeConfig(max_step=0.2)) == [0.2, 0.2]
    assert step_limits(_spec((0.1, math.inf)), RuntimeConfig()) == [0.1, 1e30]
    assert step_limits(_spec((0.1, math.inf)), RuntimeConfig(max_step=0.05)) == [0.05, 0.05]
    assert step_limits(_spec((0.1, 0.3)), RuntimeConfig(max_step=0.2)) == [0.1, 0.2]


def test_robot_spec_refuses_a_bad_step():
    with pytest.raises(ValueError, match="action_max_step"):
        _spec((0.1,))
    with pytest.raises(ValueError, match="action_max_step"):
        _spec((0.1, 0.0))


def test_max_delta_in_yaml_is_read_as_max_step_with_a_warning(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("robot: pusht-sim\nmax_delta: 0.1\n")
    with pytest.warns(DeprecationWarning, match="max_delta is deprecated, use max_step"):
        cfg = load_runtime_config(path)
    assert cfg.max_step == 0.1
    path.write_text("robot: pusht-sim\nmax_delta: 0.1\nmax_step: 0.2\n")
    with pytest.warns(DeprecationWarning), pytest.raises(RuntimeConfigError, match="max_step only"):
        load_runtime_config(path)
    with pytest.raises(RuntimeConfigError, match=r"RuntimeConfig\.max_step"):
        RuntimeConfig(max_step=-1.0)
