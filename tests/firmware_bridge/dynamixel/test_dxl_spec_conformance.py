"""The WidowX against servos that follow the e-manual to the letter (issue 11, Dynamixel): the Goal Position
window, per-model address 126, decoded Hardware Error Status, EEPROM written only when it differs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.config import DynamixelJoint, load_robot_config
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel.arm import DynamixelArm
from edgeact.firmware_bridge.dynamixel.bus import DynamixelBus
from edgeact.firmware_bridge.errors import (
    BridgeConfigError,
    DataLimitError,
    DataRangeError,
    HardwareAlertError,
)
from edgeact.firmware_bridge.safety import StopReason
from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator, Fault
from edgeact.firmware_bridge.transport import SerialTransport

HOME = np.array([0, 0, 0, 0, 0, 0, 40.0])


@pytest.fixture
def servo():
    emu = DynamixelChainEmulator({1: ct.MODEL_XM430_W350})
    emu.start()
    bus = DynamixelBus(SerialTransport(emu.port), timeout_s=0.05, retries=2)
    bus.open()
    yield emu, bus
    bus.close()
    emu.stop()


# --- the emulator follows the e-manual -------------------------------------------------------------------


def test_emulated_goal_position_outside_the_limits_is_refused(servo):
    emu, bus = servo
    s = emu.servos[1]
    assert (s.get(ct.MIN_POSITION_LIMIT), s.get(ct.MAX_POSITION_LIMIT)) == (0, 4095)  # factory values
    with pytest.raises(DataLimitError, match="servo 1"):  # e-manual "Goal Position(116)": Min..Max Limit
        bus.write_register(1, ct.GOAL_POSITION, 4096)
    bus.write_register(1, ct.MAX_POSITION_LIMIT, 3000)
    with pytest.raises(DataLimitError):
        bus.write_register(1, ct.GOAL_POSITION, 3001)
    with pytest.raises(DataRangeError):  # the limits themselves take one turn
        bus.write_register(1, ct.MAX_POSITION_LIMIT, 4096)
    # A Sync Write has no status packet: the servo drops the goal without a word.
    bus.sync_write_register(ct.GOAL_POSITION, {1: 3500})
    bus.write_register(1, ct.GOAL_POSITION, 2500)  # a transaction after it: the Sync Write was handled
    assert s.get(ct.GOAL_POSITION) == 2500
    assert s.ignored == [(ct.GOAL_POSITION.address, 3500, 0x06)]


def test_emulated_watchdog_expiry_and_eeprom_kept_over_reboot(servo):
    emu, bus = servo
    bus.write_register(1, ct.RETURN_DELAY_TIME, 0)
    bus.write_register(1, ct.PROFILE_VELOCITY, 50)
    bus.write_register(1, ct.TORQUE_ENABLE, 1)
    emu.inject(Fault.WATCHDOG_EXPIRY, 1)
    assert bus.read_register(1, ct.BUS_WATCHDOG) == -1
    assert bus.read_register(1, ct.PROFILE_VELOCITY) == 0  # "Bus Watchdog(98)": profile applied as 0
    with pytest.raises(DataRangeError):
        bus.write_register(1, ct.GOAL_POSITION, 2100)
    bus.reboot(1)
    assert bus.read_register(1, ct.RETURN_DELAY_TIME) == 0  # EEPROM is non-volatile
    assert emu.servos[1].eeprom_writes == 1


# --- item 1: the Goal Position window --------------------------------------------------------------------


def test_joint_limits_map_onto_the_goal_window():
    cfg = load_robot_config("widowx")
    waist = cfg.joints[0]
    assert waist.upper == pytest.approx(math.pi, abs=1e-5)  # +pi is count 4096
    assert waist.goal_window(ct.MODE_POSITION) == (0, 4095)
    assert cfg.joints[-1].goal_window(ct.MODE_POSITION) == (1530, 2560)  # the gripper's calibration
    assert cfg.joints[1].goal_window(ct.MODE_POSITION) == (
        math.ceil(2048 - 1.884956 * ct.COUNTS_PER_RAD),
        math.floor(2048 + 1.989675 * ct.COUNTS_PER_RAD),
    )


def test_config_with_unrepresentable_limits_is_refused():
    cfg = load_robot_config("widowx")
    joints = list(cfg.joints)
    joints[0] = DynamixelJoint(name="waist", id=1, lower=-3.5, upper=3.5)
    with pytest.raises(
        BridgeConfigError, match=r"widowx.*waist.*servo 1 counts -233\.6\.\.4329\.6.*0\.\.4095.*-3\.5"
    ):
        replace(cfg, joints=tuple(joints))
    joints[0] = DynamixelJoint(name="waist", id=1, lower=-3.5, upper=3.5)  # multi-turn takes it
    assert replace(cfg, joints=tuple(joints), operating_mode=ct.MODE_EXTENDED_POSITION).joints[0].upper == 3.5


def test_plus_pi_reaches_the_servo_and_the_servo_holds_the_yaml_envelope(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    for motor_id, (lo, hi) in arm.windows.items():  # Min/Max Position Limit written from the YAML
        for servo in [emu.servos[motor_id]] + [s for s in emu.servos.values() if s.secondary_id == motor_id]:
            assert (servo.get(ct.MIN_POSITION_LIMIT), servo.get(ct.MAX_POSITION_LIMIT)) == (lo, hi), servo.id
    target = np.array([math.pi, 0, 0, -math.pi, 0, math.pi, 40.0])
    arm.step(target)
    arm.step(target)
    emu.settle(arm.bus.transport.tx_bytes)
    assert [emu.servos[i].get(ct.GOAL_POSITION) for i in (1, 6, 8)] == [4095, 0, 4095]
    assert all(not s.ignored for s in emu.servos.values()), {i: s.ignored for i, s in emu.servos.items()}
    assert arm.last_command[0] == pytest.approx(math.pi - 2 * math.pi / 4096)
    arm.disconnect()


# --- item 2: address 126 by model -------------------------------------------------------------------------


def test_address_126_is_current_on_xm430_and_load_on_xl430(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    emu.servos[2].external_effort = 100  # XM430-W350: 100 x 2.69 mA
    emu.servos[8].external_effort = -250  # XL430-W250: -250 x 0.1 %
    state = arm.step(HOME)
    assert state.currents[1] == pytest.approx(269.0) and np.isnan(state.loads[1])
    assert state.loads[5] == pytest.approx(-25.0) and np.isnan(state.currents[5])
    assert np.isnan(state.currents[6]) and not np.isnan(state.currents[:5]).any()
    arm.disconnect()


# --- item 6: Hardware Error Status decoded ----------------------------------------------------------------


def test_hardware_alert_names_what_is_wrong(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    arm.step(HOME)
    emu.inject(Fault.HARDWARE_ALERT, 4, bits=ct.HW_OVERHEATING | ct.HW_OVERLOAD)
    with pytest.raises(
        HardwareAlertError, match=r"servo 4 \(elbow\): overheating, overload \(0x24\)"
    ) as info:
        arm.step(HOME)
    assert info.value.status == {4: 0x24}
    assert arm.stop_record.reason is StopReason.HARDWARE_ALERT
    assert "overheating, overload" in arm.stop_record.detail
    arm.disconnect()


def test_hardware_error_text_decodes_every_bit():
    assert ct.hardware_error_text(0x01) == "input voltage (0x01)"
    assert ct.hardware_error_text(0x08 | 0x10) == "motor encoder, electrical shock (0x18)"
    assert ct.hardware_error_text(0x42) == "unknown bits 0x42 (0x42)"


# --- item 7: EEPROM written only when it differs ----------------------------------------------------------


def test_second_connect_writes_no_eeprom(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    arm.disconnect()
    first = {i: s.eeprom_writes for i, s in emu.servos.items()}
    assert first[1] > 0  # Return Delay Time and the position limits differed from the factory values
    arm = DynamixelArm(cfg)
    arm.connect()
    arm.disconnect()
    assert {i: s.eeprom_writes for i, s in emu.servos.items()} == first
    assert all(s.get(ct.OPERATING_MODE) == ct.MODE_POSITION for s in emu.servos.values())
