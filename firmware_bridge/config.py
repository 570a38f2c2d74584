"""Robot bus configurations: dataclasses with defaults in code, YAML files in `configs/robots/` as overrides.

`load_robot_config(path, **overrides)` reads a YAML file (yaml.safe_load) whose `bus:` key is `dynamixel` or
`canopen` and returns a `DynamixelArmConfig` or a `CanArmConfig`. Unknown keys and bad values raise
`BridgeConfigError` naming the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.errors import BridgeConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "robots"


def _fail(owner: str, name: str, value: Any, why: str) -> None:
    raise BridgeConfigError(f"{owner}.{name} {why}, got {value!r}")


def _check_name_map(owner: str, name_map: Any) -> None:
    ok = isinstance(name_map, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in name_map.items()
    )
    if not ok:
        _fail(owner, "name_map", name_map, "must map policy names to this robot's names (strings)")


@dataclass(frozen=True)
class DynamixelJoint:
    """One commanded servo. Units: radians, unless `counts_at_lower`/`counts_at_upper` map a linear unit
    (the gripper opening in mm) onto counts."""

    name: str
    id: int
    lower: float
    upper: float
    shadows: tuple[int, ...] = ()  # servos following this one through Secondary ID (never commanded)
    model: int = ct.MODEL_XM430_W350
    unit: str = "rad"
    sign: int = 1
    zero_counts: int = ct.CENTER_COUNT
    counts_at_lower: int | None = None
    counts_at_upper: int | None = None
    max_step: float | None = None  # per-tick change limit in this joint's unit; None = the arm's max_step

    def __post_init__(self) -> None:
        owner = f"DynamixelJoint({self.name})"
        if not 0 <= self.id <= 252:
            _fail(owner, "id", self.id, "must be in 0..252")
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower < self.upper):
            _fail(owner, "lower/upper", (self.lower, self.upper), "must be finite with lower < upper")
        if self.sign not in (1, -1):
            _fail(owner, "sign", self.sign, "must be 1 or -1")
        if (self.counts_at_lower is None) != (self.counts_at_upper is None):
            _fail(
                owner, "counts_at_lower/upper", (self.counts_at_lower, self.counts_at_upper), "come together"
            )
        object.__setattr__(self, "shadows", tuple(self.shadows))

    @property
    def counts_per_unit(self) -> float:
        if self.counts_at_lower is None:
            return self.sign * ct.COUNTS_PER_RAD
        return (self.counts_at_upper - self.counts_at_lower) / (self.upper - self.lower)

    @property
    def offset_counts(self) -> float:
        """counts = offset_counts + counts_per_unit * value."""
        if self.counts_at_lower is None:
            return float(self.zero_counts)
        return self.counts_at_lower - self.counts_per_unit * self.lower

    def goal_window(self, mode: int) -> tuple[int, int] | None:
        """The servo counts this joint may be commanded to in operating `mode` (dynamixel.control_table)."""
        ends = sorted(self.offset_counts + self.counts_per_unit * v for v in (self.lower, self.upper))
        return ct.goal_window(ends[0], ends[1], mode)


@dataclass(frozen=True)
class CameraConfig:
    name: str
    height: int = 480
    width: int = 640


@dataclass(frozen=True)
class DynamixelArmConfig:
    """A Dynamixel arm on one serial line (WidowX 250 6DOF defaults: configs/robots/widowx.yaml)."""

    name: str = "widowx"
    port: str = "/dev/ttyUSB0"
    baudrate: int = 1_000_000
    fps: float = 50.0
    joints: tuple[DynamixelJoint, ...] = ()
    cameras: tuple[CameraConfig, ...] = ()
    timeout_s: float = 0.02  # per status packet
    retries: int = 2  # bounded retries for timeouts and CRC errors
    operating_mode: int = ct.MODE_POSITION
    profile_velocity: int = 0  # 0.229 rpm units; 0 = no profile limit
    profile_acceleration: int = 0  # 214.577 rev/min^2 units; 0 = no profile limit
    bus_watchdog_s: float = 0.1  # servos stop if the host is silent this long (units of 20 ms)
    max_step: float | None = None  # largest change per tick of a commanded joint (robot units), None = off
    hold_s: float = 0.2  # safe stop: hold position this long before torque off
    torque_off_on_stop: bool = True
    # policy name -> this arm's name (joint or camera), for policies trained on other names; used by rt-run
    # (docs/rt-run.md, "Names that differ"), not by the bridge
    name_map: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = "DynamixelArmConfig"
        _check_name_map(owner, self.name_map)
        object.__setattr__(self, "name_map", dict(self.name_map))
        if self.baudrate <= 0:
            _fail(owner, "baudrate", self.baudrate, "must be positive")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            _fail(owner, "fps", self.fps, "must be a positive number")
        if not self.joints:
            _fail(owner, "joints", self.joints, "must list at least one joint")
        ids = [j.id for j in self.joints] + [s for j in self.joints for s in j.shadows]
        if len(set(ids)) != len(ids):
            _fail(owner, "joints", ids, "has duplicate servo ids")
        if self.timeout_s <= 0:
            _fail(owner, "timeout_s", self.timeout_s, "must be positive")
        if not 0 <= self.retries <= 10:
            _fail(owner, "retries", self.retries, "must be in 0..10")
        if self.bus_watchdog_s and not 0.02 <= self.bus_watchdog_s <= 2.54:
            _fail(owner, "bus_watchdog_s", self.bus_watchdog_s, "must be 0 (off) or in 0.02..2.54 s")
        if self.bus_watchdog_s and self.bus_watchdog_s < 2.0 / self.fps:
            _fail(
                owner,
                "bus_watchdog_s",
                self.bus_watchdog_s,
                f"must cover at least two ticks at {self.fps} Hz",
            )
        if self.bus_watchdog_s and self.bus_watchdog_s <= 2 * self.timeout_s:
            # a retry follows a timeout plus an equal drain time: it must not trip the servos' watchdog
            _fail(
                owner, "bus_watchdog_s", self.bus_watchdog_s, f"must exceed 2 x timeout_s ({self.timeout_s})"
            )
        if self.max_step is not None and self.max_step <= 0:
            _fail(owner, "max_step", self.max_step, "must be positive or null")
        if self.hold_s < 0:
            _fail(owner, "hold_s", self.hold_s, "must be >= 0")
        for joint in self.joints:  # Goal Position must fit the servo's window (e-manual "Goal Position(116)")
            if self.operating_mode in ct.POSITION_MODES and joint.goal_window(self.operating_mode) is None:
                ends = [joint.offset_counts + joint.counts_per_unit * v for v in (joint.lower, joint.upper)]
                _fail(
                    f"{owner}({self.name}).joints[{joint.name}]",
                    "lower/upper",
                    (joint.lower, joint.upper),
                    f"are servo {joint.id} counts {ends[0]:.1f}..{ends[1]:.1f}, outside the Goal Position "
                    "range {}..{} of operating mode {} (one count of slack)".format(
                        *ct.goal_range(self.operating_mode), self.operating_mode
                    ),
                )

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(j.id for j in self.joints)

    @property
    def all_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.ids + tuple(s for j in self.joints for s in j.shadows)))


@dataclass(frozen=True)
class CanJoint:
    """One CiA 402 drive: position in radians at the joint, `counts_per_rad` includes the gear ratio."""

    name: str
    node_id: int
    lower: float
    upper: float
    counts_per_rad: float = 2**17 / (2 * math.pi)
    zero_counts: int = 0
    # position counts per second in one unit of the drive's velocity objects (0x607F): 1.0 when they are in
    # increments/s (no factor group); for a drive whose velocities are in rpm of a 17-bit encoder, 131072/60
    counts_per_s_per_velocity_unit: float = 1.0

    def __post_init__(self) -> None:
        owner = f"CanJoint({self.name})"
        v = self.counts_per_s_per_velocity_unit
        if not (math.isfinite(v) and v > 0):
            _fail(owner, "counts_per_s_per_velocity_unit", v, "must be a positive number")
        if not 1 <= self.node_id <= 127:
            _fail(owner, "node_id", self.node_id, "must be in 1..127")
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower < self.upper):
            _fail(owner, "lower/upper", (self.lower, self.upper), "must be finite with lower < upper")
        if not (math.isfinite(self.counts_per_rad) and self.counts_per_rad != 0):
            _fail(owner, "counts_per_rad", self.counts_per_rad, "must be finite and non-zero")


@dataclass(frozen=True)
class CanArmConfig:
    """An arm of CiA 402 drives in cyclic synchronous position mode on one CAN bus."""

    name: str = "can_arm"
    interface: str = "socketcan"
    channel: str = "can0"
    bitrate: int = 1_000_000  # not passed to the virtual and udp_multicast interfaces
    # any other python-can bus argument, passed to can.Bus as is: fd, data_bitrate, port (udp_multicast),
    # receive_own_messages, f_clock_mhz (pcan), tty_baudrate (slcan), ...
    can_options: Mapping[str, Any] = field(default_factory=dict)
    fps: float = 200.0
    joints: tuple[CanJoint, ...] = ()
    cameras: tuple[CameraConfig, ...] = ()
    heartbeat_producer_ms: int = 20  # written to each drive's 0x1017
    heartbeat_timeout_s: float = 0.1  # consumer: no heartbeat for this long = heartbeat loss
    # The host's own heartbeat (CiA 301 producer, COB-ID 0x700 + host_node_id) and what each drive does when
    # it stops: 0x1016 consumer time, then the 0x6007 reaction (0 none, 1 fault, 2 disable voltage,
    # 3 quick stop)
    host_node_id: int = 127
    host_heartbeat_ms: int = 20
    host_heartbeat_timeout_ms: int = 100
    abort_connection_option: int = 3
    sdo_timeout_s: float = 0.5
    # Each tick waits at most feedback_timeout_s for the TPDOs of its SYNC (a late one is not a fault: the
    # tick goes on with the last position); a drive is a comm loss after max_missed_feedback late ticks in a
    # row. Measured TPDO latency on a loaded 2-core host (docs/firmware_bridge.md): p50 0.6 ms, p99 4.5 ms,
    # max 29 ms; with another Python thread holding the GIL p99 23 ms, max 71 ms. 20 ticks = 100 ms at 200 Hz.
    feedback_timeout_s: float = 0.003
    max_missed_feedback: int = 20
    enable_timeout_s: float = 1.0  # CiA 402 state machine transitions
    max_step: float | None = None
    hold_s: float = 0.2
    torque_off_on_stop: bool = True  # disable voltage (controlword 0x00) after holding
    name_map: Mapping[str, str] = field(default_factory=dict)  # as DynamixelArmConfig.name_map

    def __post_init__(self) -> None:
        owner = "CanArmConfig"
        _check_name_map(owner, self.name_map)
        object.__setattr__(self, "name_map", dict(self.name_map))
        if not self.joints:
            _fail(owner, "joints", self.joints, "must list at least one drive")
        ids = [j.node_id for j in self.joints]
        if len(set(ids)) != len(ids):
            _fail(owner, "joints", ids, "has duplicate node ids")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            _fail(owner, "fps", self.fps, "must be a positive number")
        if not 1 <= self.heartbeat_producer_ms <= 65535:
            _fail(owner, "heartbeat_producer_ms", self.heartbeat_producer_ms, "must be in 1..65535")
        if self.heartbeat_timeout_s <= self.heartbeat_producer_ms / 1000:
            _fail(owner, "heartbeat_timeout_s", self.heartbeat_timeout_s, "must exceed the producer period")
        for name in ("sdo_timeout_s", "feedback_timeout_s", "enable_timeout_s"):
            if getattr(self, name) <= 0:
                _fail(owner, name, getattr(self, name), "must be positive")
        if self.max_missed_feedback < 1:
            _fail(owner, "max_missed_feedback", self.max_missed_feedback, "must be >= 1")
        if self.max_step is not None and self.max_step <= 0:
            _fail(owner, "max_step", self.max_step, "must be positive or null")
        self._check_host_heartbeat(owner, ids)
        if not isinstance(self.can_options, Mapping) or not all(isinstance(k, str) for k in self.can_options):
            _fail(owner, "can_options", self.can_options, "must map python-can argument names to values")
        for key in ("interface", "channel", "bitrate"):
            if key in self.can_options:
                why = f"must not hold {key!r} (use the field {key})"
                _fail(owner, "can_options", dict(self.can_options), why)
        object.__setattr__(self, "can_options", dict(self.can_options))

    def _check_host_heartbeat(self, owner: str, ids: list[int]) -> None:
        if not 1 <= self.host_node_id <= 127 or self.host_node_id in ids:
            _fail(owner, "host_node_id", self.host_node_id, f"must be in 1..127 and not a drive's ({ids})")
        if not 1 <= self.host_heartbeat_ms <= 65535:
            _fail(owner, "host_heartbeat_ms", self.host_heartbeat_ms, "must be in 1..65535")
        if not self.host_heartbeat_ms < self.host_heartbeat_timeout_ms <= 65535:
            _fail(
                owner,
                "host_heartbeat_timeout_ms",
                self.host_heartbeat_timeout_ms,
                f"must exceed host_heartbeat_ms ({self.host_heartbeat_ms}) and be at most 65535",
            )
        if self.abort_connection_option not in (0, 1, 2, 3):
            _fail(
                owner,
                "abort_connection_option",
                self.abort_connection_option,
                "must be 0 (no action), 1 (fault), 2 (disable voltage) or 3 (quick stop)",
            )

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(j.node_id for j in self.joints)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BridgeConfigError(
            f"{where}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(known)}"
        )
    try:
        return cls(**data)
    except TypeError as err:
        raise BridgeConfigError(f"{where}: {err}") from err


def load_robot_config(path: str | Path, **overrides: Any) -> DynamixelArmConfig | CanArmConfig:
    """Read `configs/robots/<robot>.yaml` (or any path) and apply keyword overrides (CLI flags)."""
    path = Path(path)
    if not path.is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
        path = CONFIG_DIR / f"{path}.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise BridgeConfigError(f"cannot read robot config {path}: {err}") from err
    if not isinstance(raw, dict):
        raise BridgeConfigError(f"{path}: expected a mapping at the top level")
    raw = dict(raw)
    bus = raw.pop("bus", None)
    classes = {"dynamixel": (DynamixelArmConfig, DynamixelJoint), "canopen": (CanArmConfig, CanJoint)}
    if bus not in classes:
        raise BridgeConfigError(f"{path}: field 'bus' must be one of {sorted(classes)}, got {bus!r}")
    cls, joint_cls = classes[bus]
    try:
        raw["joints"] = tuple(
            _build(joint_cls, dict(j), f"{path} joints[{i}]") for i, j in enumerate(raw.get("joints", []))
        )
        raw["cameras"] = tuple(
            _build(CameraConfig, dict(c), f"{path} cameras[{i}]")
            for i, c in enumerate(raw.get("cameras", []))
        )
        config = _build(cls, raw, str(path))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(config, **overrides) if overrides else config
    except (BridgeConfigError, ValueError, TypeError) as err:
        raise BridgeConfigError(f"{path}: {err}") from err


__all__ = [
    "CONFIG_DIR",
    "CameraConfig",
    "CanArmConfig",
    "CanJoint",
    "DynamixelArmConfig",
    "DynamixelJoint",
    "load_robot_config",
]
