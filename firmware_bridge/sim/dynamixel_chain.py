"""A Dynamixel Protocol 2.0 servo chain emulated byte for byte behind a pseudo-terminal (simulation only).

The emulator owns the pty master; the bus under test opens the slave path with pyserial like a U2D2 port.
Each servo has a 256-byte control table (X-series addresses), Secondary-ID shadows, indirect addressing,
goal -> present dynamics limited by a maximum speed, the Bus Watchdog (e-manual: on expiry the servo stops,
address 98 reads -1 and Goal Position becomes read-only until 98 is written 0), hardware-error shutdown
(torque off, alert bit 7 in every status packet until reboot), and fault injection:

    bad_crc, no_reply, late_reply, hardware_alert, watchdog_expiry

Counters (`rx_bytes`, `rx_packets`) let tests prove that nothing reaches the wire after a safe stop.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

from edgeact.firmware_bridge.config import DynamixelArmConfig
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel import protocol as p
from edgeact.firmware_bridge.errors import PacketError
from edgeact.firmware_bridge.transport import PtyPair

log = logging.getLogger(__name__)

FIRMWARE_VERSION = 46
# ERR codes the emulator answers with (e-manual, Protocol 2.0 "Status Packet")
ERR_INSTRUCTION, ERR_RANGE, ERR_LENGTH, ERR_ACCESS = 0x02, 0x04, 0x05, 0x07
READ_ONLY = (
    (ct.MODEL_NUMBER.address, 7),
    (ct.HARDWARE_ERROR_STATUS.address, 1),
    (ct.MOVING.address, 100),  # 122..221 present values, except the indirect addresses below
)


class Fault(str, Enum):
    BAD_CRC = "bad_crc"
    NO_REPLY = "no_reply"
    LATE_REPLY = "late_reply"
    HARDWARE_ALERT = "hardware_alert"
    WATCHDOG_EXPIRY = "watchdog_expiry"


@dataclass
class EmulatedServo:
    id: int
    model: int
    secondary_id: int = 0xFF  # 0xFF = none; a shadow follows its primary's writes and never answers for it
    table: bytearray = field(default_factory=lambda: bytearray(ct.TABLE_SIZE))
    position: float = float(ct.CENTER_COUNT)
    last_update: float = 0.0
    last_rx: float = 0.0

    def __post_init__(self) -> None:
        self.reboot()

    def reboot(self) -> None:
        t = self.table
        t[:] = bytes(ct.TABLE_SIZE)
        t[0:2] = self.model.to_bytes(2, "little")
        t[6] = FIRMWARE_VERSION
        t[ct.ID.address] = self.id
        t[ct.BAUD_RATE.address] = 3  # 1 Mbit/s
        t[ct.RETURN_DELAY_TIME.address] = 250  # factory default: 250 x 2 us
        t[ct.OPERATING_MODE.address] = ct.MODE_POSITION
        t[ct.SECONDARY_ID.address] = self.secondary_id
        t[ct.STATUS_RETURN_LEVEL.address] = 2
        self.put(ct.GOAL_POSITION, round(self.position))
        self.put(ct.PRESENT_POSITION, round(self.position))
        self.last_update = self.last_rx = time.monotonic()

    def get(self, reg: ct.Register) -> int:
        return ct.decode_value(reg, self.table[reg.address : reg.address + reg.size])

    def put(self, reg: ct.Register, value: int) -> None:
        self.table[reg.address : reg.address + reg.size] = ct.encode_value(reg, value)

    @property
    def torque(self) -> bool:
        return bool(self.table[ct.TORQUE_ENABLE.address])

    @property
    def watchdog_expired(self) -> bool:
        return self.get(ct.BUS_WATCHDOG) == -1

    def physical(self, addr: int) -> int:
        """Indirect Data n reads/writes the byte named by Indirect Address n (e-manual "Indirect Address")."""
        first = ct.INDIRECT_DATA_1.address
        if first <= addr < first + ct.INDIRECT_SLOTS:
            slot = ct.INDIRECT_ADDRESS_1.address + 2 * (addr - first)
            return int.from_bytes(self.table[slot : slot + 2], "little")
        return addr

    def step(self, now: float, max_speed: float) -> None:
        """Move present toward goal at no more than `max_speed` counts/s while torque is on."""
        dt, self.last_update = now - self.last_update, now
        goal = self.get(ct.GOAL_POSITION)
        err = goal - self.position
        if self.torque and not self.watchdog_expired:
            move = max(-max_speed * dt, min(max_speed * dt, err))
            self.position += move
            velocity = move / dt if dt > 0 else 0.0
        else:
            velocity = 0.0
        self.put(ct.PRESENT_POSITION, round(self.position))
        self.put(
            ct.PRESENT_VELOCITY, round(velocity / (0.229 * ct.COUNTS_PER_TURN / 60.0))
        )  # 0.229 rpm units
        self.put(ct.PRESENT_CURRENT, max(-1000, min(1000, round(err * 0.5))) if self.torque else 0)
        self.table[ct.MOVING.address] = int(abs(err) > 1 and self.torque)
        self.check_watchdog(now)

    def check_watchdog(self, now: float) -> None:
        period = self.get(ct.BUS_WATCHDOG)
        if period > 0 and self.torque and now - self.last_rx > period * ct.BUS_WATCHDOG_UNIT_S:
            self.expire_watchdog()

    def expire_watchdog(self) -> None:
        self.put(ct.BUS_WATCHDOG, -1)
        self.put(ct.GOAL_POSITION, round(self.position))  # stop where it is

    def alert(self, bits: int) -> None:
        """Hardware error: latch the bits and shut down (torque off) as the Shutdown register prescribes."""
        self.table[ct.HARDWARE_ERROR_STATUS.address] |= bits
        self.table[ct.TORQUE_ENABLE.address] = 0

    def write(self, addr: int, data: bytes) -> int:
        """Apply a write; returns the ERR code (0 = accepted)."""
        if addr + len(data) > ct.TABLE_SIZE:
            return ERR_LENGTH
        targets = [self.physical(a) for a in range(addr, addr + len(data))]
        for a in targets:
            if any(lo <= a < lo + n for lo, n in READ_ONLY) and not (
                ct.INDIRECT_ADDRESS_1.address <= a < ct.INDIRECT_DATA_1.address
            ):
                return ERR_ACCESS
            if self.torque and (a < ct.TORQUE_ENABLE.address or ct.INDIRECT_ADDRESS_1.address <= a < 224):
                return ERR_ACCESS  # EEPROM and indirect addresses are locked while torque is on
            goal = ct.GOAL_POSITION.address
            if self.watchdog_expired and goal <= a < goal + 4:
                return ERR_RANGE  # Goal values are read-only after a watchdog expiry
        if ct.TORQUE_ENABLE.address in targets and self.table[ct.HARDWARE_ERROR_STATUS.address]:
            return ERR_ACCESS  # only a reboot clears a hardware-error shutdown
        for a, value in zip(targets, data, strict=True):
            if a == ct.BUS_WATCHDOG.address and self.watchdog_expired and value not in (0,):
                return ERR_RANGE
            self.table[a] = value
        return 0

    def read(self, addr: int, length: int) -> bytes | None:
        if addr + length > ct.TABLE_SIZE:
            return None
        return bytes(self.table[self.physical(a)] for a in range(addr, addr + length))


class DynamixelChainEmulator:
    """Servos on one emulated RS-485 bus behind a pty. `start()` returns the port path for pyserial."""

    def __init__(
        self,
        servos: dict[int, int],
        shadows: dict[int, int] | None = None,
        *,
        max_speed_rad_s: float = 6.0,
        late_reply_s: float = 0.05,
        initial_positions: dict[int, float] | None = None,
    ) -> None:
        """servos: id -> model number; shadows: shadow id -> primary id."""
        self.servos: dict[int, EmulatedServo] = {}
        for motor_id, model in sorted(servos.items()):
            self.servos[motor_id] = EmulatedServo(motor_id, model)
        for shadow, primary in (shadows or {}).items():
            self.servos[shadow] = EmulatedServo(shadow, servos[primary], secondary_id=primary)
        for motor_id, counts in (initial_positions or {}).items():
            self.servos[motor_id].position = counts
            self.servos[motor_id].reboot()
        self.max_speed = max_speed_rad_s * ct.COUNTS_PER_RAD
        self.late_reply_s = late_reply_s
        self._faults: dict[tuple[Fault, int], int | None] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pty: PtyPair | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._parser = p.StreamParser()
        self.rx_bytes = 0
        self.rx_packets = 0
        self.tx_bytes = 0
        self.log: list[p.Packet] = []

    @classmethod
    def for_arm(cls, config: DynamixelArmConfig, **kwargs: object) -> DynamixelChainEmulator:
        """The servo chain a `DynamixelArmConfig` describes (shadows included)."""
        servos = {j.id: j.model for j in config.joints}
        shadows = {s: j.id for j in config.joints for s in j.shadows}
        return cls(servos, shadows, **kwargs)  # type: ignore[arg-type]

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> str:
        self._pty = PtyPair()
        self._thread = threading.Thread(target=self._serve, name="dxl-emulator", daemon=True)
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

    def __enter__(self) -> DynamixelChainEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settle(self, host_tx_bytes: int, timeout_s: float = 1.0) -> None:
        """Wait until the emulator has taken in `host_tx_bytes` bytes (what the host wrote so far)."""
        deadline = time.monotonic() + timeout_s
        while self.rx_bytes < host_tx_bytes and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.002)  # let the serving thread finish the packet it is handling

    # --- fault injection ---------------------------------------------------------------------------
    def inject(self, fault: Fault | str, motor_id: int, count: int | None = None) -> None:
        """Inject `fault` on `motor_id` for the next `count` replies (None = until cleared)."""
        fault = Fault(fault)
        with self._lock:
            servo = self.servos[motor_id]
            if fault is Fault.HARDWARE_ALERT:
                servo.alert(ct.HW_OVERLOAD)
            elif fault is Fault.WATCHDOG_EXPIRY:
                servo.expire_watchdog()
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
            ready, _, _ = select.select([fd], [], [], 0.005)
            if not ready:
                # Only an idle line can expire the watchdog: bytes already waiting arrived in time even when
                # this thread was not scheduled to read them.
                now = time.monotonic()
                with self._lock:
                    for servo in self.servos.values():
                        servo.check_watchdog(now)
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                time.sleep(0.005)  # the slave side is closed: the host has not opened the port yet
                continue
            self.rx_bytes += len(data)
            for packet in self._parser.feed(data):
                self.rx_packets += 1
                self.log.append(packet)
                for delay, frame in self._handle(packet):
                    if delay:  # a late reply must not block the other servos on the line
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
            try:
                return self._dispatch(pkt, now)
            except PacketError as err:
                log.debug("emulator: malformed instruction %s: %s", pkt, err)
                return []

    def _addressed(self, target: int, now: float) -> list[EmulatedServo]:
        """Servos that act on a packet for `target`: the servo itself and its shadows (Secondary ID)."""
        hit = [s for s in self.servos.values() if s.id == target or s.secondary_id == target]
        for servo in hit:
            servo.last_rx = now
            servo.step(now, self.max_speed)
        return hit

    def _dispatch(self, pkt: p.Packet, now: float) -> list[tuple[float, bytes]]:
        inst = pkt.instruction
        if inst == p.Instruction.SYNC_WRITE:
            addr, _length, data = p.parse_sync_write(pkt.params)
            for target, payload in data.items():
                for servo in self._addressed(target, now):
                    if not self._silent(servo.id):
                        servo.write(addr, payload)
            return []
        if inst == p.Instruction.SYNC_READ:
            addr, length, ids = p.parse_sync_read(pkt.params)
            out = []
            for target in ids:
                servo = self.servos.get(target)
                if servo is None:
                    continue
                self._addressed(target, now)
                data = servo.read(addr, length)
                out += self._reply(servo, ERR_LENGTH if data is None else 0, data or b"")
            return out
        if pkt.id == p.BROADCAST_ID and inst == p.Instruction.PING:
            out = []
            for servo in self.servos.values():
                out += self._reply(servo, 0, servo.table[0:2] + bytes([FIRMWARE_VERSION]))
            return out
        out = []
        for servo in self._addressed(pkt.id, now):
            err, params = self._single(servo, pkt)
            if servo.id == pkt.id and pkt.id != p.BROADCAST_ID:  # no status for secondary or broadcast IDs
                out += self._reply(servo, err, params)
        return out

    def _single(self, servo: EmulatedServo, pkt: p.Packet) -> tuple[int, bytes]:
        inst = pkt.instruction
        if inst == p.Instruction.PING:
            return 0, bytes(servo.table[0:2]) + bytes([FIRMWARE_VERSION])
        if inst == p.Instruction.READ:
            addr, length = p.parse_read(pkt.params)
            data = servo.read(addr, length)
            return (ERR_LENGTH, b"") if data is None else (0, data)
        if inst == p.Instruction.WRITE:
            if self._silent(servo.id):
                return 0, b""
            addr, data = p.parse_write(pkt.params)
            return servo.write(addr, data), b""
        if inst == p.Instruction.REBOOT:
            servo.reboot()
            return 0, b""
        return ERR_INSTRUCTION, b""

    def _silent(self, motor_id: int) -> bool:
        return (Fault.NO_REPLY, motor_id) in self._faults

    def _reply(self, servo: EmulatedServo, err: int, params: bytes) -> list[tuple[float, bytes]]:
        if servo.table[ct.HARDWARE_ERROR_STATUS.address]:
            err |= p.ERR_ALERT_BIT
        if self._take_fault(Fault.NO_REPLY, servo.id):
            return []
        frame = p.status(servo.id, err, params)
        if self._take_fault(Fault.BAD_CRC, servo.id):
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        delay = self.late_reply_s if self._take_fault(Fault.LATE_REPLY, servo.id) else 0.0
        return [(delay, frame)]
