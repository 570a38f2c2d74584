"""Dynamixel Protocol 2.0 packet encoder and decoder (ROBOTIS e-manual, "Protocol 2.0").

Wire layout of every packet (instruction and status):

    FF FF FD 00 | ID | LEN_L LEN_H | INST | [ERR] | params... | CRC_L CRC_H

LEN counts INST, ERR (status only), the stuffed params and the two CRC bytes.
Byte stuffing: inside INST..params every `FF FF FD` is followed by an extra `FD`; LEN and CRC are computed
after stuffing. CRC-16 is CRC-16/BUYPASS (polynomial 0x8005, init 0, not reflected, no final XOR)
over the whole packet from the first header byte.

This module is pure bytes, no I/O. `encode`/`decode` are exact inverses (hypothesis and golden vector tests).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from edgeact.firmware_bridge.errors import CRCMismatchError, PacketError

HEADER = b"\xff\xff\xfd\x00"
STUFF_PATTERN = b"\xff\xff\xfd"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC  # 253 (0xFD) is reserved, 254 (0xFE) is broadcast
# ID(1) LEN(2) following the 4-byte header: the fixed prefix we must read before knowing the packet size.
PREFIX = struct.Struct("<4sBH")  # header, id, length
PREFIX_SIZE = PREFIX.size  # 7
CRC = struct.Struct("<H")  # low byte first
ADDR_LEN = struct.Struct("<HH")  # address(2) length(2): read, sync read, sync write


class Instruction(IntEnum):
    """Instruction codes (e-manual, Protocol 2.0 "Instruction Packet")."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    FAST_SYNC_READ = 0x8A
    BULK_READ = 0x92
    BULK_WRITE = 0x93


# Status ERR byte (e-manual, Protocol 2.0 "Status Packet"): bit 7 = hardware alert, bits 0-6 = error number.
ERR_ALERT_BIT = 0x80
ERR_CODE_MASK = 0x7F


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16/BUYPASS as used by Protocol 2.0; `crc16(b"123456789") == 0xFEE8`."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def stuff(body: bytes) -> bytes:
    """Insert `FD` after every `FF FF FD` run of INST..params."""
    if STUFF_PATTERN not in body:
        return bytes(body)
    return body.replace(STUFF_PATTERN, STUFF_PATTERN + b"\xfd")


def unstuff(body: bytes) -> bytes:
    """Inverse of `stuff`: `FF FF FD FD` -> `FF FF FD`."""
    if STUFF_PATTERN not in body:
        return bytes(body)
    return body.replace(STUFF_PATTERN + b"\xfd", STUFF_PATTERN)


@dataclass(frozen=True)
class Packet:
    """One decoded packet. `error` is None for instruction packets and the ERR byte for status packets."""

    id: int
    instruction: int
    params: bytes = b""
    error: int | None = None

    @property
    def is_status(self) -> bool:
        return self.instruction == Instruction.STATUS


def encode(packet: Packet) -> bytes:
    """Serialize a packet to wire bytes (stuffing, LEN and CRC included)."""
    if not 0 <= packet.id <= BROADCAST_ID:
        raise PacketError(f"packet id {packet.id} outside 0..{BROADCAST_ID}")
    if packet.is_status != (packet.error is not None):
        raise PacketError("status packets (0x55) carry an error byte and instruction packets do not")
    body = bytes([packet.instruction])
    if packet.error is not None:
        body += bytes([packet.error & 0xFF])
    body = stuff(body + bytes(packet.params))
    head = PREFIX.pack(HEADER, packet.id, len(body) + 2)
    frame = head + body
    return frame + CRC.pack(crc16(frame))


def frame_length(prefix: bytes) -> int:
    """Total wire length of a packet given its first 7 bytes; raises PacketError on a bad header."""
    header, _id, length = PREFIX.unpack(prefix[:PREFIX_SIZE])
    if header != HEADER:
        raise PacketError(f"bad Dynamixel header {header.hex(' ')}")
    if length < 3:
        raise PacketError(f"Dynamixel LEN {length} < 3")
    return PREFIX_SIZE + length


