"""A Dynamixel Protocol 2.0 servo chain emulated byte for byte behind a pseudo-terminal (simulation only).

The emulator owns the pty master; the bus under test opens the slave path with pyserial like a U2D2 port.
Each servo has a 256-byte control table (X-series addresses, per-model meaning of address 126), Secondary-ID
shadows, indirect addressing, goal -> present dynamics limited by a maximum speed, and, as the ROBOTIS
e-manual describes them:

- Goal Position(116): in Position Control Mode only Min Position Limit(52)..Max Position Limit(48) is taken
  (Data Limit Error 0x06 otherwise; a Sync Write has no status packet, so there the write is silently
  dropped and recorded in `EmulatedServo.ignored`); the limits themselves take 0..4095 (Data Range Error);
- Bus Watchdog(98), units of 20 ms, watched while torque is on: on expiry the servo stops, Profile
  Velocity/Acceleration become 0, 98 reads -1 and every Goal value is read-only (Data Range Error) until 98
  is written 0;
- EEPROM (addresses below 64) survives a reboot and is locked while torque is on; `eeprom_writes` counts
  the accepted writes that touched it;
- hardware-error shutdown (torque off, alert bit 7 in every status packet until reboot).

Fault injection: `inject(fault, id)` with bad_crc, no_reply, late_reply, hardware_alert (with the Hardware
Error Status bits to latch), watchdog_expiry; `babble(kind)` makes another device talk on the line without
pause (noise, or status packets from an id that is not on the chain).

Counters (`rx_bytes`, `rx_packets`) let tests prove that nothing reaches the wire after a safe stop.
"""

from __future__ import annotations

