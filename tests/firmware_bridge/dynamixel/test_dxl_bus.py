"""The Dynamixel bus through a real pty against the servo-chain emulator: errors, retries, watchdog."""

from __future__ import annotations

import time

import pytest
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel import protocol as p
from edgeact.firmware_bridge.dynamixel.bus import DynamixelBus
from edgeact.firmware_bridge.errors import (
    AccessError,
    CommTimeoutError,
    CRCMismatchError,
    DataRangeError,
    HardwareAlertError,
    InstructionError,
    TransportError,
)
from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator, Fault
from edgeact.firmware_bridge.transport import SerialTransport


@pytest.fixture
def chain():
    emu = DynamixelChainEmulator({1: ct.MODEL_XM430_W350, 2: ct.MODEL_XM430_W350}, {3: 2})
    emu.start()
    bus = DynamixelBus(SerialTransport(emu.port), timeout_s=0.05, retries=2)
    bus.open()
    yield emu, bus
    bus.close()
    emu.stop()


def test_ping_read_write_through_pty(chain):
    emu, bus = chain
    assert bus.ping(1) == (ct.MODEL_XM430_W350, 46)
    assert bus.ping(3)[0] == ct.MODEL_XM430_W350  # a shadow answers its own id
    bus.write_register(2, ct.PROFILE_VELOCITY, 123)
    assert bus.read_register(2, ct.PROFILE_VELOCITY) == 123
    assert emu.servos[2].get(ct.PROFILE_VELOCITY) == 123
    # A write to the primary id reaches the shadow (Secondary ID) too, but only the primary answers.
    assert emu.servos[3].get(ct.PROFILE_VELOCITY) == 123
    assert bus.transport.tx_bytes == emu.rx_bytes


def test_missing_port_names_the_device():
    with pytest.raises(TransportError, match="/dev/does-not-exist"):
        SerialTransport("/dev/does-not-exist").open()


def test_status_errors_map_to_named_exceptions(chain):
    emu, bus = chain
    bus.write_register(1, ct.TORQUE_ENABLE, 1)
    with pytest.raises(AccessError, match="servo 1") as info:
        bus.write_register(1, ct.OPERATING_MODE, ct.MODE_POSITION)  # EEPROM is locked with torque on
    assert info.value.motor_id == 1
    with pytest.raises(InstructionError):
        bus.transact(p.encode(p.Packet(1, 0x7E)), 1)
    emu.inject(Fault.HARDWARE_ALERT, 2)
    with pytest.raises(HardwareAlertError, match=r"\[2\]"):
        bus.sync_read(ct.PRESENT_POSITION.address, 4, [1, 2])
    # the data is still readable with the alert acknowledged, and reboot clears the shutdown
    assert bus.read_register(2, ct.HARDWARE_ERROR_STATUS, allow_alert=True) == ct.HW_OVERLOAD
    bus.reboot(2)
    assert bus.read_register(2, ct.HARDWARE_ERROR_STATUS) == 0


def test_transient_crc_error_is_retried(chain):
    emu, bus = chain
    emu.inject(Fault.BAD_CRC, 1, count=1)
    assert bus.read_register(1, ct.PRESENT_POSITION) == ct.CENTER_COUNT
    assert bus.retried == 1


@pytest.mark.parametrize(
    ("fault", "exc"), [(Fault.NO_REPLY, CommTimeoutError), (Fault.BAD_CRC, CRCMismatchError)]
)
def test_persistent_fault_raises_after_bounded_retries(chain, fault, exc):
    emu, bus = chain
    emu.inject(fault, 2)
    before = emu.rx_packets
    with pytest.raises(exc, match="after 3 attempts"):
        bus.sync_read(ct.PRESENT_POSITION.address, 4, [1, 2])
    assert emu.rx_packets - before == 3  # exactly 1 + retries sync reads went out


def test_late_reply_is_discarded_and_the_next_transaction_is_clean(chain):
    emu, bus = chain
    emu.late_reply_s = 0.08
    emu.inject(Fault.LATE_REPLY, 1, count=1)
    # the first attempt times out (50 ms); the retry succeeds; the late packet is flushed or skipped
    assert bus.read_register(1, ct.PRESENT_POSITION) == ct.CENTER_COUNT
    time.sleep(0.1)
    assert bus.read_register(1, ct.TORQUE_ENABLE) == 0


def test_bus_watchdog_expires_on_silence(chain):
    emu, bus = chain
    bus.write_register(1, ct.TORQUE_ENABLE, 1)
    bus.set_bus_watchdog([1], 0.02)  # one unit: 20 ms
    time.sleep(0.1)
    assert bus.read_register(1, ct.BUS_WATCHDOG) == -1
    with pytest.raises(DataRangeError):  # Goal Position is read-only after an expiry (e-manual)
        bus.write_register(1, ct.GOAL_POSITION, 2100)
    bus.set_bus_watchdog([1], 0)  # writing 0 clears it
    bus.write_register(1, ct.GOAL_POSITION, 2100)
    assert emu.servos[1].get(ct.GOAL_POSITION) == 2100
