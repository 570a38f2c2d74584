"""The Feetech bus through a real pty against the STS3215 chain emulator: responses, status bits as named
exceptions, retries, deadlines, and the servo behaviour of the memory table the arm relies on."""

from __future__ import annotations

import time

import pytest
from edgeact.firmware_bridge.errors import (
    ChecksumMismatchError,
    CommTimeoutError,
    FeetechOverheatError,
    FeetechOverloadError,
)
from edgeact.firmware_bridge.feetech import control_table as ct
from edgeact.firmware_bridge.feetech.bus import FeetechBus
from edgeact.firmware_bridge.sim.feetech_chain import Fault, FeetechChainEmulator
from edgeact.firmware_bridge.transport import SerialTransport


@pytest.fixture
def chain():
    emu = FeetechChainEmulator([1, 2, 3], late_reply_s=0.08)  # past the 0.05 s timeout, within the drain
    emu.start()
    bus = FeetechBus(SerialTransport(emu.port), timeout_s=0.05, retries=2)
    bus.names = {1: "shoulder_pan", 2: "shoulder_lift", 3: "elbow_flex"}
    bus.open()
    yield emu, bus
    bus.close()
    emu.stop()


def test_ping_read_write_and_sync(chain):
    emu, bus = chain
    assert bus.ping(1) == 0
    assert bus.read_register(2, ct.MODEL_NUMBER) == ct.MODEL_STS3215 == 777
    bus.write_register(2, ct.ACCELERATION, 50)
    assert emu.servos[2].get(ct.ACCELERATION) == 50
    bus.sync_write_register(ct.GOAL_SPEED, {1: 100, 2: 200, 3: 300})
    emu.settle(bus.transport.tx_bytes)
    assert [emu.servos[i].get(ct.GOAL_SPEED) for i in (1, 2, 3)] == [100, 200, 300]
    data, bits = bus.sync_read(ct.FEEDBACK_ADDRESS, ct.FEEDBACK_SIZE, (1, 2, 3))
    assert set(data) == {1, 2, 3} and all(len(v) == ct.FEEDBACK_SIZE for v in data.values())
    assert bits == {1: 0, 2: 0, 3: 0}
    assert bus.transport.tx_bytes == emu.rx_bytes


def test_eeprom_is_saved_only_while_unlocked(chain):
    emu, bus = chain
    servo = emu.servos[1]
    bus.write_register(1, ct.MIN_ANGLE_LIMIT, 100)  # Lock is 1 after power-on: effective, not saved
    assert servo.get(ct.MIN_ANGLE_LIMIT) == 100 and servo.eeprom_writes == 0
    servo.power_cycle()
    assert servo.get(ct.MIN_ANGLE_LIMIT) == 0
    bus.write_register(1, ct.LOCK, 0)
    bus.write_register(1, ct.MIN_ANGLE_LIMIT, 100)
    servo.power_cycle()
    assert servo.get(ct.MIN_ANGLE_LIMIT) == 100 and servo.eeprom_writes == 1
    assert not bus.ensure_register(1, ct.MIN_ANGLE_LIMIT, 100)  # equal: not written again


def test_goal_is_held_within_angle_limits_and_homing_offset_shifts_present(chain):
    emu, bus = chain
    servo = emu.servos[3]
    bus.write_register(3, ct.HOMING_OFFSET, -48)  # Present = actual - offset = 2048 + 48
    assert bus.read_register(3, ct.PRESENT_POSITION) == 2096
    bus.write_register(3, ct.MAX_ANGLE_LIMIT, 2100)
    bus.write_register(3, ct.TORQUE_ENABLE, 1)
    bus.write_register(3, ct.GOAL_POSITION, 3000)
    time.sleep(0.05)
    assert bus.read_register(3, ct.PRESENT_POSITION) == 2100  # stopped at Max Angle Limit
    assert servo.get(ct.GOAL_POSITION) == 3000


def test_read_only_registers_do_not_change(chain):
    _emu, bus = chain
    bus.write(1, ct.MODEL_NUMBER.address, b"\x00\x00")
    assert bus.read_register(1, ct.MODEL_NUMBER) == 777


def test_bad_checksum_is_retried_then_raised(chain):
    emu, bus = chain
    emu.inject(Fault.BAD_CHECKSUM, 1, count=1)
    assert bus.ping(1) == 0 and bus.retried == 1
    emu.inject(Fault.BAD_CHECKSUM, 1)
    with pytest.raises(ChecksumMismatchError, match=r"id 1.*after 3 attempts"):
        bus.ping(1)


def test_no_reply_times_out_within_the_bound(chain):
    emu, bus = chain
    emu.inject(Fault.NO_REPLY, 2)
    t0 = time.monotonic()
    with pytest.raises(CommTimeoutError, match=r"servo 2 \(shoulder_lift\).*did not answer"):
        bus.sync_read(ct.FEEDBACK_ADDRESS, ct.FEEDBACK_SIZE, (1, 2, 3))
    # (retries + 1) x (replies + 1) x timeout_s, plus scheduling slack on a loaded machine
    assert time.monotonic() - t0 < 3 * 4 * 0.05 + 0.5


def test_late_reply_is_not_taken_for_the_retry(chain):
    emu, bus = chain
    bus.write_register(1, ct.ACCELERATION, 7)
    bus.write_register(2, ct.ACCELERATION, 9)
    emu.inject(Fault.LATE_REPLY, 1, count=1)
    assert bus.read_register(1, ct.ACCELERATION) == 7 and bus.retried == 1
    assert bus.read_register(2, ct.ACCELERATION) == 9


def test_overload_and_overheat_are_named_and_unload_the_servo(chain):
    emu, bus = chain
    bus.set_torque((1, 2), True)
    emu.inject(Fault.OVERLOAD, 1)
    with pytest.raises(FeetechOverloadError, match=r"servo 1 \(shoulder_pan\).*overload \(0x20\)") as err:
        bus.read_register(1, ct.PRESENT_POSITION)
    assert err.value.motor_id == 1 and err.value.bits == 0x20
    assert emu.servos[1].get(ct.TORQUE_ENABLE) == 0  # Unloading Condition has the overload bit
    emu.inject(Fault.OVERHEAT, 2)
    with pytest.raises(FeetechOverheatError, match=r"servo 2 \(shoulder_lift\).*overheat"):
        bus.sync_read(ct.FEEDBACK_ADDRESS, ct.FEEDBACK_SIZE, (2, 3))
    _data, bits = bus.sync_read(ct.FEEDBACK_ADDRESS, ct.FEEDBACK_SIZE, (1, 2, 3), allow_status=True)
    assert bits == {1: ct.ST_OVERLOAD, 2: ct.ST_OVERHEAT, 3: 0}
    assert emu.servos[2].get(ct.TORQUE_ENABLE) == 0


def test_reg_write_waits_for_action(chain):
    emu, bus = chain
    bus.reg_write(1, ct.ACCELERATION.address, b"\x21")
    assert emu.servos[1].get(ct.ACCELERATION) == 0
    bus.action()
    emu.settle(bus.transport.tx_bytes)
    assert emu.servos[1].get(ct.ACCELERATION) == 0x21
