"""Robots `rt-run --robot NAME` can drive, by name.

Each entry maps a name to a factory given as "module:attribute" and imported only when that robot is made,
so that `rt-run --robot widowx` never imports gym and `pusht-sim` never imports the bus code. Add a robot with
one `register_robot(...)` line below (or from your own code before calling `make_robot`). A factory takes
keyword options (from the runtime config's `robot_options` and CLI flags) and returns a `Robot`.

A robot can also be a YAML file (`rt-run --robot path/to/my_arm.yaml`): its `bus:` key (dynamixel, canopen,
feetech) picks the factory, which reads the whole arm from the file (ids, joint names, limits, units, cameras,
fps; `edgeact.firmware_bridge.config`). The shipped arms are such files (`configs/robots/*.yaml`), loaded the
same way under their names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
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
    "is_robot_file",
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


# A robot YAML's `bus:` -> the factory that builds any arm on that bus from the file
BUS_FACTORIES = {
    "dynamixel": "edgeact.runtime.robots.widowx:make_widowx",
    "canopen": "edgeact.runtime.robots.can_arm:make_can_arm",
    "feetech": "edgeact.runtime.robots.so_arm:make_so_arm",
}


def is_robot_file(name: str) -> bool:
    """`--robot` names a YAML file rather than a registered robot."""
    return str(name).endswith((".yaml", ".yml"))


def _factory_for_file(path: str) -> RobotFactory:
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RobotError(f"cannot read robot file {file}: {err}") from err
    bus = raw.get("bus") if isinstance(raw, dict) else None
    if bus not in BUS_FACTORIES:
        raise RobotError(
            f"robot file {file}: field 'bus' must be one of {sorted(BUS_FACTORIES)}, got {bus!r}"
        )
    return _load(str(file), BUS_FACTORIES[bus])


def _resolve(name: str) -> RobotFactory:
    try:
        factory = _REGISTRY[name]
    except KeyError as err:
        raise UnknownRobotError(
            f"unknown robot {name!r}; available: {', '.join(available_robots())} or a robot YAML file"
        ) from err
    return _load(name, factory)


def _load(name: str, factory: str | RobotFactory) -> RobotFactory:
    if callable(factory):
        return factory
    module_name, _, attr = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise RobotError(f"robot {name!r}: cannot load its factory {factory!r}: {err}") from err


def make_robot(name: str, **options: Any) -> Robot:
    """Build (not connect) the robot registered as `name`, or described by the YAML file `name`."""
    if is_robot_file(name):
        return _factory_for_file(name)(config=name, **options)
    return _resolve(name)(**options)


register_robot("pusht-sim", "edgeact.runtime.robots.pusht_sim:make_pusht_sim")
register_robot("widowx", "edgeact.runtime.robots.widowx:make_widowx")
register_robot("can-arm", "edgeact.runtime.robots.can_arm:make_can_arm")
register_robot("so100", "edgeact.runtime.robots.so_arm:make_so100")
register_robot("so101", "edgeact.runtime.robots.so_arm:make_so101")
