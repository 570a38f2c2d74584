"""The `--robot NAME` registry and the Robot interface's own checks."""

from __future__ import annotations

import numpy as np
import pytest
from edgeact.runtime import robots
from edgeact.runtime.robots import CameraSpec, Observation, RobotError, RobotSpec, UnknownRobotError


def test_pusht_sim_is_registered_lazily() -> None:
    assert "pusht-sim" in robots.available_robots()


def test_unknown_robot_names_the_choices() -> None:
    with pytest.raises(UnknownRobotError, match=r"unknown robot 'nope'.*pusht-sim"):
        robots.make_robot("nope")


def test_register_rejects_duplicates_and_bad_paths() -> None:
    with pytest.raises(ValueError, match="already registered"):
        robots.register_robot("pusht-sim", "x:y")
    with pytest.raises(ValueError, match="module:attribute"):
        robots.register_robot("test-bad", "no_colon_here")
    robots.register_robot("test-missing", "edgeact.runtime.robots.does_not_exist:make", replace=True)
    with pytest.raises(RobotError, match="cannot load its factory"):
        robots.make_robot("test-missing")


def test_spec_validation_names_field() -> None:
    with pytest.raises(ValueError, match="fps"):
        RobotSpec(name="r", fps=0, cameras=(), state_names=("a",), action_names=("a",))
    with pytest.raises(ValueError, match="action_low"):
        RobotSpec(name="r", fps=10, cameras=(), state_names=(), action_names=("a", "b"), action_low=(0.0,))
    with pytest.raises(ValueError, match="duplicate"):
        RobotSpec(
            name="r",
            fps=10,
            cameras=(CameraSpec("c", 2, 2), CameraSpec("c", 2, 2)),
            state_names=(),
            action_names=("a",),
        )
    with pytest.raises(ValueError, match="height"):
        CameraSpec("c", 0, 4)


def test_observation_validate_names_camera_and_shape() -> None:
    spec = RobotSpec(
        name="r", fps=50, cameras=(CameraSpec("top", 4, 6),), state_names=("j",), action_names=("j",)
    )
    good = Observation(
        images={"top": np.zeros((4, 6, 3), np.uint8)}, state=np.zeros(1, np.float32), timestamp=0
    )
    good.validate(spec)
    bad = Observation(
        images={"top": np.zeros((6, 4, 3), np.uint8)}, state=np.zeros(1, np.float32), timestamp=0
    )
    with pytest.raises(RobotError, match=r"camera 'top'.*\(4, 6, 3\)"):
        bad.validate(spec)
    missing = Observation(images={}, state=np.zeros(1, np.float32), timestamp=0)
    with pytest.raises(RobotError, match="lacks camera 'top'"):
        missing.validate(spec)
    nan = Observation(images=good.images, state=np.array([np.nan], np.float32), timestamp=0)
    with pytest.raises(RobotError, match="NaN"):
        nan.validate(spec)
