"""A Feetech SCS-protocol motor bus (STS3215) over a serial transport: transactions with bounded retries.

Every instruction that has a response is a transaction: flush stale input, send, read the response(s)
before a deadline that does not move while bytes keep arriving (noise, or another device on the line, cannot
keep the caller waiting), check the checksum and the status bits. Timeouts and checksum errors are retried
`retries` times and then raised (`CommTimeoutError`, `ChecksumMismatchError`); after a timeout the bus
swallows whatever arrives for one more timeout, so that a late response to the timed-out instruction is not
taken for the answer to the retry (the protocol has no sequence numbers). A transaction therefore ends within
(retries + 1) x (replies + 1) x timeout_s.

Non-zero status bits raise their named exception (errors.py: `FeetechOverloadError`, ...) unless the caller
reads them itself (`allow_status`, as the arm's per-tick Sync Read does). The servos answer every
instruction addressed to their own id while Response Status Level (8) is 1, the factory setting, and read
and ping only when it is 0; `writes_reply` follows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from edgeact.firmware_bridge.errors import (
    FEETECH_STATUS_ERRORS,
    CommTimeoutError,
    FeetechStatusError,
    PacketError,
)
from edgeact.firmware_bridge.feetech import control_table as ct
from edgeact.firmware_bridge.feetech import protocol as p
from edgeact.firmware_bridge.transport import SerialTransport

log = logging.getLogger(__name__)

T = TypeVar("T")


def status_error(
    motor_id: int, bits: int, device: str, joint: str | None = None, what: str = ""
) -> FeetechStatusError:
    """The named exception for a servo's status bits (the lowest set bit picks the class; all are named)."""
    cls = next((c for bit, c in FEETECH_STATUS_ERRORS.items() if bits & bit), FeetechStatusError)
    where = f"servo {motor_id}" + (f" ({joint})" if joint else "") + f" on {device}"
    msg = f"{where} reports {ct.status_text(bits)}{what}"
    return cls(msg, motor_id=motor_id, bits=bits, joint=joint)


