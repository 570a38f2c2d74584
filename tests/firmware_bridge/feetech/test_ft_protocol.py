"""Feetech SCS codec: the protocol manual's golden vectors, checksum errors, resync, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgeact.firmware_bridge.errors import ChecksumMismatchError, PacketError
from edgeact.firmware_bridge.feetech import control_table as ct
from edgeact.firmware_bridge.feetech import protocol as p
from hypothesis import given, settings
from hypothesis import strategies as st

GOLDEN = json.loads((Path(__file__).parent / "feetech_golden.json").read_text())["packets"]


def _hex(s: str) -> bytes:
    return bytes.fromhex(s)


@pytest.mark.parametrize("vec", GOLDEN, ids=lambda v: v["name"])
def test_golden_packets_decode_and_encode(vec):
    wire = _hex(vec["hex"])
    pkt = p.decode(wire, status=vec["status"])
    assert pkt.id == vec["id"] and pkt.params == _hex(vec["params"])
    assert (pkt.error if vec["status"] else pkt.instruction) == vec["code"]
    assert p.encode(pkt) == wire
    assert p.checksum(wire[2:-1]) == wire[-1]


@pytest.mark.parametrize("vec", [v for v in GOLDEN if "builder" in v], ids=lambda v: v["name"])
def test_golden_builders(vec):
    name, *args = vec["builder"]
    if name in ("write", "reg_write"):
        args[2] = _hex(args[2])
    if name == "status":
        args[2] = _hex(args[2])
    if name == "sync_write":
        args[2] = {int(k): _hex(v) for k, v in args[2].items()}
    assert getattr(p, name)(*args) == _hex(vec["hex"])


def test_read_response_value_is_little_endian_position_1304():
    pkt = p.decode(_hex("FF FF 01 04 00 18 05 DD"), status=True)
    assert ct.decode_value(ct.PRESENT_POSITION, pkt.params) == 0x0518 == 1304


def test_bad_checksum_header_and_length_are_rejected():
    wire = bytearray(p.ping(1))
    wire[-1] ^= 0x01
    with pytest.raises(ChecksumMismatchError, match="id 1"):
        p.decode(bytes(wire), status=False)
    with pytest.raises(PacketError, match="header"):
        p.decode(b"\xfe\xff\x01\x02\x01\xfb", status=False)
    with pytest.raises(PacketError, match="LEN"):
        p.decode(p.ping(1) + b"\x00", status=False)
    with pytest.raises(PacketError, match="either"):
        p.encode(p.Packet(1, 1, b"", 0))
    with pytest.raises(PacketError, match="expected 2"):
        p.sync_write(42, 2, {1: b"\x00"})


def test_sign_magnitude_registers():
    # Homing Offset: sign in bit 11; Goal/Present Position: bit 15; Present Load: bit 10 (memory table)
    assert ct.encode_value(ct.HOMING_OFFSET, -5) == (0x800 | 5).to_bytes(2, "little")
    assert ct.decode_value(ct.HOMING_OFFSET, (0x800 | 2047).to_bytes(2, "little")) == -2047
    assert ct.decode_value(ct.PRESENT_LOAD, (0x400 | 100).to_bytes(2, "little")) == -100
    assert ct.encode_value(ct.GOAL_POSITION, 4095) == b"\xff\x0f"
    with pytest.raises(ValueError, match="bit 11"):
        ct.encode_value(ct.HOMING_OFFSET, 2048)


ids = st.integers(0, p.BROADCAST_ID)


@settings(max_examples=200, deadline=None)
@given(ids, st.sampled_from(list(p.Instruction)), st.binary(max_size=p.MAX_PARAMS))
def test_instruction_round_trip(motor_id, inst, params):
    pkt = p.Packet(motor_id, int(inst), params)
    wire = p.encode(pkt)
    assert wire[3] == len(params) + 2 == len(wire) - 4
    assert p.decode(wire, status=False) == pkt


@settings(max_examples=200, deadline=None)
@given(ids, st.integers(0, 255), st.binary(max_size=64))
def test_status_round_trip(motor_id, error, params):
    pkt = p.Packet(motor_id, None, params, error)
    assert p.decode(p.encode(pkt), status=True) == pkt


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 255),
    st.integers(1, 8),
    st.dictionaries(st.integers(0, 253), st.binary(min_size=8, max_size=8), min_size=1, max_size=6),
)
def test_sync_write_and_read_params_round_trip(address, length, data):
    data = {k: v[:length] for k, v in data.items()}
    pkt = p.decode(p.sync_write(address, length, data), status=False)
    assert p.parse_sync_write(pkt.params) == (address, length, data)
    pkt = p.decode(p.sync_read(address, length, list(data)), status=False)
    assert p.parse_sync_read(pkt.params) == (address, length, list(data))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.lists(st.tuples(ids, st.binary(max_size=12)), min_size=1, max_size=5))
def test_stream_parser_resynchronizes_over_garbage(garbage, packets):
    garbage = garbage.replace(b"\xff", b"\x00")  # garbage without a header byte cannot start a packet
    wire = garbage + b"".join(p.status(i, 0, d) for i, d in packets)
    parser = p.StreamParser(status=True)
    out = []
    for k in range(0, len(wire), 3):  # fed in pieces, as a serial port delivers
        out += parser.feed(wire[k : k + 3])
    assert [(q.id, q.params) for q in out] == packets
    assert parser.dropped == len(garbage)


@settings(max_examples=100, deadline=None)
@given(st.integers(-32767, 32767))
def test_sign_magnitude_round_trip(value):
    assert ct.decode_value(ct.GOAL_POSITION, ct.encode_value(ct.GOAL_POSITION, value)) == value