import logging
import os
import random
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
ERR_INSTRUCTION, ERR_RANGE, ERR_LENGTH, ERR_LIMIT, ERR_ACCESS = 0x02, 0x04, 0x05, 0x06, 0x07
EEPROM_END = ct.TORQUE_ENABLE.address  # 0..63
GOAL_VALUES = (ct.Register(100, 2, True), ct.GOAL_CURRENT, ct.Register(104, 4, True), ct.GOAL_POSITION)
BABBLE_ID = 200  # the other device of `babble("status")`: not a servo of any chain here
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
    external_effort: int | None = None  # address 126 as a test sets it (None: from the position error)
    eeprom_writes: int = 0  # accepted writes that touched the EEPROM area
    watchdog_expiries: int = 0
    ignored: list[tuple[int, int, int]] = field(default_factory=list)  # Sync Write (addr, value, ERR) dropped

    def __post_init__(self) -> None:
        t = self.table  # factory settings of the EEPROM area (e-manual "Control Table of EEPROM Area")
        t[0:2] = self.model.to_bytes(2, "little")
        t[6] = FIRMWARE_VERSION
        t[ct.ID.address] = self.id
        t[ct.BAUD_RATE.address] = 3  # 1 Mbit/s
        t[ct.RETURN_DELAY_TIME.address] = 250  # factory default: 250 x 2 us
        t[ct.OPERATING_MODE.address] = ct.MODE_POSITION
        t[ct.SECONDARY_ID.address] = self.secondary_id
        self.put(ct.MAX_POSITION_LIMIT, ct.POSITION_LIMIT_RANGE[1])
        self.put(ct.MIN_POSITION_LIMIT, ct.POSITION_LIMIT_RANGE[0])
        self.reboot()

    def reboot(self) -> None:
        """The RAM area back to its initial values; EEPROM is non-volatile and keeps what was written."""
        t = self.table
        t[EEPROM_END:] = bytes(ct.TABLE_SIZE - EEPROM_END)
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
        effort = max(-1000, min(1000, round(err * 0.5))) if self.torque else 0
        # address 126: Present Current (XM430, 2.69 mA) or Present Load (XL430, 0.1 %), e-manual per model
        self.put(ct.PRESENT_CURRENT, effort if self.external_effort is None else self.external_effort)
        self.table[ct.MOVING.address] = int(abs(err) > 1 and self.torque)
        self.check_watchdog(now)

    def check_watchdog(self, now: float) -> None:
        period = self.get(ct.BUS_WATCHDOG)
        if period > 0 and self.torque and now - self.last_rx > period * ct.BUS_WATCHDOG_UNIT_S:
            self.expire_watchdog()

    def expire_watchdog(self) -> None:
        """e-manual "Bus Watchdog(98)": the servo stops (Profile Velocity/Acceleration applied as 0), 98 reads
        -1 and the Goal values turn read-only until 98 is written 0."""
        self.put(ct.BUS_WATCHDOG, -1)
        self.put(ct.GOAL_POSITION, round(self.position))  # stop where it is
        self.put(ct.PROFILE_VELOCITY, 0)
        self.put(ct.PROFILE_ACCELERATION, 0)
        self.watchdog_expiries += 1

    def alert(self, bits: int) -> None:
        """Hardware error: latch the bits and shut down (torque off) as the Shutdown register prescribes."""
        self.table[ct.HARDWARE_ERROR_STATUS.address] |= bits
        self.table[ct.TORQUE_ENABLE.address] = 0

    def write(self, addr: int, data: bytes) -> int:
        """Apply a write; returns the ERR code (0 = accepted, nothing is changed otherwise)."""
        if addr + len(data) > ct.TABLE_SIZE:
            return ERR_LENGTH
        targets = [self.physical(a) for a in range(addr, addr + len(data))]
        for a in targets:
            if any(lo <= a < lo + n for lo, n in READ_ONLY) and not (
                ct.INDIRECT_ADDRESS_1.address <= a < ct.INDIRECT_DATA_1.address
            ):
                return ERR_ACCESS
            if self.torque and (a < EEPROM_END or ct.INDIRECT_ADDRESS_1.address <= a < 224):
                return ERR_ACCESS  # EEPROM and indirect addresses are locked while torque is on
        if ct.TORQUE_ENABLE.address in targets and self.table[ct.HARDWARE_ERROR_STATUS.address]:
            return ERR_ACCESS  # only a reboot clears a hardware-error shutdown
        staged = bytearray(self.table)
        for a, value in zip(targets, data, strict=True):
            staged[a] = value
        err = self._check_values(staged, set(targets))
        if err:
            return err
        self.table[:] = staged
        if min(targets) < EEPROM_END:
            self.eeprom_writes += 1
        return 0

    def _check_values(self, staged: bytearray, touched: set[int]) -> int:
        """The value ranges of the e-manual for the registers a write touches (0 = all fine)."""

        def new(reg: ct.Register) -> int | None:
            if touched.isdisjoint(range(reg.address, reg.address + reg.size)):
                return None
            return ct.decode_value(reg, bytes(staged[reg.address : reg.address + reg.size]))

        if self.watchdog_expired and any(new(reg) is not None for reg in GOAL_VALUES):
            return ERR_RANGE  # Goal values are read-only after a watchdog expiry ("Bus Watchdog(98)")
        watchdog = new(ct.BUS_WATCHDOG)
        if watchdog is not None and not (0 <= watchdog <= 127):
            return ERR_RANGE  # 0 clears, 1..127 arms; -1 is only ever set by the servo
        lo, hi = ct.POSITION_LIMIT_RANGE
        for reg in (ct.MAX_POSITION_LIMIT, ct.MIN_POSITION_LIMIT):
            value = new(reg)
            if value is not None and not lo <= value <= hi:
                return ERR_RANGE
        goal = new(ct.GOAL_POSITION)
        mode = staged[ct.OPERATING_MODE.address]
        if goal is not None and mode == ct.MODE_POSITION:
            low = ct.decode_value(ct.MIN_POSITION_LIMIT, bytes(staged[52:56]))
            high = ct.decode_value(ct.MAX_POSITION_LIMIT, bytes(staged[48:52]))
            if not low <= goal <= high:
                return ERR_LIMIT  # "Goal Position(116)": Min Position Limit(52) ~ Max Position Limit(48)
        elif goal is not None and mode in ct.POSITION_MODES:
            first, last = ct.EXTENDED_POSITION_RANGE
            if not first <= goal <= last:
                return ERR_RANGE
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
        self.babbled_bytes = 0
        self.log: list[p.Packet] = []
        self._babbler: threading.Thread | None = None
        self._babble_stop = threading.Event()

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
        self.stop_babble()
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
    def inject(
        self, fault: Fault | str, motor_id: int, count: int | None = None, *, bits: int = ct.HW_OVERLOAD
    ) -> None:
        """Inject `fault` on `motor_id` for the next `count` replies (None = until cleared); a hardware
        alert latches `bits` in Hardware Error Status (70)."""
        fault = Fault(fault)
        with self._lock:
            servo = self.servos[motor_id]
            if fault is Fault.HARDWARE_ALERT:
                servo.alert(bits)
            elif fault is Fault.WATCHDOG_EXPIRY:
                servo.expire_watchdog()
            else:
                self._faults[(fault, motor_id)] = count

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def babble(self, kind: str = "status") -> None:
        """Another device talks on the line without pause until `stop_babble()`: `"status"` sends status
        packets from id BABBLE_ID (a device answering someone else), `"noise"` sends random bytes. The line
        never goes quiet: whenever the pty has room, more bytes go in (a host reading a 1 Mbit/s line a few
        bytes at a time finds the next ones already there)."""
        if kind not in ("status", "noise"):
            raise ValueError(f"babble kind must be 'status' or 'noise', got {kind!r}")
        self.stop_babble()
        self._babble_stop.clear()
        self._babbler = threading.Thread(target=self._babble, args=(kind,), name="dxl-babbler", daemon=True)
        self._babbler.start()

    def stop_babble(self) -> None:
        self._babble_stop.set()
        if self._babbler is not None:
            self._babbler.join(timeout=2.0)
            self._babbler = None

    def _babble(self, kind: str) -> None:
        rng = random.Random(11)
        frame = p.status(BABBLE_ID, 0, bytes(range(8)))
        chunk = 512
        while not self._babble_stop.wait(0.0002) and self._pty is not None:
            if kind == "status":
                data = frame * (chunk // len(frame))
            else:
                data = bytes(rng.randrange(0xFF) for _ in range(chunk))  # no FF: never a header
            fd = self._pty.master
            if select.select([], [fd], [], 0.01)[1]:  # room in the pty: never block the servos' replies
                self._send(fd, data)
                self.babbled_bytes += len(data)

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
                        err = servo.write(addr, payload)
                        if err:  # no status packet for a Sync Write: the servo drops it without a word
                            servo.ignored.append((addr, int.from_bytes(payload, "little", signed=True), err))
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
