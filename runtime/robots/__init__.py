"""Robots `rt-run --robot NAME` can drive, by name.

Each entry maps a name to a factory given as "module:attribute" and imported only when that robot is made,
so that `rt-run --robot widowx` never imports gym and `pusht-sim` never imports the bus code. Add a robot with
one `register_robot(...)` line below (or from your own code before calling `make_robot`). A factory takes
keyword options (from the runtime config's `robot_options` and CLI flags) and returns a `Robot`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edgeact.runtime.robots.base import (
    CameraSpec,
    EpisodeResult,
    Observation,
    Robot,
    RobotError,
    RobotNotConnectedError,
    RobotSpec,
    RobotStoppedError,
    SimRobot,
    UnknownRobotError,
)

__all__ = [
    "CameraSpec",
    "EpisodeResult",
    "Observation",
    "Robot",
    "RobotError",
    "RobotNotConnectedError",
    "RobotSpec",
    "RobotStoppedError",
    "SimRobot",
    "UnknownRobotError",
    "available_robots",
    "make_robot",
    "register_robot",
]

RobotFactory = Callable[..., Robot]
_REGISTRY: dict[str, str | RobotFactory] = {}


def register_robot(name: str, factory: str | RobotFactory, *, replace: bool = False) -> None:
    """Register `factory` ("package.module:callable" or a callable) under `name`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"robot name must be a non-empty string, got {name!r}")
    if isinstance(factory, str) and ":" not in factory:
        raise ValueError(f"robot factory for {name!r} must look like 'module:attribute', got {factory!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"robot {name!r} is already registered (pass replace=True to override)")
    _REGISTRY[name] = factory


def available_robots() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str) -> RobotFactory:
    try:
        factory = _REGISTRY[name]
    except KeyError as err:
        raise UnknownRobotError(
            f"unknown robot {name!r}; available: {', '.join(available_robots())}"
        ) from err
    if callable(factory):
        return factory
    module_name, _, attr = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise RobotError(f"robot {name!r}: cannot load its factory {factory!r}: {err}") from err


def make_robot(name: str, **options: Any) -> Robot:
    """Build (not connect) the robot registered as `name` with the given options."""
    return _resolve(name)(**options)


register_robot("pusht-sim", "edgeact.runtime.robots.pusht_sim:make_pusht_sim")
register_robot("widowx", "edgeact.runtime.robots.widowx:make_widowx")
register_robot("can-arm", "edgeact.runtime.robots.can_arm:make_can_arm")
register_robot("so100", "edgeact.runtime.robots.so_arm:make_so100")
register_robot("so101", "edgeact.runtime.robots.so_arm:make_so101")
