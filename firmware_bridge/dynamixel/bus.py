"""A Dynamixel Protocol 2.0 motor bus over a serial transport: transactions with bounded retries.

Every instruction that has a status packet is a transaction: flush stale input, send, read the status
packet(s) before a deadline that does not move while bytes keep arriving, check CRC and the ERR byte.
Timeouts and CRC errors are retried `retries` times, then raised (`CommTimeoutError`, `CRCMismatchError`).
A non-zero ERR byte raises its named exception (errors.py); bit 7 (hardware alert) raises
`HardwareAlertError` unless the caller reads the alert itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel import protocol as p
from edgeact.firmware_bridge.errors import (
    STATUS_ERRORS,
    CommTimeoutError,
    CRCMismatchError,
    DynamixelStatusError,
    HardwareAlertError,
    PacketError,
)
from edgeact.firmware_bridge.transport import SerialTransport

log = logging.getLogger(__name__)

T = TypeVar("T")


def check_status(pkt: p.Packet, device: str, *, allow_alert: bool = False) -> None:
    """Raise the named exception for a status packet's ERR byte."""
    err = pkt.error or 0
    code = err & p.ERR_CODE_MASK
    if code:
        cls = STATUS_ERRORS.get(code, DynamixelStatusError)
        raise cls(f"servo {pkt.id} on {device} answered error {code} ({cls.__name__})", motor_id=pkt.id)
    if err & p.ERR_ALERT_BIT and not allow_alert:
        raise HardwareAlertError(f"servo {pkt.id} on {device} reports a hardware alert", motor_id=pkt.id)


