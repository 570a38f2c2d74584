"""CiA 301/402 codecs of `canopen/od.py` and `cia402.py` added for issue 11: heartbeat consumer entries
(1016h), TPDO1 decoding by the mapped length, the interpolation period (60C2h)."""

from __future__ import annotations

import struct

import pytest
from edgeact.firmware_bridge.canopen import cia402
from edgeact.firmware_bridge.canopen import od as cod
from hypothesis import given
from hypothesis import strategies as st


def test_heartbeat_consumer_entry_golden_bytes():
    # An expedited SDO download to node 2 (COB-ID 0x602) seen on a bus: command 0x23 (4 bytes), index 1016h
    # little endian, sub 1, data = monitor node 127 (0x7F) with a 300 ms (0x012C) consumer time
    sdo_request = bytes([0x23, 0x16, 0x10, 0x01, 0x2C, 0x01, 0x7F, 0x00])
    assert sdo_request[1:4] == bytes([0x16, 0x10, 0x01])
    value = struct.unpack("<I", sdo_request[4:])[0]
    assert value == cod.heartbeat_consumer_entry(127, 300) == 0x007F012C
    assert cod.parse_heartbeat_consumer_entry(value) == (127, 300)


@given(st.integers(0, 127), st.integers(0, 0xFFFF))
def test_heartbeat_consumer_entry_round_trip(node_id, time_ms):
    value = cod.heartbeat_consumer_entry(node_id, time_ms)
    assert value >> 24 == 0  # reserved byte
    assert cod.parse_heartbeat_consumer_entry(value) == (node_id, time_ms)


@pytest.mark.parametrize(("node_id", "time_ms"), [(128, 100), (-1, 100), (1, 65536)])
def test_heartbeat_consumer_entry_refuses_out_of_range(node_id, time_ms):
    with pytest.raises(ValueError, match=str(node_id)):
        cod.heartbeat_consumer_entry(node_id, time_ms)


@given(st.integers(0, 0xFFFF), st.integers(-(2**31), 2**31 - 1), st.binary(max_size=2))
def test_tpdo1_decodes_by_the_mapped_length(statusword, position, padding):
    frame = cod.TPDO1.pack(statusword, position)
    assert cod.decode_tpdo1(frame + padding) == (statusword, position)  # DLC 6, 7 or 8
    assert cod.decode_tpdo1(frame[:5]) is None  # shorter than the mapping: not decoded


@pytest.mark.parametrize(
    ("period_us", "expected"),
    [
        (5000, (5, -3)),
        (100_000, (100, -3)),
        (2500, (25, -4)),
        (1250, (125, -5)),
        (300_000, None),
        (3333, None),
    ],
)
def test_interpolation_period(period_us, expected):
    assert cia402.interpolation_period(period_us) == expected
    if expected is not None:
        assert expected[0] * 10.0 ** (expected[1] + 6) == pytest.approx(period_us)
