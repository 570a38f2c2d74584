"""A chain of Feetech STS3215 servos emulated byte for byte behind a pseudo-terminal (simulation only).

The emulator owns the pty master; the bus under test opens the slave path with pyserial like the SO-101's
USB serial adapter. What each servo does comes from Feetech's documents, the "Communication Protocol User
Manual" (packet format, which instructions answer) and the STS3215 memory table (registers and protections):

- a packet whose checksum does not match is not answered (1.1: the checksum is how a servo knows the packet
  is intact); a broadcast (254) is never answered except PING, and Sync Write never answers (1.3.6);
  with Response Status Level (8) = 0 only READ and PING answer;
- every response carries the servo's status bits (1.2 "Error"; the same bits as Servo Status, 65);
- EEPROM (0..39) written while Lock (55) is 1 takes effect but is not saved: `power_cycle()` brings back
  the saved values; `eeprom_writes` counts the saved writes;
- Goal Position is held within Min..Max Angle Limit (9, 11) ("Min/Max Angle Limit": the limits of the
  motion stroke; both 0 selects multi-turn, not emulated); Present Position = actual - Homing Offset (31);
- read-only addresses (model, present values, status) do not change when written;
- protections: Present Temperature above Max Temperature Limit (13) sets the overheat bit; a load above
  Overload Torque (36, % of max) for Protection Time (35, 10 ms units) sets the overload bit; a status bit
  that is also set in Unloading Condition (19) (factory 0x2C: overheat, overcurrent, overload) turns the
  torque off. The servo has no bus watchdog: with a silent host it holds its last goal.

Fault injection: `inject(fault, id, count)` with bad_checksum, no_reply, late_reply (`count` responses,
None = until cleared), overload and overheat (the protection trips now). Counters (`rx_bytes`, `rx_packets`)
let tests prove that nothing reaches the wire after a safe stop.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

from edgeact.firmware_bridge.errors import PacketError
from edgeact.firmware_bridge.feetech import control_table as ct
from edgeact.firmware_bridge.feetech import protocol as p
from edgeact.firmware_bridge.transport import PtyPair

log = logging.getLogger(__name__)

FIRMWARE = (3, 10)
READ_ONLY = (
    (0, 5),  # firmware version, model number
    (ct.PRESENT_POSITION.address, ct.MOVING.address + 1 - ct.PRESENT_POSITION.address),
    (ct.PRESENT_CURRENT.address, 2),
)
UNLOAD_FACTORY = ct.ST_OVERHEAT | ct.ST_OVERCURRENT | ct.ST_OVERLOAD  # 0x2C


class Fault(str, Enum):
    BAD_CHECKSUM = "bad_checksum"
    NO_REPLY = "no_reply"
    LATE_REPLY = "late_reply"
    OVERLOAD = "overload"
    OVERHEAT = "overheat"


def _factory_table(motor_id: int) -> bytearray:
    """Factory settings of the STS3215 memory table (12 V version)."""
    t = bytearray(ct.TABLE_SIZE)

    def put(reg: ct.Register, value: int) -> None:
        t[reg.address : reg.address + reg.size] = ct.encode_value(reg, value)

    t[0], t[1] = FIRMWARE
    put(ct.MODEL_NUMBER, ct.MODEL_STS3215)
    put(ct.ID, motor_id)
    put(ct.RETURN_DELAY_TIME, 250)  # 500 us
    put(ct.RESPONSE_STATUS_LEVEL, 1)
    put(ct.MAX_ANGLE_LIMIT, 4095)
    put(ct.MAX_TEMPERATURE_LIMIT, 70)
    put(ct.MAX_INPUT_VOLTAGE, 140)
    put(ct.MIN_INPUT_VOLTAGE, 40)
    put(ct.MAX_TORQUE_LIMIT, 1000)
    put(ct.UNLOADING_CONDITION, UNLOAD_FACTORY)
    put(ct.LED_ALARM_CONDITION, 0x2F)
    put(ct.P_COEFFICIENT, 32)
    put(ct.D_COEFFICIENT, 32)
    put(ct.PROTECTION_CURRENT, 500)
    put(ct.PROTECTIVE_TORQUE, 20)
    put(ct.PROTECTION_TIME, 200)
    put(ct.OVERLOAD_TORQUE, 80)
    put(ct.LOCK, 1)
    put(ct.MAXIMUM_ACCELERATION, 0)
    return t


@dataclass
class EmulatedServo:
    id: int
    table: bytearray = field(default_factory=bytearray)
    actual: float = 2048.0  # encoder counts before the homing offset
    temperature: float = 30.0
    external_load: int | None = None  # Present Load as a test sets it (None: from the position error)
    overload_since: float | None = None
    eeprom_writes: int = 0  # EEPROM writes saved (Lock = 0)
    pending: tuple[int, bytes] | None = None  # REG WRITE waiting for ACTION
    last_update: float = 0.0

    def __post_init__(self) -> None:
        self.table = _factory_table(self.id)
        self.saved = bytes(self.table[: ct.EEPROM_END])
        self.power_cycle()

    def get(self, reg: ct.Register) -> int:
        return ct.decode_value(reg, bytes(self.table[reg.address : reg.address + reg.size]))

    def put(self, reg: ct.Register, value: int) -> None:
        self.table[reg.address : reg.address + reg.size] = ct.encode_value(reg, value)

    def power_cycle(self) -> None:
        """EEPROM back to what was saved, SRAM to its power-on values (Torque Limit := Max Torque Limit)."""
        self.table[: ct.EEPROM_END] = self.saved
        self.table[ct.EEPROM_END :] = _factory_table(self.id)[ct.EEPROM_END :]
        self.put(ct.TORQUE_LIMIT, self.get(ct.MAX_TORQUE_LIMIT))
        self.put(ct.GOAL_POSITION, self.present())
        self.last_update = time.monotonic()
        self.step(self.last_update, 0.0)

    @property
    def torque(self) -> bool:
        return self.table[ct.TORQUE_ENABLE.address] == 1

    def present(self) -> int:
        """Present Position = actual - Homing Offset, within one turn (position mode)."""
        return (round(self.actual) - self.get(ct.HOMING_OFFSET)) % 4096

    def clamp_goal(self, goal: int) -> int:
        lo, hi = self.get(ct.MIN_ANGLE_LIMIT), self.get(ct.MAX_ANGLE_LIMIT)
        return goal if lo == hi == 0 else max(lo, min(hi, goal))

    def step(self, now: float, max_speed: float) -> None:
        """Move toward the goal at Goal Speed (0: `max_speed`) counts/s while torque is on; protections."""
        dt, self.last_update = max(0.0, now - self.last_update), now
        err = self.clamp_goal(self.get(ct.GOAL_POSITION)) - self.present()
        speed = self.get(ct.GOAL_SPEED) or max_speed
        move = max(-speed * dt, min(speed * dt, err)) if self.torque else 0.0
        self.actual += move
        self.put(ct.PRESENT_POSITION, self.present())
        self.put(ct.PRESENT_SPEED, round(move / dt) if dt > 0 else 0)
        load = max(-1000, min(1000, round(err * 2))) if self.torque else 0
        if self.external_load is not None:
            load = self.external_load
        self.put(ct.PRESENT_LOAD, load)
        self.table[ct.PRESENT_VOLTAGE.address] = 120
        self.table[ct.PRESENT_TEMPERATURE.address] = round(self.temperature)
        self.table[ct.MOVING.address] = int(abs(err) > 1 and self.torque)
        self._protect(now, load)

    def _protect(self, now: float, load: int) -> None:
        """Overheat and overload bits (memory table: Max Temperature Limit (13), Overload Torque (36),
        Protection Time (35)); bits in Unloading Condition (19) turn the torque off."""
        bits = self.table[ct.STATUS.address] & ~(ct.ST_OVERHEAT | ct.ST_OVERLOAD)
        if self.temperature > self.get(ct.MAX_TEMPERATURE_LIMIT):
            bits |= ct.ST_OVERHEAT
        if abs(load) > self.get(ct.OVERLOAD_TORQUE) * 10:
            self.overload_since = now if self.overload_since is None else self.overload_since
            if now - self.overload_since >= self.get(ct.PROTECTION_TIME) * 0.010:
                bits |= ct.ST_OVERLOAD
        else:
            self.overload_since = None
        self.table[ct.STATUS.address] = bits
        if bits & self.get(ct.UNLOADING_CONDITION):
            self.table[ct.TORQUE_ENABLE.address] = 0

    def write(self, addr: int, data: bytes) -> None:
        """Apply a write: read-only bytes stay, the goal is held within the angle limits, EEPROM is saved only
        while Lock is 0 (the Lock byte itself may be in the same write)."""
        if addr + len(data) > ct.TABLE_SIZE:
            return
        for a, value in zip(range(addr, addr + len(data)), data, strict=True):
            if not any(lo <= a < lo + n for lo, n in READ_ONLY):
                self.table[a] = value
        if addr < ct.EEPROM_END and self.table[ct.LOCK.address] == 0:
            self.saved = bytes(self.table[: ct.EEPROM_END])
            self.eeprom_writes += 1
        if self.torque and self.table[ct.STATUS.address] & self.get(ct.UNLOADING_CONDITION):
            self.table[ct.TORQUE_ENABLE.address] = 0  # a protection still active keeps the torque off

    def read(self, addr: int, length: int) -> bytes | None:
        if addr + length > ct.TABLE_SIZE:
            return None
        return bytes(self.table[addr : addr + length])


class FeetechChainEmulator:
    """STS3215 servos on one emulated serial bus behind a pty. `start()` returns the port path."""

    def __init__(
        self,
        ids: list[int] | tuple[int, ...],
        *,
        max_speed: float = 3000.0,  # counts/s when Goal Speed is 0 (about 4.6 rad/s)
        late_reply_s: float = 0.05,
        initial_positions: dict[int, float] | None = None,
    ) -> None:
        self.servos = {i: EmulatedServo(i) for i in sorted(ids)}
        for motor_id, counts in (initial_positions or {}).items():
            self.servos[motor_id].actual = counts
            self.servos[motor_id].power_cycle()
        self.max_speed = max_speed
        self.late_reply_s = late_reply_s
        self._faults: dict[tuple[Fault, int], int | None] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pty: PtyPair | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._parser = p.StreamParser(status=False)
        self.rx_bytes = 0
        self.rx_packets = 0
        self.tx_bytes = 0
        self.log: list[p.Packet] = []

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> str:
        self._pty = PtyPair()
        self._thread = threading.Thread(target=self._serve, name="feetech-emulator", daemon=True)
        self._thread.start()
        return self._pty.path

    @property
    def port(self) -> str:
        if self._pty is None:
            raise RuntimeError("emulator not started")
        return self._pty.path

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def __enter__(self) -> FeetechChainEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settle(self, host_tx_bytes: int, timeout_s: float = 1.0) -> None:
        """Wait until the emulator has taken in `host_tx_bytes` bytes (what the host wrote so far)."""
        deadline = time.monotonic() + timeout_s
        while self.rx_bytes < host_tx_bytes and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.002)

    # --- fault injection ---------------------------------------------------------------------------
    def inject(self, fault: Fault | str, motor_id: int, count: int | None = None) -> None:
        """`bad_checksum`/`no_reply`/`late_reply` for the next `count` responses of `motor_id` (None = until
        cleared); `overload` (a load of 100 % held past Protection Time) and `overheat` (10 deg C above
        Max Temperature Limit) trip the servo's protection now."""
        fault = Fault(fault)
        with self._lock:
            servo = self.servos[motor_id]
            now = time.monotonic()
            if fault is Fault.OVERLOAD:
                servo.external_load = 1000
                servo.overload_since = now - 10.0
                servo.step(now, self.max_speed)
            elif fault is Fault.OVERHEAT:
                servo.temperature = servo.get(ct.MAX_TEMPERATURE_LIMIT) + 10
                servo.step(now, self.max_speed)
            else:
                self._faults[(fault, motor_id)] = count

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, fault: Fault, motor_id: int) -> bool:
        key = (fault, motor_id)
        if key not in self._faults:
            return False
        left = self._faults[key]
        if left is not None:
            if left <= 1:
                del self._faults[key]
            else:
                self._faults[key] = left - 1
        return True

    # --- the device side ---------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._pty is not None
        fd = self._pty.master
        while not self._stop.is_set():
            if not select.select([fd], [], [], 0.005)[0]:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                time.sleep(0.005)  # the slave side is not open yet
                continue
            self.rx_bytes += len(data)
            for packet in self._parser.feed(data):
                self.rx_packets += 1
                self.log.append(packet)
                for delay, frame in self._handle(packet):
                    if delay:
                        timer = threading.Timer(delay, self._send, (fd, frame))
                        timer.daemon = True
                        timer.start()
                    else:
                        self._send(fd, frame)

    def _send(self, fd: int, frame: bytes) -> None:
        with self._write_lock:
            if self._stop.is_set():
                return
            try:
                os.write(fd, frame)
            except OSError:
                return
            self.tx_bytes += len(frame)

    def _handle(self, pkt: p.Packet) -> list[tuple[float, bytes]]:
        now = time.monotonic()
        with self._lock:
            for servo in self.servos.values():
                servo.step(now, self.max_speed)
            try:
                return self._dispatch(pkt)
            except PacketError as err:
                log.debug("feetech emulator: malformed instruction %s: %s", pkt, err)
                return []

    def _dispatch(self, pkt: p.Packet) -> list[tuple[float, bytes]]:
        inst = pkt.instruction
        if inst == p.Instruction.SYNC_WRITE:
            addr, _length, data = p.parse_sync_write(pkt.params)
            for motor_id, payload in data.items():
                if motor_id in self.servos and not self._silent(motor_id):
                    self.servos[motor_id].write(addr, payload)
            return []
        if inst == p.Instruction.SYNC_READ:
            addr, length, ids = p.parse_sync_read(pkt.params)
            out = []
            for motor_id in ids:
                servo = self.servos.get(motor_id)
                data = servo.read(addr, length) if servo else None
                if servo is not None and data is not None:
                    out += self._reply(servo, data)
            return out
        if inst == p.Instruction.ACTION:
            for servo in self.servos.values():
                if servo.pending is not None:
                    servo.write(*servo.pending)
                    servo.pending = None
            return []
        if pkt.id == p.BROADCAST_ID:
            if inst == p.Instruction.PING:
                return [r for s in self.servos.values() for r in self._reply(s, b"")]
            for servo in self.servos.values():
                self._single(servo, pkt)
            return []
        servo = self.servos.get(pkt.id)
        if servo is None:
            return []
        answer, params = self._single(servo, pkt)
        if not answer or (servo.get(ct.RESPONSE_STATUS_LEVEL) == 0 and inst not in (1, 2)):
            return []
        return self._reply(servo, params)

    def _single(self, servo: EmulatedServo, pkt: p.Packet) -> tuple[bool, bytes]:
        inst = pkt.instruction
        if inst == p.Instruction.PING:
            return True, b""
        if inst == p.Instruction.READ:
            addr, length = p.parse_read(pkt.params)
            data = servo.read(addr, length)
            return data is not None, data or b""
        if self._silent(servo.id):
            return True, b""
        if inst == p.Instruction.WRITE:
            servo.write(*p.parse_write(pkt.params))
            return True, b""
        if inst == p.Instruction.REG_WRITE:
            servo.pending = p.parse_write(pkt.params)
            return True, b""
        if inst == p.Instruction.RESET:
            servo.table[: ct.EEPROM_END] = _factory_table(servo.id)[: ct.EEPROM_END]
            return True, b""
        return False, b""  # an instruction the servo does not know is not answered

    def _silent(self, motor_id: int) -> bool:
        return (Fault.NO_REPLY, motor_id) in self._faults

    def _reply(self, servo: EmulatedServo, params: bytes) -> list[tuple[float, bytes]]:
        if self._take_fault(Fault.NO_REPLY, servo.id):
            return []
        frame = p.status(servo.id, servo.table[ct.STATUS.address], params)
        if self._take_fault(Fault.BAD_CHECKSUM, servo.id):
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        delay = self.late_reply_s if self._take_fault(Fault.LATE_REPLY, servo.id) else 0.0
        return [(delay, frame)]