def decode(frame: bytes) -> Packet:
    """Parse exactly one complete packet; raises CRCMismatchError or PacketError."""
    if len(frame) < PREFIX_SIZE + 3:
        raise PacketError(f"Dynamixel packet too short ({len(frame)} bytes)")
    total = frame_length(frame)
    if total != len(frame):
        raise PacketError(f"Dynamixel LEN says {total} bytes, got {len(frame)}")
    (expected,) = CRC.unpack_from(frame, total - 2)
    actual = crc16(frame[: total - 2])
    if expected != actual:
        raise CRCMismatchError(
            f"CRC mismatch for id {frame[4]}: packet says {expected:#06x}, bytes give {actual:#06x}"
        )
    body = unstuff(frame[PREFIX_SIZE : total - 2])
    inst = body[0]
    if inst == Instruction.STATUS:
        if len(body) < 2:
            raise PacketError(f"status packet from id {frame[4]} lacks its error byte")
        return Packet(frame[4], inst, bytes(body[2:]), body[1])
    return Packet(frame[4], inst, bytes(body[1:]))


class StreamParser:
    """Incremental parser for a byte stream: `feed(data)` returns complete packets; resynchronizes on garbage.

    Used by the emulator (instruction side). Corrupt packets are counted in `crc_errors`/`dropped`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.crc_errors = 0
        self.dropped = 0

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                # keep a possible partial header at the end
                keep = 3 if len(self._buf) >= 3 else len(self._buf)
                self.dropped += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                return out
            if start:
                self.dropped += start
                del self._buf[:start]
            if len(self._buf) < PREFIX_SIZE:
                return out
            try:
                total = frame_length(self._buf)
            except PacketError:
                del self._buf[:1]
                self.dropped += 1
                continue
            if len(self._buf) < total:
                return out
            frame = bytes(self._buf[:total])
            try:
                out.append(decode(frame))
                del self._buf[:total]
            except CRCMismatchError:
                self.crc_errors += 1
                del self._buf[:1]
            except PacketError:
                self.dropped += 1
                del self._buf[:1]


# --- Instruction builders (e-manual, Protocol 2.0 "Instruction Details") ------------------------------------


def ping(motor_id: int) -> bytes:
    return encode(Packet(motor_id, Instruction.PING))


def read(motor_id: int, address: int, length: int) -> bytes:
    return encode(Packet(motor_id, Instruction.READ, ADDR_LEN.pack(address, length)))


def write(motor_id: int, address: int, data: bytes) -> bytes:
    return encode(Packet(motor_id, Instruction.WRITE, struct.pack("<H", address) + bytes(data)))


def reboot(motor_id: int) -> bytes:
    return encode(Packet(motor_id, Instruction.REBOOT))


def sync_read(address: int, length: int, ids: list[int] | tuple[int, ...]) -> bytes:
    return encode(Packet(BROADCAST_ID, Instruction.SYNC_READ, ADDR_LEN.pack(address, length) + bytes(ids)))


def sync_write(address: int, length: int, data: dict[int, bytes]) -> bytes:
    """One packet writing `length` bytes at `address` of every servo in `data` (ID -> bytes)."""
    parts = [ADDR_LEN.pack(address, length)]
    for motor_id, payload in data.items():
        if len(payload) != length:
            raise PacketError(f"sync write to id {motor_id}: {len(payload)} bytes, expected {length}")
        parts.append(bytes([motor_id]) + bytes(payload))
    return encode(Packet(BROADCAST_ID, Instruction.SYNC_WRITE, b"".join(parts)))


def status(motor_id: int, error: int = 0, params: bytes = b"") -> bytes:
    return encode(Packet(motor_id, Instruction.STATUS, bytes(params), error))


# --- Parameter decoders: the inverse of each builder's params (used by the emulator and the tests) ----------


def parse_read(params: bytes) -> tuple[int, int]:
    """(address, length) of a Read or Sync Read head."""
    if len(params) < ADDR_LEN.size:
        raise PacketError(f"read params too short ({len(params)} bytes)")
    return ADDR_LEN.unpack_from(params)


def parse_write(params: bytes) -> tuple[int, bytes]:
    if len(params) < 3:
        raise PacketError(f"write params too short ({len(params)} bytes)")
    return struct.unpack_from("<H", params)[0], bytes(params[2:])


def parse_sync_read(params: bytes) -> tuple[int, int, list[int]]:
    address, length = parse_read(params)
    return address, length, list(params[ADDR_LEN.size :])


def parse_sync_write(params: bytes) -> tuple[int, int, dict[int, bytes]]:
    address, length = parse_read(params)
    rest = params[ADDR_LEN.size :]
    if length == 0 or len(rest) % (length + 1):
        raise PacketError(f"sync write data of {len(rest)} bytes is not a multiple of 1+{length}")
    data = {rest[i]: bytes(rest[i + 1 : i + 1 + length]) for i in range(0, len(rest), length + 1)}
    return address, length, data
