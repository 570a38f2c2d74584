"""Feetech arm configuration (SO-100/SO-101): dataclasses with defaults in code, `configs/robots/so10x.yaml`
as overrides (`bus: feetech`), CLI flags over both. Unknown keys and bad values raise `BridgeConfigError`
naming the file and field.

Joint units are LeRobot's (firmware_bridge/calibration.py), from the arm's LeRobot calibration file:
`calibration` (a path) or, when it is not given, where `lerobot-calibrate` writes for `robot_type` and
`robot_id`. `dry_run_calibration` is the calibration the emulator is set up with under `rt-run --dry-run`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from edgeact.firmware_bridge.calibration import NormMode
from edgeact.firmware_bridge.config import CONFIG_DIR, CameraConfig, _build
from edgeact.firmware_bridge.errors import BridgeConfigError
from edgeact.firmware_bridge.feetech import control_table as ct


def _fail(owner: str, name: str, value: Any, why: str) -> None:
    raise BridgeConfigError(f"{owner}.{name} {why}, got {value!r}")


@dataclass(frozen=True)
class FeetechJoint:
    """One servo: LeRobot's motor name, id, model and normalization mode; optional EEPROM protections."""

    name: str
    id: int
    norm_mode: str = NormMode.RANGE_M100_100.value
    model: str = "sts3215"
    max_step: float | None = None  # per-tick change limit in this joint's unit; None = the arm's max_step
    max_torque_limit: int | None = None  # Max Torque Limit (16), 0.1 % of stall torque
    protection_current: int | None = None  # Protection Current (28), 6.5 mA units
    overload_torque: int | None = None  # Overload Torque (36), %

    def __post_init__(self) -> None:
        owner = f"FeetechJoint({self.name})"
        if not 0 <= self.id <= 253:
            _fail(owner, "id", self.id, "must be in 0..253")
        if self.norm_mode not in {m.value for m in NormMode}:
            _fail(owner, "norm_mode", self.norm_mode, f"must be one of {[m.value for m in NormMode]}")
        if self.model not in ct.MODEL_BY_NAME:
            _fail(owner, "model", self.model, f"must be one of {sorted(ct.MODEL_BY_NAME)}")
        if self.max_step is not None and not self.max_step > 0:
            _fail(owner, "max_step", self.max_step, "must be positive or null")

    @property
    def mode(self) -> NormMode:
        return NormMode(self.norm_mode)

    @property
    def resolution(self) -> int:
        return ct.MODEL_BY_NAME[self.model].resolution

    # The limits come from the calibration (feetech.arm.joint_map); a joint alone has none.
    lower = property(lambda self: -math.inf)
    upper = property(lambda self: math.inf)

    @property
    def feature(self) -> str:
        """LeRobot's feature name for this joint (`<motor>.pos`)."""
        return f"{self.name}.pos"


@dataclass(frozen=True)
class FeetechArmConfig:
    """An STS3215 arm on one serial line (SO-101 follower defaults: configs/robots/so101.yaml)."""

    name: str = "so101"
    robot_type: str = "so101_follower"  # LeRobot's robot type (the calibration folder)
    robot_id: str = "follower"  # LeRobot's --robot.id (the calibration file name)
    calibration: str | None = None  # a lerobot-calibrate JSON; None = LeRobot's default path
    dry_run_calibration: Mapping[str, Any] = field(default_factory=dict)
    port: str = "/dev/ttyACM0"
    baudrate: int = 1_000_000
    fps: float = 30.0
    joints: tuple[FeetechJoint, ...] = ()
    cameras: tuple[CameraConfig, ...] = ()
    timeout_s: float = 0.02  # per response
    retries: int = 2
    # LeRobot's configure(): Return Delay 0, Acceleration and Maximum Acceleration 254, P 16, I 0, D 32
    acceleration: int = 254  # Acceleration (41), 100 steps/s^2 units, SRAM
    maximum_acceleration: int = 254  # Maximum Acceleration (85)
    goal_speed: int = 0  # Goal Speed (46), steps/s, 0 = the servo's maximum
    p_coefficient: int = 16
    i_coefficient: int = 0
    d_coefficient: int = 32
    # Unloading Condition (19): the status bits on which the servo turns its own torque off. The factory
    # value 0x2C (overheat, overcurrent, overload) is the only guard a servo has with a dead host.
    unloading_condition: int = ct.ST_OVERHEAT | ct.ST_OVERCURRENT | ct.ST_OVERLOAD
    max_step: float | None = None  # largest change per tick of a joint (its units), None = off
    hold_s: float = 0.2
    torque_off_on_stop: bool = True

    def __post_init__(self) -> None:
        owner = f"FeetechArmConfig({self.name})"
        if not self.joints:
            _fail(owner, "joints", self.joints, "must list at least one joint")
        ids = [j.id for j in self.joints]
        if len(set(ids)) != len(ids):
            _fail(owner, "joints", ids, "has duplicate servo ids")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            _fail(owner, "fps", self.fps, "must be a positive number")
        if self.timeout_s <= 0:
            _fail(owner, "timeout_s", self.timeout_s, "must be positive")
        if not 0 <= self.retries <= 10:
            _fail(owner, "retries", self.retries, "must be in 0..10")
        for name in (
            "acceleration",
            "maximum_acceleration",
            "p_coefficient",
            "i_coefficient",
            "d_coefficient",
        ):
            if not 0 <= getattr(self, name) <= 254:
                _fail(owner, name, getattr(self, name), "must be in 0..254")
        if not 0 <= self.goal_speed <= 32767:
            _fail(owner, "goal_speed", self.goal_speed, "must be in 0..32767")
        if self.max_step is not None and self.max_step <= 0:
            _fail(owner, "max_step", self.max_step, "must be positive or null")
        if self.hold_s < 0:
            _fail(owner, "hold_s", self.hold_s, "must be >= 0")
        object.__setattr__(self, "dry_run_calibration", dict(self.dry_run_calibration))

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(j.id for j in self.joints)


def load_feetech_config(path: str | Path, **overrides: Any) -> FeetechArmConfig:
    """Read `configs/robots/<robot>.yaml` (or any path) with `bus: feetech`; keyword overrides win."""
    path = Path(path)
    if not path.is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
        path = CONFIG_DIR / f"{path}.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise BridgeConfigError(f"cannot read robot config {path}: {err}") from err
    if not isinstance(raw, dict) or raw.get("bus") != "feetech":
        raise BridgeConfigError(f"{path}: field 'bus' must be 'feetech', got {raw.get('bus')!r}")
    raw = {k: v for k, v in raw.items() if k != "bus"}
    try:
        raw["joints"] = tuple(
            _build(FeetechJoint, dict(j), f"{path} joints[{i}]") for i, j in enumerate(raw.get("joints", []))
        )
        raw["cameras"] = tuple(
            _build(CameraConfig, dict(c), f"{path} cameras[{i}]")
            for i, c in enumerate(raw.get("cameras", []))
        )
        config = _build(FeetechArmConfig, raw, str(path))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(config, **overrides) if overrides else config
    except (BridgeConfigError, ValueError, TypeError) as err:
        raise BridgeConfigError(f"{path}: {err}") from err