class FeetechBus:
    """Transactions on one serial line. Not thread-safe: call from the control thread only."""

    def __init__(
        self,
        transport: SerialTransport,
        *,
        timeout_s: float = 0.02,
        retries: int = 2,
        writes_reply: bool = True,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.writes_reply = writes_reply
        self.retried = 0  # transactions repeated after a timeout or checksum error
        self.names: dict[int, str] = {}  # servo id -> joint name, for the messages

    @property
    def device(self) -> str:
        return self.transport.port

    def open(self) -> None:
        self.transport.open()

    def close(self) -> None:
        self.transport.close()

    def _where(self, motor_id: int) -> str:
        name = self.names.get(motor_id)
        return f"servo {motor_id}" + (f" ({name})" if name else "") + f" on {self.device}"

    # --- low level ---------------------------------------------------------------------------------
    def _read_packet(self, deadline: float) -> p.Packet:
        """Read one response, skipping garbage before its header; the deadline holds whatever arrives."""
        tr = self.transport
        buf = b""
        while True:
            start = buf.find(p.HEADER)
            if start < 0:
                buf = buf[-1:] if buf.endswith(b"\xff") else b""
            elif start:
                buf = buf[start:]
            if start == 0 and len(buf) >= p.PREFIX_SIZE:
                if buf[2] != 0xFF:
                    break
                buf = buf[1:]  # FF FF FF: the packet starts one byte later
                continue
            if time.monotonic() >= deadline:
                raise CommTimeoutError(f"no complete response header on {self.device} before the deadline")
            buf += tr.read_exact(max(1, p.PREFIX_SIZE - len(buf)), deadline)
        total = p.frame_length(buf)
        if len(buf) < total:
            buf += tr.read_exact(total - len(buf), deadline)
        if len(buf) < total:
            raise CommTimeoutError(f"response on {self.device} cut short ({len(buf)}/{total} bytes)")
        return p.decode(buf[:total], status=True)

    def _expect(self, motor_id: int, deadline: float) -> p.Packet:
        """The next response from `motor_id` before `deadline`; responses of other ids are skipped, but
        never past the deadline."""
        skipped = 0
        while True:
            try:
                if time.monotonic() >= deadline:
                    raise CommTimeoutError(f"{skipped} packet(s) from other ids before the deadline")
                pkt = self._read_packet(deadline)
            except CommTimeoutError as err:
                raise CommTimeoutError(f"{self._where(motor_id)} did not answer: {err}") from err
            if pkt.id == motor_id:
                return pkt
            skipped += 1
            log.debug("skipping packet %s on %s while waiting for id %d", pkt, self.device, motor_id)

    def _drain(self) -> None:
        if self.retries:
            self.transport.read_exact(1 << 16, time.monotonic() + self.timeout_s)

    def _exchange(self, frame: bytes, what: str, replies: int, receive: Callable[[float], T]) -> T:
        """Send `frame` and return `receive(deadline)`, retrying timeouts (after a drain) and checksum or
        packet errors; the last error is raised once every attempt has failed."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                log.warning("%s on %s: retry %d/%d (%s)", what, self.device, attempt, self.retries, last)
            self.transport.reset_input()
            self.transport.write(frame)
            try:
                return receive(time.monotonic() + replies * self.timeout_s)
            except CommTimeoutError as err:
                last = err
                self._drain()
            except PacketError as err:  # ChecksumMismatchError included
                last = err
        assert last is not None
        raise type(last)(f"{last} (after {self.retries + 1} attempts)") from last

    def transact(self, frame: bytes, motor_id: int, *, allow_status: bool = False) -> p.Packet:
        pkt = self._exchange(
            frame, f"instruction to servo {motor_id}", 1, lambda deadline: self._expect(motor_id, deadline)
        )
        if pkt.error and not allow_status:
            raise status_error(motor_id, pkt.error, self.device, self.names.get(motor_id))
        return pkt

    # --- instructions ------------------------------------------------------------------------------
    def ping(self, motor_id: int) -> int:
        """The servo's status bits (its response to PING carries no data)."""
        return self.transact(p.ping(motor_id), motor_id, allow_status=True).error or 0

    def read(self, motor_id: int, address: int, length: int, *, allow_status: bool = False) -> bytes:
        """`length` bytes at `address`. A response of another length (a late answer to an earlier
        instruction of this id: the protocol has no sequence numbers) is a packet error, and retried."""

        def receive(deadline: float) -> p.Packet:
            pkt = self._expect(motor_id, deadline)
            if len(pkt.params) != length:
                raise PacketError(
                    f"{self._where(motor_id)} returned {len(pkt.params)} bytes for a {length}-byte read "
                    f"at address {address}"
                )
            return pkt

        pkt = self._exchange(p.read(motor_id, address, length), f"read of servo {motor_id}", 1, receive)
        if pkt.error and not allow_status:
            raise status_error(motor_id, pkt.error, self.device, self.names.get(motor_id))
        return pkt.params

    def write(self, motor_id: int, address: int, data: bytes) -> None:
        frame = p.write(motor_id, address, data)
        if self.writes_reply and motor_id != p.BROADCAST_ID:
            self.transact(frame, motor_id)
        else:
            self.transport.write(frame)

    def read_register(self, motor_id: int, reg: ct.Register, *, allow_status: bool = False) -> int:
        return ct.decode_value(reg, self.read(motor_id, reg.address, reg.size, allow_status=allow_status))

    def write_register(self, motor_id: int, reg: ct.Register, value: int) -> None:
        self.write(motor_id, reg.address, ct.encode_value(reg, value))

    def reg_write(self, motor_id: int, address: int, data: bytes) -> None:
        frame = p.reg_write(motor_id, address, data)
        if self.writes_reply and motor_id != p.BROADCAST_ID:
            self.transact(frame, motor_id)
        else:
            self.transport.write(frame)

    def action(self) -> None:
        """Broadcast ACTION: every servo applies its pending REG WRITE (no responses)."""
        self.transport.write(p.action())

    def sync_write(self, address: int, length: int, data: dict[int, bytes]) -> None:
        """One Sync Write packet (no responses come back)."""
        self.transport.write(p.sync_write(address, length, data))

    def sync_write_register(self, reg: ct.Register, values: dict[int, int]) -> None:
        self.sync_write(reg.address, reg.size, {i: ct.encode_value(reg, v) for i, v in values.items()})

    def sync_read(
        self, address: int, length: int, ids: list[int] | tuple[int, ...], *, allow_status: bool = False
    ) -> tuple[dict[int, bytes], dict[int, int]]:
        """One Sync Read: (data per id, status bits per id). Every response is read before any error is
        raised so that the line stays in step; non-zero status bits then raise for the first such servo
        unless `allow_status`."""
        packets = self._exchange(
            p.sync_read(address, length, ids),
            f"sync read of {list(ids)}",
            len(ids),
            lambda deadline: [self._expect(i, deadline) for i in ids],
        )
        for pkt in packets:
            if len(pkt.params) != length:
                raise PacketError(
                    f"{self._where(pkt.id)} sent {len(pkt.params)}/{length} bytes of a sync read at {address}"
                )
        bits = {pkt.id: pkt.error or 0 for pkt in packets}
        bad = [i for i, b in bits.items() if b]
        if bad and not allow_status:
            raise status_error(bad[0], bits[bad[0]], self.device, self.names.get(bad[0]))
        return {pkt.id: pkt.params for pkt in packets}, bits

    # --- settings ----------------------------------------------------------------------------------
    def set_torque(self, ids: Iterable[int], on: bool) -> None:
        for motor_id in ids:
            self.write_register(motor_id, ct.TORQUE_ENABLE, int(on))

    def ensure_register(self, motor_id: int, reg: ct.Register, value: int) -> bool:
        """Write `value` only where the servo holds another one (EEPROM wears); True if written."""
        if self.read_register(motor_id, reg, allow_status=True) == value:
            return False
        self.write_register(motor_id, reg, value)
        return True
