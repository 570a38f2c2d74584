"""Feetech SCS protocol packet encoder and decoder (STS/SMS/SCS series; the SO-100/SO-101's STS3215).

Wire layout (Feetech "Communication Protocol User Manual", 1.1 Instruction Package, 1.2 Response Package):

    FF FF | ID | LEN | INST or ERR | params... | CHK

LEN = number of params + 2. CHK = ~(ID + LEN + INST/ERR + params) & 0xFF (the low byte of the sum, inverted).
Instruction and response packets share the layout: a response carries the servo's status bits where an
instruction carries its code, so the decoder must be told which one it reads. ID 0..253, 254 (0xFE) is
broadcast. There is no byte stuffing: a parser finds the next `FF FF` and trusts LEN and CHK.

Multi-byte values in params are little-endian on the magnetic-encoder series (STS/SMS) and big-endian on the
potentiometer series (SCS) (manual 1.0, "Byte Order"); this module only carries bytes, `control_table`
encodes values. Pure bytes, no I/O; `encode`/`decode` are exact inverses (golden vectors of the manual and
hypothesis round trips in tests/firmware_bridge/feetech/test_ft_protocol.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from edgeact.firmware_bridge.errors import ChecksumMismatchError, PacketError

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFD  # manual 1.1: ID 0..253
PREFIX = struct.Struct("<2sBB")  # header, id, length
PREFIX_SIZE = PREFIX.size  # 4
ADDR_LEN = struct.Struct("<BB")  # start address(1) data length(1): read, sync read, sync write heads
MAX_PARAMS = 253  # LEN is one byte: params + 2 <= 255


class Instruction(IntEnum):
    """Instruction codes (manual 1.3, "Instruction Types")."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    RESET = 0x06
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


def checksum(body: bytes) -> int:
    """~(ID + LEN + INST/ERR + params), lowest byte (manual 1.1 "Checksum")."""
    return ~sum(body) & 0xFF


@dataclass(frozen=True)
class Packet:
    """One decoded packet. `error` is None for an instruction and the status byte for a response."""

    id: int
    instruction: int | None
    params: bytes = b""
    error: int | None = None

    @property
    def is_status(self) -> bool:
        return self.error is not None


def encode(packet: Packet) -> bytes:
    """Serialize an instruction (error None) or a response (instruction None) to wire bytes."""
    if not 0 <= packet.id <= BROADCAST_ID:
        raise PacketError(f"Feetech packet id {packet.id} outside 0..{BROADCAST_ID}")
    if (packet.error is None) == (packet.instruction is None):
        raise PacketError("a Feetech packet has either an instruction (request) or an error byte (response)")
    if len(packet.params) > MAX_PARAMS:
        raise PacketError(f"Feetech packet for id {packet.id}: {len(packet.params)} params > {MAX_PARAMS}")
    code = packet.instruction if packet.error is None else packet.error
    body = bytes([packet.id, len(packet.params) + 2, code & 0xFF]) + bytes(packet.params)
    return HEADER + body + bytes([checksum(body)])


def frame_length(prefix: bytes) -> int:
    """Total wire length of a packet from its first 4 bytes; raises PacketError on a bad header or LEN."""
    header, motor_id, length = PREFIX.unpack(prefix[:PREFIX_SIZE])
    if header != HEADER:
        raise PacketError(f"bad Feetech header {header.hex(' ')}")
    if motor_id == 0xFF:
        raise PacketError("Feetech id 0xFF is not an id (a third header byte)")
    if length < 2:
        raise PacketError(f"Feetech LEN {length} < 2 (id {motor_id})")
    return PREFIX_SIZE + length


def decode(frame: bytes, *, status: bool) -> Packet:
    """Parse exactly one complete packet, a response when `status`; ChecksumMismatchError/PacketError."""
    if len(frame) < PREFIX_SIZE + 2:
        raise PacketError(f"Feetech packet too short ({len(frame)} bytes)")
    total = frame_length(frame)
    if total != len(frame):
        raise PacketError(f"Feetech LEN says {total} bytes, got {len(frame)} (id {frame[2]})")
    expected, actual = frame[-1], checksum(frame[2:-1])
    if expected != actual:
        raise ChecksumMismatchError(
            f"checksum mismatch for Feetech id {frame[2]}: packet says {expected:#04x}, "
            f"bytes give {actual:#04x}"
        )
    code, params = frame[4], bytes(frame[5:-1])
    if status:
        return Packet(frame[2], None, params, code)
    return Packet(frame[2], code, params)


