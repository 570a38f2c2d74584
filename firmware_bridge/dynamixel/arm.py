"""A Dynamixel arm (the WidowX 250 6DOF by default): bring-up, one sync write + one sync read per tick, safe
stop.

Bring-up (`connect`): ping every servo (shadows included) and check its model, torque off, clear the bus
watchdog, map the per-tick feedback into Indirect Data (so a single Sync Read returns watchdog, hardware
error, current and position), set the operating mode and profile, write goal = present, torque on. The
bus watchdog is armed in the first tick (a host that connects and then loads a model for a while must not
trip it).

Each tick (`step`): clamp the targets to the joint limits and `max_step`, one Sync Write of Goal
Position, one Sync Read of the indirect block. Faults (timeouts/CRC after retries, hardware alert, bus
watchdog expiry, NaN, a host stall longer than the watchdog) trigger `safe_stop`: hold the last present
position, wait `hold_s`, torque off (configurable); after that the arm sends nothing more."""

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
    InvalidCommandError,
    PacketError,
    TransportError,
)
from edgeact.firmware_bridge.safety import StopReason, StopRecord, parse_reason
from edgeact.firmware_bridge.transport import SerialTransport

log = logging.getLogger(__name__)

# Per-tick feedback block in Indirect Data 1..8 (address 224): bus watchdog (98, int8), hardware error status
# (70, uint8), present current (126, int16), present position (132, int32).
FEEDBACK = struct.Struct("<bBhi")
FEEDBACK_SOURCES = (98, 70, 126, 127, 132, 133, 134, 135)
GOAL = ct.GOAL_POSITION


@dataclass
class ArmState:
    """Last tick's feedback: positions float64 (J,) in robot units, currents int (J,) in 2.69 mA units."""

    positions: np.ndarray
    currents: np.ndarray
    timestamp: float
    tick: int


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
        self._lower = np.array([x.lower for x in j])
        self._upper = np.array([x.upper for x in j])
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
        return np.rint(self._off + self._cpu * values).astype(np.int64)

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
            for motor_id in cfg.all_ids:  # Return Delay Time 0 (factory 500 us); EEPROM: only when needed
                if bus.read_register(motor_id, ct.RETURN_DELAY_TIME):
                    bus.write_register(motor_id, ct.RETURN_DELAY_TIME, 0)
            bus.set_bus_watchdog(cfg.ids, 0)  # also clears a -1 left by an earlier expiry
            indirect = b"".join(a.to_bytes(2, "little") for a in FEEDBACK_SOURCES)
            for motor_id in cfg.ids:
                bus.write(motor_id, ct.INDIRECT_ADDRESS_1.address, indirect)
            bus.set_operating_mode(cfg.all_ids, cfg.operating_mode)
            bus.set_profile(cfg.ids, cfg.profile_velocity, cfg.profile_acceleration)
            state = self._read_feedback()
            bus.sync_write(GOAL.address, GOAL.size, self._goal_bytes(self._present_counts))
            bus.set_torque(cfg.all_ids, True)
        except BridgeError:
            bus.close()
            raise
        self.state = state
        self.last_command = state.positions.copy()
        self._connected = True
        log.info(
            "%s: %d servos on %s torqued on in mode %d",
            cfg.name,
            len(cfg.all_ids),
            cfg.port,
            cfg.operating_mode,
        )
        return state

    def _check_models(self) -> None:
        for joint in self.config.joints:
            for motor_id in (joint.id, *joint.shadows):
                model, _fw = self.bus.ping(motor_id)
                if model != joint.model:
                    raise PacketError(
                        f"servo {motor_id} ({joint.name}) on {self.config.port} is model {model}, "
                        f"config says {joint.model}"
                    )
                hw = self.bus.read_register(motor_id, ct.HARDWARE_ERROR_STATUS, allow_alert=True)
                if hw:
                    raise HardwareAlertError(
                        f"servo {motor_id} ({joint.name}) on {self.config.port} has a latched hardware error "
                        f"({ct.hardware_error_text(hw)}); reboot it before connecting",
                        motor_id=motor_id,
                    )

    def _goal_bytes(self, counts: dict[int, int]) -> dict[int, bytes]:
        return {i: ct.encode_value(GOAL, c) for i, c in counts.items()}

    def _read_feedback(self) -> ArmState:
        raw = self.bus.sync_read(ct.INDIRECT_DATA_1.address, FEEDBACK.size, self.config.ids)
        fields = [FEEDBACK.unpack(raw[i]) for i in self.config.ids]
        expired = [i for i, f in zip(self.config.ids, fields, strict=True) if f[0] == -1]
        if expired:
            raise BusWatchdogExpiredError(
                f"bus watchdog expired on servo(s) {expired} of {self.config.port}", motor_id=expired[0]
            )
        counts = np.array([f[3] for f in fields])
        self._present_counts = dict(zip(self.config.ids, counts.tolist(), strict=True))
        return ArmState(
            self.from_counts(counts), np.array([f[2] for f in fields]), time.monotonic(), self.tick
        )

    # --- the tick ----------------------------------------------------------------------------------
    def clamp(self, targets: np.ndarray) -> np.ndarray:
        """Joint limits, then the per-tick step limit relative to the last command."""
        out = np.clip(targets, self._lower, self._upper)
        if self.last_command is not None:
            step = self._max_step
            out = np.clip(out, self.last_command - step, self.last_command + step)
        return out

    def step(self, targets: np.ndarray) -> ArmState:
        """One tick: Sync Write goal positions, Sync Read feedback. Raises after a safe stop on any fault."""
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
        command = self.clamp(targets)
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
        except BridgeError as err:
            self.safe_stop(_reason_for(err), str(err))
            raise
        self.last_command = command
        self.state = state
        return state

    # --- stopping ----------------------------------------------------------------------------------
    def safe_stop(self, reason: StopReason | str, detail: str = "") -> StopRecord:
        """Hold the last present position, wait `hold_s`, torque off (if configured). Idempotent."""
        if self.stop_record is not None:
            return self.stop_record
        why = parse_reason(reason)
        record = StopRecord(why, detail or str(reason), self.tick, time.monotonic())
        self.stop_record = record
        (log.error if why.is_fault else log.info)(
            "%s: safe stop (%s) %s", self.config.name, why.value, detail
        )
        if not self._connected:
            return record
        try:
            if self._present_counts:
                self.bus.sync_write(GOAL.address, GOAL.size, self._goal_bytes(self._present_counts))
            if self.config.hold_s:
                time.sleep(self.config.hold_s)
            if self.config.torque_off_on_stop:
                self.bus.sync_write_register(ct.TORQUE_ENABLE, dict.fromkeys(self.config.all_ids, 0))
        except BridgeError as err:
            log.error("%s: safe stop could not reach %s: %s", self.config.name, self.config.port, err)
        return record

    def disconnect(self) -> None:
        if self._connected and self.stop_record is None:
            self.safe_stop(StopReason.END, "disconnect")
        self._connected = False
        self.bus.close()


def _reason_for(err: BridgeError) -> StopReason:
    if isinstance(err, BusWatchdogExpiredError):
        return StopReason.BUS_WATCHDOG
    if isinstance(err, HardwareAlertError):
        return StopReason.HARDWARE_ALERT
    if isinstance(err, (CommTimeoutError, CRCMismatchError, PacketError, TransportError)):
        return StopReason.COMM_LOSS
    return StopReason.ERROR
