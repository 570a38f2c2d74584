"""A Dynamixel arm (the WidowX 250 6DOF by default): bring-up, one sync write + one sync read per tick, safe
stop.

Bring-up (`connect`): ping every servo (shadows included) and check its model, torque off, EEPROM items
(Return Delay Time, Operating Mode, Min/Max Position Limit from the joint limits) written only where they
differ, clear the bus watchdog, map the per-tick feedback into Indirect Data (so a single Sync Read returns
watchdog, hardware error, current or load, and position), profile, goal = present, torque on. The bus
watchdog is armed in the first tick (a host that connects and then loads a model for a while must not trip
it). Any exit after torque-on (an error, Ctrl-C) ends in `safe_stop`.

Each tick (`step`): check the targets against the joint limits (as servo counts: the Goal Position window)
and `max_step` (a violation is a `limit` safe stop; the runtime's post-processor is the one clamp), one Sync
Write of Goal Position, one Sync Read of the indirect block. Faults (timeouts/CRC after
retries, hardware alert, bus watchdog expiry, NaN, a host stall longer than the watchdog) trigger
`safe_stop`: clear the bus watchdog (Goal values are read-only while it is expired), hold the present
position for `hold_s`, torque off (configurable), watchdog left at 0; after that the arm sends nothing
more. docs/firmware_bridge.md, "Safe stop", has the sequence."""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass

import numpy as np
from edgeact.firmware_bridge.config import DynamixelArmConfig
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel.bus import DynamixelBus
from edgeact.firmware_bridge.errors import (
    BridgeError,
    BusStoppedError,
    BusWatchdogExpiredError,
    CommTimeoutError,
    CRCMismatchError,
    HardwareAlertError,
    HardwareErrorStatusError,
    InvalidCommandError,
    PacketError,
    TransportError,
)
from edgeact.firmware_bridge.safety import StopReason, StopRecord, limit_violation, split_reason
from edgeact.firmware_bridge.transport import SerialTransport

log = logging.getLogger(__name__)

# Per-tick feedback block in Indirect Data 1..8 (address 224): bus watchdog (98, int8), hardware error status
# (70, uint8), present current or present load by model (126, int16), present position (132, int32).
FEEDBACK = struct.Struct("<bBhi")
FEEDBACK_SOURCES = (98, 70, 126, 127, 132, 133, 134, 135)
GOAL = ct.GOAL_POSITION


def goal_windows(config: DynamixelArmConfig) -> list[tuple[int, int] | None]:
    """Each joint's Goal Position window in counts (None where the operating mode takes no position)."""
    mode = config.operating_mode
    return [j.goal_window(mode) if mode in ct.POSITION_MODES else None for j in config.joints]


