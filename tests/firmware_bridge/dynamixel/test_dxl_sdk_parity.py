"""Byte-for-byte comparison with ROBOTIS's `dynamixel-sdk` (skipped when it is not installed).

Only packets without an `FF FF FD` run in INST..params: the SDK (4.1.0) computes byte stuffing but sends the
unstuffed packet (REFERENCE section 4), so stuffing is tested against the e-manual in test_dxl_protocol.py.
"""

from __future__ import annotations

import pytest
from edgeact.firmware_bridge.dynamixel import protocol as p
from hypothesis import given, settings
from hypothesis import strategies as st

sdk = pytest.importorskip("dynamixel_sdk", reason="dynamixel-sdk is not installed (optional comparison)")


class CapturePort:
    """Stands in for the SDK's PortHandler: keeps the bytes the SDK would write."""

    def __init__(self) -> None:
        self.is_using = False
        self.written: list[bytes] = []

    def clearPort(self) -> None:
        pass

    def writePort(self, packet: list[int]) -> int:
        self.written.append(bytes(packet))
        return len(packet)

    def setPacketTimeout(self, length: int) -> None:
        pass

    def setPacketTimeoutMillis(self, ms: float) -> None:
        pass

    def last(self) -> bytes:
        self.is_using = False
        return self.written[-1]


PH = sdk.PacketHandler(2.0)
ids = st.integers(0, p.MAX_ID)
addresses = st.integers(0, 0x03FF)
no_stuffing = st.binary(min_size=1, max_size=8).filter(lambda b: p.STUFF_PATTERN not in b)


@settings(max_examples=60, deadline=None)
@given(ids, addresses, st.integers(1, 64))
def test_read_matches_sdk(motor_id, address, length):
    port = CapturePort()
    PH.readTx(port, motor_id, address, length)
    assert port.last() == p.read(motor_id, address, length)


@settings(max_examples=60, deadline=None)
@given(ids, addresses, no_stuffing)
def test_write_matches_sdk(motor_id, address, data):
    wire = p.write(motor_id, address, data)
    if p.STUFF_PATTERN in wire[7:-2]:
        return  # a run can form across address and data bytes
    port = CapturePort()
    PH.writeTxOnly(port, motor_id, address, len(data), list(data))
    assert port.last() == wire


@settings(max_examples=40, deadline=None)
@given(addresses, st.lists(ids, min_size=1, max_size=9, unique=True), st.integers(0, 2**31 - 1))
def test_sync_write_and_sync_read_match_sdk(address, motor_ids, base):
    data = {i: ((base + 977 * i) % 2**32).to_bytes(4, "little") for i in motor_ids}
    ours = p.sync_write(address, 4, data)
    if p.STUFF_PATTERN in ours[7:-2]:
        return
    port = CapturePort()
    group = sdk.GroupSyncWrite(port, PH, address, 4)
    for motor_id, payload in data.items():
        assert group.addParam(motor_id, list(payload))
    group.txPacket()
    assert port.last() == ours
    reader = sdk.GroupSyncRead(port, PH, address, 4)
    for motor_id in motor_ids:
        assert reader.addParam(motor_id)
    reader.txPacket()
    assert port.last() == p.sync_read(address, 4, motor_ids)


def test_sdk_crc_matches_ours():
    frame = bytes.fromhex("FF FF FD 00 01 03 00 01")
    assert PH.updateCRC(0, list(frame), len(frame)) == p.crc16(frame) == 0x4E19