class StreamParser:
    """Incremental parser: `feed(data)` returns complete packets and resynchronizes on garbage.

    `status` says which kind the stream carries (instructions on the servo side, responses on the host side).
    Corrupt packets are counted in `checksum_errors` / `dropped`."""

    def __init__(self, *, status: bool = False) -> None:
        self.status = status
        self._buf = bytearray()
        self.checksum_errors = 0
        self.dropped = 0

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                keep = 1 if self._buf[-1:] == b"\xff" else 0  # a header may be split across reads
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
            try:
                out.append(decode(bytes(self._buf[:total]), status=self.status))
                del self._buf[:total]
            except ChecksumMismatchError:
                self.checksum_errors += 1
                del self._buf[:1]


# --- Instruction builders (manual 1.3.1 .. 1.3.8) ----------------------------------------------------------


def ping(motor_id: int) -> bytes:
    return encode(Packet(motor_id, Instruction.PING))


def read(motor_id: int, address: int, length: int) -> bytes:
    return encode(Packet(motor_id, Instruction.READ, ADDR_LEN.pack(address, length)))


def write(motor_id: int, address: int, data: bytes) -> bytes:
    return encode(Packet(motor_id, Instruction.WRITE, bytes([address]) + bytes(data)))


def reg_write(motor_id: int, address: int, data: bytes) -> bytes:
    """Like WRITE, but the servo holds the data until ACTION (manual 1.3.4)."""
    return encode(Packet(motor_id, Instruction.REG_WRITE, bytes([address]) + bytes(data)))


def action(motor_id: int = BROADCAST_ID) -> bytes:
    return encode(Packet(motor_id, Instruction.ACTION))


def reset(motor_id: int) -> bytes:
    return encode(Packet(motor_id, Instruction.RESET))


def sync_read(address: int, length: int, ids: list[int] | tuple[int, ...]) -> bytes:
    """Each servo in `ids` answers with its own response, in the order given (manual 1.3.7)."""
    return encode(Packet(BROADCAST_ID, Instruction.SYNC_READ, ADDR_LEN.pack(address, length) + bytes(ids)))


def sync_write(address: int, length: int, data: dict[int, bytes]) -> bytes:
    """One packet writing `length` bytes at `address` of every servo in `data`, no responses (1.3.6)."""
    parts = [ADDR_LEN.pack(address, length)]
    for motor_id, payload in data.items():
        if len(payload) != length:
            raise PacketError(f"Feetech sync write to id {motor_id}: {len(payload)} bytes, expected {length}")
        parts.append(bytes([motor_id]) + bytes(payload))
    return encode(Packet(BROADCAST_ID, Instruction.SYNC_WRITE, b"".join(parts)))


def status(motor_id: int, error: int = 0, params: bytes = b"") -> bytes:
    return encode(Packet(motor_id, None, bytes(params), error))


# --- Parameter decoders: the inverse of each builder's params (the emulator and the tests use them) ---------


def parse_read(params: bytes) -> tuple[int, int]:
    """(address, length) of a Read or the head of a Sync Read / Sync Write."""
    if len(params) < ADDR_LEN.size:
        raise PacketError(f"Feetech read params too short ({len(params)} bytes)")
    return ADDR_LEN.unpack_from(params)


def parse_write(params: bytes) -> tuple[int, bytes]:
    if len(params) < 2:
        raise PacketError(f"Feetech write params too short ({len(params)} bytes)")
    return params[0], bytes(params[1:])


def parse_sync_read(params: bytes) -> tuple[int, int, list[int]]:
    address, length = parse_read(params)
    return address, length, list(params[ADDR_LEN.size :])


def parse_sync_write(params: bytes) -> tuple[int, int, dict[int, bytes]]:
    address, length = parse_read(params)
    rest = params[ADDR_LEN.size :]
    if length == 0 or len(rest) % (length + 1):
        raise PacketError(f"Feetech sync write data of {len(rest)} bytes is not a multiple of 1+{length}")
    return (
        address,
        length,
        {rest[i]: bytes(rest[i + 1 : i + 1 + length]) for i in range(0, len(rest), length + 1)},
    )