def joint_limits(config: DynamixelArmConfig) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) float64 (J,) in robot units: the configured limits as the servos hold them, rounded
    inwards to whole counts (a +pi limit becomes count 4095, pi - 2 pi/4096)."""
    lower = np.array([j.lower for j in config.joints], dtype=np.float64)
    upper = np.array([j.upper for j in config.joints], dtype=np.float64)
    for k, (joint, window) in enumerate(zip(config.joints, goal_windows(config), strict=True)):
        if window is not None:
            a, b = sorted((c - joint.offset_counts) / joint.counts_per_unit for c in window)
            lower[k], upper[k] = max(lower[k], a), min(upper[k], b)
    return lower, upper


@dataclass
class ArmState:
    """Last tick's feedback, float64 (J,) each: positions in robot units; currents in mA where the servo
    reports Present Current (XM430) and loads in % of its maximum output where it reports Present Load
    (XL430), NaN in the other array (address 126 holds one or the other, by model)."""

    positions: np.ndarray
    currents: np.ndarray
    timestamp: float
    tick: int
    loads: np.ndarray | None = None


class DynamixelArm:
    """One Dynamixel arm. Call `connect`, then `step(targets)` once per tick from the control thread."""

    def __init__(self, config: DynamixelArmConfig, *, poll_timeout_s: float = 0.002) -> None:
        self.config = config
        self.bus = DynamixelBus(
            SerialTransport(config.port, config.baudrate, poll_timeout_s=poll_timeout_s),
            timeout_s=config.timeout_s,
            retries=config.retries,
        )
        j = config.joints
        self._cpu = np.array([x.counts_per_unit for x in j])
        self._off = np.array([x.offset_counts for x in j])
        # Goal Position windows (counts) per joint; the config refused joints without one
        windows = goal_windows(config)
        self.windows = {x.id: w for x, w in zip(j, windows, strict=True) if w is not None}
        self._count_lo = np.array([-np.inf if w is None else w[0] for w in windows])
        self._count_hi = np.array([np.inf if w is None else w[1] for w in windows])
        self._lower, self._upper = joint_limits(config)
        self._yaml_lower = np.array([x.lower for x in j])  # what `check_command` holds commands to
        self._yaml_upper = np.array([x.upper for x in j])
        self._effort_scale = np.ones(len(j))
        self._is_load = np.zeros(len(j), dtype=bool)
        arm_step = np.inf if config.max_step is None else config.max_step
        self._max_step = np.array([arm_step if x.max_step is None else x.max_step for x in j])
        self.state: ArmState | None = None
        self.last_command: np.ndarray | None = None
        self.stop_record: StopRecord | None = None
        self.tick = 0
        self._present_counts: dict[int, int] = {}
        self._connected = False
        self._watchdog_armed = False

    # --- units -------------------------------------------------------------------------------------
    def to_counts(self, values: np.ndarray) -> np.ndarray:
        """Servo counts, inside each joint's Goal Position window (a goal outside it is refused)."""
        counts = np.clip(np.rint(self._off + self._cpu * values), self._count_lo, self._count_hi)
        return counts.astype(np.int64)

    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) float64 (J,): the joint limits after mapping onto whole servo counts."""
        return self._lower.copy(), self._upper.copy()

    def from_counts(self, counts: np.ndarray) -> np.ndarray:
        return (np.asarray(counts, dtype=np.float64) - self._off) / self._cpu

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def stopped(self) -> bool:
        return self.stop_record is not None

    # --- bring-up ----------------------------------------------------------------------------------
    def connect(self) -> ArmState:
        cfg, bus = self.config, self.bus
        bus.open()
        try:
            self._check_models()
            bus.set_torque(cfg.all_ids, False)
            self._configure_eeprom()
            bus.set_bus_watchdog(cfg.ids, 0)  # also clears a -1 left by an earlier expiry
            indirect = b"".join(a.to_bytes(2, "little") for a in FEEDBACK_SOURCES)
            for motor_id in cfg.ids:
                bus.write(motor_id, ct.INDIRECT_ADDRESS_1.address, indirect)
            bus.set_profile(cfg.ids, cfg.profile_velocity, cfg.profile_acceleration)
            state = self._read_feedback()
            bus.sync_write(GOAL.address, GOAL.size, self._goal_bytes(self._present_counts))
            self._connected = True  # from here on any exit goes through safe_stop (torque off)
            bus.set_torque(cfg.all_ids, True)
        except BaseException as err:  # Ctrl-C included: never leave servos torqued by a half bring-up
            if self._connected:
                self.safe_stop(_reason_for(err), f"bring-up interrupted: {type(err).__name__}: {err}")
                self._connected = False
            bus.close()
            raise
        self.state = state
        self.last_command = state.positions.copy()
        log.info(
            "%s: %d servos on %s torqued on in mode %d",
            cfg.name,
            len(cfg.all_ids),
            cfg.port,
            cfg.operating_mode,
        )
        return state

    def _check_models(self) -> None:
        """Ping every servo: its model must be the configured one and known (MODELS), its Hardware Error
        Status clear. The model decides what address 126 reports."""
        for k, joint in enumerate(self.config.joints):
            for motor_id in (joint.id, *joint.shadows):
                model, _fw = self.bus.ping(motor_id)
                where = f"servo {motor_id} ({joint.name}) on {self.config.port}"
                if model != joint.model:
                    raise PacketError(f"{where} is model {model}, config says {joint.model}")
                if model not in ct.MODELS:
                    raise PacketError(f"{where} is model {model}; known: {sorted(ct.MODELS)}")
                hw = self.bus.read_register(motor_id, ct.HARDWARE_ERROR_STATUS, allow_alert=True)
                if hw:
                    raise HardwareErrorStatusError(
                        f"{where} has a latched hardware error: {ct.hardware_error_text(hw)}; "
                        "reboot it before connecting",
                        motor_id=motor_id,
                        status={motor_id: hw},
                    )
            info = ct.MODELS[joint.model]
            self._effort_scale[k] = info.effort_scale
            self._is_load[k] = info.effort == "load"

    def _configure_eeprom(self) -> None:
        """EEPROM items, each written only where the servo holds another value (e-manual: EEPROM has a
        limited number of writes and needs torque off). Min/Max Position Limit (48, 52) get the joint's
        Goal Position window, so the servo enforces the same envelope as the host."""
        cfg, bus = self.config, self.bus
        for joint in cfg.joints:
            window = self.windows.get(joint.id) if cfg.operating_mode == ct.MODE_POSITION else None
            for motor_id in (joint.id, *joint.shadows):
                bus.ensure_register(motor_id, ct.RETURN_DELAY_TIME, 0)  # factory 500 us
                bus.ensure_register(motor_id, ct.OPERATING_MODE, cfg.operating_mode)
                if window is not None:
                    limits = bus.read(motor_id, ct.MAX_POSITION_LIMIT.address, 8)
                    want = ct.encode_value(ct.MAX_POSITION_LIMIT, window[1]) + ct.encode_value(
                        ct.MIN_POSITION_LIMIT, window[0]
                    )
                    if limits != want:
                        bus.write(motor_id, ct.MAX_POSITION_LIMIT.address, want)
                        log.info(
                            "%s: servo %d (%s) position limits %d..%d counts",
                            cfg.name,
                            motor_id,
                            joint.name,
                            *window,
                        )

    def _goal_bytes(self, counts: dict[int, int]) -> dict[int, bytes]:
        return {i: ct.encode_value(GOAL, c) for i, c in counts.items()}

    def _read_feedback(self) -> ArmState:
        ids = self.config.ids
        raw = self.bus.sync_read(ct.INDIRECT_DATA_1.address, FEEDBACK.size, ids, allow_alert=True)
        fields = [FEEDBACK.unpack(raw[i]) for i in ids]
        hw = {i: f[1] for i, f in zip(ids, fields, strict=True) if f[1] or i in self.bus.alerts}
        if hw:
            raise HardwareErrorStatusError(
                f"{self.config.name} on {self.config.port}: hardware error on "
                + "; ".join(
                    f"servo {i} ({self._name(i)}): {ct.hardware_error_text(b)}" for i, b in hw.items()
                ),
                motor_id=next(iter(hw)),
                status=hw,
            )
        expired = [i for i, f in zip(ids, fields, strict=True) if f[0] == -1]
        if expired:
            raise BusWatchdogExpiredError(
                f"bus watchdog expired on servo(s) {expired} of {self.config.port}", motor_id=expired[0]
            )
        counts = np.array([f[3] for f in fields])
        self._present_counts = dict(zip(ids, counts.tolist(), strict=True))
        effort = np.array([f[2] for f in fields], dtype=np.float64) * self._effort_scale
        return ArmState(
            self.from_counts(counts),
            np.where(self._is_load, np.nan, effort),
            time.monotonic(),
            self.tick,
            np.where(self._is_load, effort, np.nan),
        )

    def _name(self, motor_id: int) -> str:
        return next(j.name for j in self.config.joints if j.id == motor_id)

    # --- the tick ----------------------------------------------------------------------------------
    @property
    def step_limits(self) -> np.ndarray:
        """float64 (J,): the largest change of each joint per tick (`max_step`, the joint's own first; inf:
        none). The runtime clamps to it and to `limits`; `step` only checks."""
        return self._max_step.copy()

    def check_command(self, targets: np.ndarray, ticks: int = 1) -> str | None:
        """What is wrong with `targets` (joint, value, limit), or None: outside the joint limits, or further
        from the last command than `ticks` x max_step. Not clamped: the runtime's post-processor is the one
        clamp (docs/firmware_bridge.md, "One clamp"); a violation here is a fault."""
        names = [j.name for j in self.config.joints]
        return limit_violation(
            names, targets, self._yaml_lower, self._yaml_upper, self.last_command, self._max_step, ticks
        )

    def step(self, targets: np.ndarray, ticks: int = 1) -> ArmState:
        """One tick: Sync Write goal positions, Sync Read feedback. Raises after a safe stop on any fault,
        a command outside the limits included. `ticks`: control ticks since the last command (the step
        limit allows that many steps)."""
        if self.stop_record is not None:
            raise BusStoppedError(
                f"{self.config.name} on {self.config.port} is stopped ({self.stop_record.reason.value})"
            )
        if not self._connected:
            raise TransportError(f"{self.config.name} on {self.config.port} is not connected")
        self.tick += 1
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if targets.shape != self._cpu.shape or not np.all(np.isfinite(targets)):
            err = InvalidCommandError(
                f"{self.config.name}: bad command {targets.tolist()} (need {self._cpu.size} finite)"
            )
            self.safe_stop(StopReason.NAN, str(err))
            raise err
        now = time.monotonic()
        silent = now - self.bus.transport.last_write
        if self._watchdog_armed and silent > self.config.bus_watchdog_s:
            err = BusWatchdogExpiredError(
                f"host silent for {silent:.3f} s > bus watchdog {self.config.bus_watchdog_s} s "
                f"on {self.config.port}: the servos have stopped"
            )
            self.safe_stop(StopReason.BUS_WATCHDOG, str(err))
            raise err
        problem = self.check_command(targets, ticks)
        if problem is not None:
            err = InvalidCommandError(f"{self.config.name} on {self.config.port}: {problem}")
            self.safe_stop(StopReason.LIMIT, str(err))
            raise err
        # Within the YAML limits: onto the servos' whole-count envelope (at most one count inside a limit,
        # e.g. +pi is count 4095), a quantisation, not a clamp (the runtime clamps to these same values).
        command = np.clip(targets, self._lower, self._upper)
        counts = self.to_counts(command)
        try:
            if not self._watchdog_armed and self.config.bus_watchdog_s:
                units = round(self.config.bus_watchdog_s / ct.BUS_WATCHDOG_UNIT_S)
                self.bus.sync_write_register(ct.BUS_WATCHDOG, dict.fromkeys(self.config.ids, units))
                self._watchdog_armed = True
            self.bus.sync_write(
                GOAL.address,
                GOAL.size,
                self._goal_bytes(dict(zip(self.config.ids, counts.tolist(), strict=True))),
            )
            state = self._read_feedback()
        except BaseException as err:  # a bus fault, or Ctrl-C in a program without its own handler
            self.safe_stop(_reason_for(err), str(err))
            raise
        self.last_command = command
        self.state = state
        return state

    # --- stopping ----------------------------------------------------------------------------------
    def safe_stop(self, reason: StopReason | str, detail: str = "") -> StopRecord:
        """Clear the bus watchdog, hold the present position for `hold_s`, torque off (if configured), and
        send nothing after that. Idempotent. Each step is one Sync Write (or Sync Read) so that a servo that
        no longer answers cannot hold the others up.

        Why the watchdog is cleared first: while it is expired (98 = -1) every Goal value is read-only and a
        Sync Write of the hold goal would be dropped without a word (e-manual "Bus Watchdog(98)"); and a
        watchdog shorter than `hold_s` would expire during the hold. It stays 0 afterwards: with torque off
        it has nothing to guard, and with torque on the servos hold the present position anyway."""
        if self.stop_record is not None:
            return self.stop_record
        why, text = split_reason(reason)
        detail = detail or text  # the log line and the record always carry what happened
        record = StopRecord(why, detail or str(reason), self.tick, time.monotonic())
        self.stop_record = record
        (log.error if why.is_fault else log.info)(
            "%s: safe stop (%s) %s", self.config.name, why.value, detail
        )
        if not self._connected:
            return record
        cfg, bus = self.config, self.bus
        try:
            if cfg.bus_watchdog_s:
                bus.sync_write_register(ct.BUS_WATCHDOG, dict.fromkeys(cfg.ids, 0))
                self._watchdog_armed = False
            if why is not StopReason.COMM_LOSS:  # where the servos are now (they may have stopped on
                self._refresh_present()  # their own); after a comm loss the last reading is all there is
            if self._present_counts:
                bus.sync_write(GOAL.address, GOAL.size, self._goal_bytes(self._present_counts))
            if cfg.hold_s:
                time.sleep(cfg.hold_s)
            if cfg.torque_off_on_stop:
                bus.sync_write_register(ct.TORQUE_ENABLE, dict.fromkeys(cfg.all_ids, 0))
        except BridgeError as err:
            log.error("%s: safe stop could not reach %s: %s", cfg.name, cfg.port, err)
        return record

    def _refresh_present(self) -> None:
        """Present positions for the hold, read once (no retries) with any hardware alert accepted."""
        retries, self.bus.retries = self.bus.retries, 0
        try:
            raw = self.bus.sync_read(
                ct.INDIRECT_DATA_1.address, FEEDBACK.size, self.config.ids, allow_alert=True
            )
            self._present_counts = {i: FEEDBACK.unpack(raw[i])[3] for i in self.config.ids}
        except BridgeError as err:
            log.warning("%s: holding the last known position (%s)", self.config.name, err)
        finally:
            self.bus.retries = retries

    def disconnect(self) -> None:
        if self._connected and self.stop_record is None:
            self.safe_stop(StopReason.END, "disconnect")
        self._connected = False
        self.bus.close()


def _reason_for(err: BaseException) -> StopReason:
    if isinstance(err, KeyboardInterrupt):
        return StopReason.SIGINT
    if isinstance(err, SystemExit):  # how WidowXRobot turns SIGTERM into an exception during bring-up
        return StopReason.SIGTERM
    if isinstance(err, BusWatchdogExpiredError):
        return StopReason.BUS_WATCHDOG
    if isinstance(err, HardwareAlertError):
        return StopReason.HARDWARE_ALERT
    if isinstance(err, (CommTimeoutError, CRCMismatchError, PacketError, TransportError)):
        return StopReason.COMM_LOSS
    return StopReason.ERROR
