"""A Feetech STS3215 arm (SO-100/SO-101 follower) in LeRobot's units: bring-up, one Sync Write + one Sync Read
per tick, safe stop.

Bring-up (`connect`): ping every servo (its status bits must be clear) and check its model; torque off and
Lock 0 (as LeRobot's `disable_torque`); the EEPROM items Return Delay 0, Operating Mode 0 (position), P/I/D,
Unloading Condition, per-joint protections and the calibration (Homing Offset, Min/Max Angle Limit =
range_min/range_max, as LeRobot's `write_calibration`), each read first and written only where it differs;
Acceleration, Maximum Acceleration and Goal Speed; goal := present; torque on and Lock 1.

Each tick (`step`): NaN guard, clamp to the calibrated limits and `max_step`, LeRobot's unnormalize to
counts, one Sync Write of Goal Position, one Sync Read of Present Position..Status (56..65). Any status bit
(overload, overheat, ...), a timeout or checksum error after the retries, or NaN triggers `safe_stop`: hold
the present position for `hold_s`, torque off, and nothing sent after that. The STS3215 has no bus
watchdog: docs/firmware_bridge.md ("Feetech: a dead host") says what guards the arm when the host dies.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass

import numpy as np
from edgeact.firmware_bridge.calibration import JointMap, MotorCalibration
from edgeact.firmware_bridge.errors import (
    BridgeError,
    BusStoppedError,
    CalibrationError,
    CommTimeoutError,
    FeetechStatusError,
    InvalidCommandError,
    PacketError,
    TransportError,
)
from edgeact.firmware_bridge.feetech import control_table as ct
from edgeact.firmware_bridge.feetech.bus import FeetechBus, status_error
from edgeact.firmware_bridge.feetech.config import FeetechArmConfig
from edgeact.firmware_bridge.safety import StopReason, StopRecord, parse_reason
from edgeact.firmware_bridge.transport import SerialTransport

log = logging.getLogger(__name__)

# Present Position (sign-magnitude bit 15), Speed (bit 15), Load (bit 10), Voltage, Temperature, async flag,
# Status: addresses 56..65, read raw and decoded per field
FEEDBACK = struct.Struct("<HHHBBBB")
GOAL = ct.GOAL_POSITION


@dataclass
class ArmState:
    """Last tick's feedback, float64 (J,): positions in LeRobot units, loads in % of max torque,
    temperatures in deg C, voltages in V."""

    positions: np.ndarray
    loads: np.ndarray
    temperatures: np.ndarray
    voltages: np.ndarray
    timestamp: float
    tick: int


def joint_map(config: FeetechArmConfig, calibration: dict[str, MotorCalibration]) -> JointMap:
    """LeRobot's mapping for the config's joints (Feetech: drive mode applied on the host)."""
    cals = []
    for joint in config.joints:
        cal = calibration.get(joint.name)
        if cal is None:
            raise CalibrationError(
                f"{config.name}: the calibration has no motor {joint.name!r} (has {sorted(calibration)})"
            )
        if cal.id != joint.id:
            raise CalibrationError(
                f"{config.name}: calibration of {joint.name!r} is for servo id {cal.id}, "
                f"the config says {joint.id}"
            )
        if not 0 <= cal.range_min < cal.range_max <= 4095:
            raise CalibrationError(
                f"{config.name}: {joint.name!r} (servo {joint.id}) range {cal.range_min}..{cal.range_max} "
                "is not within 0..4095 with min < max (Min/Max Angle Limit)"
            )
        cals.append(cal)
    return JointMap(cals, [j.mode for j in config.joints], [j.resolution for j in config.joints], True)


class FeetechArm:
    """One STS3215 arm. Call `connect`, then `step(targets)` once per tick from the control thread."""

    def __init__(
        self,
        config: FeetechArmConfig,
        calibration: dict[str, MotorCalibration],
        *,
        poll_timeout_s: float = 0.002,
    ) -> None:
        self.config = config
        self.calibration = {j.name: calibration[j.name] for j in config.joints if j.name in calibration}
        self.map = joint_map(config, calibration)
        self.bus = FeetechBus(
            SerialTransport(config.port, config.baudrate, poll_timeout_s=poll_timeout_s),
            timeout_s=config.timeout_s,
            retries=config.retries,
        )
        self.bus.names = {j.id: j.name for j in config.joints}
        self._lower, self._upper = self.map.limits()
        arm_step = np.inf if config.max_step is None else config.max_step
        self._max_step = np.array([arm_step if j.max_step is None else j.max_step for j in config.joints])
        self._count_lo = self.map.lo.astype(np.int64)
        self._count_hi = self.map.hi.astype(np.int64)
        self.state: ArmState | None = None
        self.last_command: np.ndarray | None = None
        self.stop_record: StopRecord | None = None
        self.tick = 0
        self._present_counts: dict[int, int] = {}
        self._connected = False

    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        return self._lower.copy(), self._upper.copy()

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def stopped(self) -> bool:
        return self.stop_record is not None

    def to_counts(self, values: np.ndarray) -> np.ndarray:
        """LeRobot's unnormalize, then inside Min..Max Angle Limit (the calibrated range)."""
        return np.clip(self.map.to_counts(values), self._count_lo, self._count_hi)

    # --- bring-up ----------------------------------------------------------------------------------
    def connect(self) -> ArmState:
        cfg, bus = self.config, self.bus
        bus.open()
        try:
            self._check_servos()
            for motor_id in cfg.ids:  # LeRobot's disable_torque: Torque Enable 0, then Lock 0
                bus.write_register(motor_id, ct.TORQUE_ENABLE, 0)
                bus.write_register(motor_id, ct.LOCK, 0)
            self._configure()
            state = self._read_feedback()
            bus.sync_write(GOAL.address, GOAL.size, self._goal_bytes(self._present_counts))
            self._connected = True  # from here on any exit goes through safe_stop (torque off)
            for motor_id in cfg.ids:  # LeRobot's enable_torque: Torque Enable 1, then Lock 1
                bus.write_register(motor_id, ct.TORQUE_ENABLE, 1)
                bus.write_register(motor_id, ct.LOCK, 1)
        except BaseException as err:  # Ctrl-C included: never leave servos torqued by a half bring-up
            if self._connected:
                self.safe_stop(_reason_for(err), f"bring-up interrupted: {type(err).__name__}: {err}")
                self._connected = False
            bus.close()
            raise
        self.state = state
        self.last_command = state.positions.copy()
        log.info("%s: %d servos on %s torqued on", cfg.name, len(cfg.ids), cfg.port)
        return state

    def _check_servos(self) -> None:
        for joint in self.config.joints:
            where = f"servo {joint.id} ({joint.name}) on {self.config.port}"
            bits = self.bus.ping(joint.id)
            if bits:
                raise status_error(
                    joint.id, bits, self.config.port, joint.name, "; clear it before connecting"
                )
            model = self.bus.read_register(joint.id, ct.MODEL_NUMBER)
            want = ct.MODEL_BY_NAME[joint.model].number
            if model != want:
                raise PacketError(f"{where} is model {model}, config says {joint.model} ({want})")

    def _configure(self) -> None:
        """EEPROM items written only where they differ (EEPROM wears), then the SRAM settings."""
        cfg, bus = self.config, self.bus
        for joint in cfg.joints:
            cal = self.calibration[joint.name]
            items = [
                (ct.RETURN_DELAY_TIME, 0),
                (ct.OPERATING_MODE, ct.MODE_POSITION),
                (ct.P_COEFFICIENT, cfg.p_coefficient),
                (ct.I_COEFFICIENT, cfg.i_coefficient),
                (ct.D_COEFFICIENT, cfg.d_coefficient),
                (ct.UNLOADING_CONDITION, cfg.unloading_condition),
                (ct.HOMING_OFFSET, cal.homing_offset),
                (ct.MIN_ANGLE_LIMIT, cal.range_min),
                (ct.MAX_ANGLE_LIMIT, cal.range_max),
                (ct.MAXIMUM_ACCELERATION, cfg.maximum_acceleration),
            ]
            for reg, value in (
                (ct.MAX_TORQUE_LIMIT, joint.max_torque_limit),
                (ct.PROTECTION_CURRENT, joint.protection_current),
                (ct.OVERLOAD_TORQUE, joint.overload_torque),
            ):
                if value is not None:
                    items.append((reg, value))
            written = [reg.address for reg, value in items if bus.ensure_register(joint.id, reg, value)]
            if written:
                log.info("%s: servo %d (%s) EEPROM written at %s", cfg.name, joint.id, joint.name, written)
            bus.write_register(joint.id, ct.ACCELERATION, cfg.acceleration)
            bus.write_register(joint.id, ct.GOAL_SPEED, cfg.goal_speed)
            if (
                joint.max_torque_limit is not None
            ):  # Torque Limit (48) takes Max Torque Limit at power-on only
                bus.write_register(joint.id, ct.TORQUE_LIMIT, joint.max_torque_limit)

    def _goal_bytes(self, counts: dict[int, int]) -> dict[int, bytes]:
        return {i: ct.encode_value(GOAL, c) for i, c in counts.items()}

    def _read_feedback(self) -> ArmState:
        ids = self.config.ids
        raw, bits = self.bus.sync_read(ct.FEEDBACK_ADDRESS, ct.FEEDBACK_SIZE, ids, allow_status=True)
        fields = [FEEDBACK.unpack(raw[i]) for i in ids]
        for joint, f in zip(self.config.joints, fields, strict=True):
            status = f[6] | bits[joint.id]
            if status:
                raise status_error(
                    joint.id,
                    status,
                    self.config.port,
                    joint.name,
                    f"; present temperature {f[4]} C, load {ct.decode_sign_magnitude(f[2], 10) / 10} %",
                )
        counts = np.array([ct.decode_sign_magnitude(f[0], 15) for f in fields])
        self._present_counts = dict(zip(ids, counts.tolist(), strict=True))
        return ArmState(
            self.map.to_units(counts),
            np.array([ct.decode_sign_magnitude(f[2], 10) / 10 for f in fields]),
            np.array([float(f[4]) for f in fields]),
            np.array([f[3] / 10 for f in fields]),
            time.monotonic(),
            self.tick,
        )

    # --- the tick ----------------------------------------------------------------------------------
    def clamp(self, targets: np.ndarray) -> np.ndarray:
        """Calibrated joint limits, then the per-tick step limit relative to the last command."""
        out = np.clip(targets, self._lower, self._upper)
        if self.last_command is not None:
            out = np.clip(out, self.last_command - self._max_step, self.last_command + self._max_step)
        return out

    def step(self, targets: np.ndarray) -> ArmState:
        """One tick: Sync Write goal positions, Sync Read feedback. Raises after a safe stop on any fault."""
        where = f"{self.config.name} on {self.config.port}"
        if self.stop_record is not None:
            raise BusStoppedError(f"{where} is stopped ({self.stop_record.reason.value})")
        if not self._connected:
            raise TransportError(f"{where} is not connected")
        self.tick += 1
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if targets.shape != self._lower.shape or not np.all(np.isfinite(targets)):
            err = InvalidCommandError(
                f"{where}: bad command {targets.tolist()} (need {self._lower.size} finite)"
            )
            self.safe_stop(StopReason.NAN, str(err))
            raise err
        command = self.clamp(targets)
        counts = self.to_counts(command)
        try:
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
        """Hold the present position for `hold_s`, torque off (if configured), and send nothing after that.
        Idempotent; each step is one packet, so a servo that no longer answers cannot hold the others up."""
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
        cfg, bus = self.config, self.bus
        try:
            if why is not StopReason.COMM_LOSS:
                self._refresh_present()
            if self._present_counts:
                bus.sync_write(GOAL.address, GOAL.size, self._goal_bytes(self._present_counts))
            if cfg.hold_s:
                time.sleep(cfg.hold_s)
            if cfg.torque_off_on_stop:
                bus.sync_write_register(ct.TORQUE_ENABLE, dict.fromkeys(cfg.ids, 0))
        except BridgeError as err:
            log.error("%s: safe stop could not reach %s: %s", cfg.name, cfg.port, err)
        return record

    def _refresh_present(self) -> None:
        """Present positions for the hold, read once (no retries) whatever the status bits say."""
        retries, self.bus.retries = self.bus.retries, 0
        try:
            raw, _bits = self.bus.sync_read(
                ct.FEEDBACK_ADDRESS, ct.FEEDBACK_SIZE, self.config.ids, allow_status=True
            )
            self._present_counts = {
                i: ct.decode_sign_magnitude(FEEDBACK.unpack(raw[i])[0], 15) for i in self.config.ids
            }
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
    if isinstance(err, SystemExit):
        return StopReason.SIGTERM
    if isinstance(err, FeetechStatusError):
        return StopReason.HARDWARE_ALERT
    if isinstance(err, (CommTimeoutError, PacketError, TransportError)):
        return StopReason.COMM_LOSS
    return StopReason.ERROR