class DynamixelBus:
    """Transactions on one serial line. Not thread-safe: call from the control thread only."""

    def __init__(self, transport: SerialTransport, *, timeout_s: float = 0.02, retries: int = 2) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.retried = 0  # transactions repeated after a timeout or CRC error (for the logs and benchmarks)
        self.alerts: list[int] = []  # ids whose last Sync Read status packet carried the hardware alert bit

    @property
    def device(self) -> str:
        return self.transport.port

    def open(self) -> None:
        self.transport.open()

    def close(self) -> None:
        self.transport.close()

    # --- low level ---------------------------------------------------------------------------------
    def _read_packet(self, deadline: float) -> p.Packet:
        """Read one packet, skipping garbage before its header.

        `deadline` holds whether or not bytes keep arriving: noise, or another device talking on the line,
        must not keep the caller waiting (issue 11). Raises CommTimeoutError once it passes."""
        tr = self.transport
        buf = b""
        while True:
            start = buf.find(p.HEADER)
            if start < 0:
                buf = buf[-3:]  # a header may be split across reads
            elif start:
                buf = buf[start:]
            if start == 0 and len(buf) >= p.PREFIX_SIZE:
                break
            if time.monotonic() >= deadline:
                raise CommTimeoutError(f"no complete status header on {self.device} before the deadline")
            buf += tr.read_exact(max(1, p.PREFIX_SIZE - len(buf)), deadline)
        total = p.frame_length(buf)
        if len(buf) < total:
            buf += tr.read_exact(total - len(buf), deadline)
        if len(buf) < total:
            raise CommTimeoutError(f"status packet on {self.device} cut short ({len(buf)}/{total} bytes)")
        return p.decode(buf[:total])

    def _expect(self, motor_id: int, deadline: float) -> p.Packet:
        """The next status packet from `motor_id` before `deadline`; packets from other IDs (stale replies,
        another device on the line) are skipped, but never past the deadline."""
        skipped = 0
        while True:
            try:
                if time.monotonic() >= deadline:
                    raise CommTimeoutError(f"{skipped} packet(s) from other ids before the deadline")
                pkt = self._read_packet(deadline)
            except CommTimeoutError as err:
                raise CommTimeoutError(f"servo {motor_id} on {self.device} did not answer: {err}") from err
            if pkt.is_status and pkt.id == motor_id:
                return pkt
            skipped += 1
            log.debug("skipping stale packet %s on %s while waiting for id %d", pkt, self.device, motor_id)

    def _drain(self) -> None:
        """After a timeout, swallow whatever arrives for one more timeout: a late reply to the timed-out
        instruction must not be taken for the answer to the retry (Protocol 2.0 has no sequence numbers)."""
        if self.retries:
            self.transport.read_exact(1 << 16, time.monotonic() + self.timeout_s)

    def _attempts(self, what: str) -> Iterable[int]:
        """Yield attempt numbers; the caller breaks on success. Logs retries."""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                log.warning("%s on %s: retry %d/%d", what, self.device, attempt, self.retries)
            yield attempt

    def _exchange(self, frame: bytes, what: str, replies: int, receive: Callable[[float], T]) -> T:
        """Flush stale input, send `frame` and return `receive(deadline)`, retrying timeouts (after a drain)
        and CRC/packet errors; the last one is raised once every attempt has failed.

        Each attempt has one deadline, `timeout_s` per expected status packet from the moment the frame
        went out, so a transaction ends within (retries + 1) x (replies + 1) x timeout_s whatever the line
        delivers."""
        last: Exception | None = None
        for _ in self._attempts(what):
            self.transport.reset_input()
            self.transport.write(frame)
            try:
                return receive(time.monotonic() + replies * self.timeout_s)
            except CommTimeoutError as err:
                last = err
                self._drain()
            except (CRCMismatchError, PacketError) as err:
                last = err
        assert last is not None
        raise type(last)(f"{last} (after {self.retries + 1} attempts)") from last

    def transact(self, frame: bytes, motor_id: int, *, allow_alert: bool = False) -> p.Packet:
        """Send one instruction and return its checked status packet (retrying timeouts and CRC errors)."""
        pkt = self._exchange(
            frame, f"instruction to servo {motor_id}", 1, lambda deadline: self._expect(motor_id, deadline)
        )
        check_status(pkt, self.device, allow_alert=allow_alert)
        return pkt

    # --- instructions ------------------------------------------------------------------------------
    def ping(self, motor_id: int) -> tuple[int, int]:
        """(model number, firmware version) of one servo."""
        pkt = self.transact(p.ping(motor_id), motor_id, allow_alert=True)
        if len(pkt.params) != 3:
            raise PacketError(
                f"ping reply from servo {motor_id} on {self.device} has {len(pkt.params)} bytes"
            )
        return int.from_bytes(pkt.params[:2], "little"), pkt.params[2]

    def read(self, motor_id: int, address: int, length: int, *, allow_alert: bool = False) -> bytes:
        pkt = self.transact(p.read(motor_id, address, length), motor_id, allow_alert=allow_alert)
        if len(pkt.params) != length:
            raise PacketError(
                f"servo {motor_id} on {self.device} returned {len(pkt.params)} bytes for a {length}-byte read"
            )
        return pkt.params

    def write(self, motor_id: int, address: int, data: bytes) -> None:
        self.transact(p.write(motor_id, address, data), motor_id)

    def read_register(self, motor_id: int, reg: ct.Register, *, allow_alert: bool = False) -> int:
        return ct.decode_value(reg, self.read(motor_id, reg.address, reg.size, allow_alert=allow_alert))

    def write_register(self, motor_id: int, reg: ct.Register, value: int) -> None:
        self.write(motor_id, reg.address, ct.encode_value(reg, value))

    def reboot(self, motor_id: int) -> None:
        self.transact(p.reboot(motor_id), motor_id, allow_alert=True)

    def sync_write(self, address: int, length: int, data: dict[int, bytes]) -> None:
        """One Sync Write packet (no status packets come back)."""
        self.transport.write(p.sync_write(address, length, data))

    def sync_read(
        self, address: int, length: int, ids: list[int] | tuple[int, ...], *, allow_alert: bool = False
    ) -> dict[int, bytes]:
        """One Sync Read: `length` bytes at `address` from every id (each answers in id order).

        All answers are read before any error is raised, so the line stays in step. Hardware alerts raise
        `HardwareAlertError` naming the first alerting id once the data of every servo has arrived, unless
        `allow_alert` (the caller decodes Hardware Error Status itself); `alerts` then lists the ids whose
        status packet had the alert bit.
        """
        frame = p.sync_read(address, length, ids)
        packets = self._exchange(
            frame,
            f"sync read of {list(ids)}",
            len(ids),
            lambda deadline: [self._expect(i, deadline) for i in ids],
        )
        for pkt in packets:
            check_status(pkt, self.device, allow_alert=True)
            if len(pkt.params) != length:
                raise PacketError(f"servo {pkt.id} on {self.device} sent {len(pkt.params)}/{length} bytes")
        alerts = [pkt.id for pkt in packets if (pkt.error or 0) & p.ERR_ALERT_BIT]
        self.alerts = alerts
        if alerts and not allow_alert:
            raise HardwareAlertError(
                f"servo(s) {alerts} on {self.device} report a hardware alert", motor_id=alerts[0]
            )
        return {pkt.id: pkt.params for pkt in packets}

    # --- helpers for the common settings -----------------------------------------------------------
    def sync_write_register(self, reg: ct.Register, values: dict[int, int]) -> None:
        self.sync_write(reg.address, reg.size, {i: ct.encode_value(reg, v) for i, v in values.items()})

    def set_torque(self, ids: Iterable[int], on: bool) -> None:
        for motor_id in ids:
            self.write_register(motor_id, ct.TORQUE_ENABLE, int(on))

    def ensure_register(self, motor_id: int, reg: ct.Register, value: int) -> bool:
        """Write `value` only when the servo holds another one (EEPROM items wear out); True if written."""
        if self.read_register(motor_id, reg) == value:
            return False
        self.write_register(motor_id, reg, value)
        return True

    def set_operating_mode(self, ids: Iterable[int], mode: int) -> None:
        """Operating Mode is EEPROM: written only where it differs."""
        for motor_id in ids:
            self.ensure_register(motor_id, ct.OPERATING_MODE, mode)

    def set_profile(self, ids: Iterable[int], velocity: int, acceleration: int) -> None:
        for motor_id in ids:
            self.write_register(motor_id, ct.PROFILE_VELOCITY, velocity)
            self.write_register(motor_id, ct.PROFILE_ACCELERATION, acceleration)

    def set_bus_watchdog(self, ids: Iterable[int], period_s: float) -> None:
        """Arm (period > 0) or clear (0) the Bus Watchdog; units of 20 ms, 1..127."""
        units = round(period_s / ct.BUS_WATCHDOG_UNIT_S)
        if period_s and not 1 <= units <= 127:
            raise ValueError(f"bus watchdog period {period_s} s is outside 0.02..2.54 s")
        for motor_id in ids:
            self.write_register(motor_id, ct.BUS_WATCHDOG, units)
