"""Protocol 2.0 codec: e-manual golden vectors, byte stuffing, and hypothesis round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgeact.firmware_bridge.dynamixel import protocol as p
from edgeact.firmware_bridge.errors import CRCMismatchError, PacketError
from hypothesis import given, settings
from hypothesis import strategies as st

GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "dynamixel_golden.json").read_text())


def _hex(s: str) -> bytes:
    return bytes.fromhex(s)


def test_crc_check_value_and_reference_ping():
    assert p.crc16(GOLDEN["crc_check"]["data_ascii"].encode()) == GOLDEN["crc_check"]["crc"] == 0xFEE8
    assert p.ping(1)[-2:] == b"\x19\x4e"


@pytest.mark.parametrize("vec", GOLDEN["packets"], ids=lambda v: v["name"])
def test_golden_packets_decode_and_encode(vec):
    wire = _hex(vec["hex"])
    pkt = p.decode(wire)
    assert pkt.id == vec["id"] and pkt.instruction == vec["instruction"]
    assert pkt.params == _hex(vec["params"])
    assert pkt.error == vec.get("error")
    assert p.encode(pkt) == wire


@pytest.mark.parametrize("vec", [v for v in GOLDEN["packets"] if "builder" in v], ids=lambda v: v["name"])
def test_golden_builders(vec):
    name, *args = vec["builder"]
    if name == "write":
        args[2] = _hex(args[2])
    if name == "sync_write":
        args[2] = {int(k): _hex(v) for k, v in args[2].items()}
    assert getattr(p, name)(*args) == _hex(vec["hex"])


@pytest.mark.parametrize("vec", GOLDEN["stuffing"], ids=lambda v: v["name"])
def test_stuffing_vectors(vec):
    raw = _hex(vec["raw_params"])
    wire = p.encode(p.Packet(1, p.Instruction.WRITE, raw))
    assert wire[7:-2] == _hex(vec["stuffed_body"])
    assert int.from_bytes(wire[5:7], "little") == vec["len"] == len(wire) - 7
    assert p.crc16(wire[:-2]) == int.from_bytes(wire[-2:], "little")
    assert p.decode(wire).params == raw


def test_bad_crc_and_bad_header_are_rejected():
    wire = bytearray(p.ping(1))
    wire[-1] ^= 0x01
    with pytest.raises(CRCMismatchError, match="id 1"):
        p.decode(bytes(wire))
    with pytest.raises(PacketError, match="header"):
        p.decode(b"\xff\xff\xfe\x00" + bytes(wire[4:]))
    with pytest.raises(PacketError):
        p.sync_write(116, 4, {1: b"\x00\x00"})


ids = st.integers(0, p.BROADCAST_ID)
payload = st.binary(max_size=64) | st.lists(st.sampled_from([0xFF, 0xFD, 0x00]), max_size=40).map(bytes)


@settings(max_examples=200, deadline=None)
@given(ids, st.sampled_from([int(i) for i in p.Instruction if i != p.Instruction.STATUS]), payload)
def test_instruction_round_trip(motor_id, inst, params):
    wire = p.encode(p.Packet(motor_id, inst, params))
    assert p.STUFF_PATTERN + b"\x00" not in wire[4:]  # no false header inside a packet
    assert p.decode(wire) == p.Packet(motor_id, inst, params)


@settings(max_examples=200, deadline=None)
@given(ids, st.integers(0, 255), payload)
def test_status_round_trip(motor_id, err, params):
    wire = p.status(motor_id, err, params)
    assert p.decode(wire) == p.Packet(motor_id, p.Instruction.STATUS, params, err)


@settings(max_examples=200, deadline=None)
@given(payload)
def test_unstuff_inverts_stuff(body):
    assert p.unstuff(p.stuff(body)) == body


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.just(n), st.dictionaries(st.integers(0, p.MAX_ID), st.binary(min_size=n, max_size=n))
        )
    ),
)
def test_sync_write_params_round_trip(address, n_and_data):
    length, data = n_and_data
    pkt = p.decode(p.sync_write(address, length, data))
    if data:
        assert p.parse_sync_write(pkt.params) == (address, length, data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=6), st.binary(max_size=10), st.binary(max_size=10))
def test_stream_parser_resyncs_over_garbage(params_list, junk_a, junk_b):
    packets = [p.Packet(i + 1, p.Instruction.WRITE, prm) for i, prm in enumerate(params_list)]
    stream = junk_a.replace(b"\xff", b"\x00") + b"".join(p.encode(x) for x in packets) + junk_b
    parser = p.StreamParser()
    got = []
    for i in range(0, len(stream), 5):  # feed in small pieces
        got += parser.feed(stream[i : i + 5])
    assert got == packets


def test_parsers_invert_builders():
    assert p.parse_read(p.decode(p.read(3, 132, 4)).params) == (132, 4)
    assert p.parse_write(p.decode(p.write(3, 64, b"\x01")).params) == (64, b"\x01")
    assert p.parse_sync_read(p.decode(p.sync_read(224, 8, [1, 2, 4])).params) == (224, 8, [1, 2, 4])
