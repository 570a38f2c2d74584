"""The WidowX arm against the servo-chain emulator: bring-up, units, one write + read a tick, safe stop."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.config import load_robot_config
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel import protocol as p
from edgeact.firmware_bridge.dynamixel.arm import DynamixelArm
from edgeact.firmware_bridge.errors import (
    BridgeConfigError,
    BusStoppedError,
    BusWatchdogExpiredError,
    InvalidCommandError,
)
from edgeact.firmware_bridge.safety import StopReason

HOME = np.array([0, 0, 0, 0, 0, 0, 40.0])
SLEEP_POSE = np.array([0, -1.80, 1.55, 0, 0.8, 0, 50.0])  # REFERENCE: wx250s sleep pose (rad), gripper mm


def test_widowx_config_matches_the_arm():
    cfg = load_robot_config("widowx")
    assert cfg.ids == (1, 2, 4, 6, 7, 8, 9) and cfg.all_ids == tuple(range(1, 10))
    assert cfg.baudrate == 1_000_000
    assert [j.name for j in cfg.joints][-1] == "gripper"
    assert math.degrees(cfg.joints[1].lower) == pytest.approx(-108, abs=1e-3)
    with pytest.raises(BridgeConfigError, match="bus_watchdog_s"):
        replace(cfg, bus_watchdog_s=0.02)  # shorter than two ticks at 50 Hz


def test_bad_yaml_names_file_and_field(tmp_path):
    path = tmp_path / "arm.yaml"
    path.write_text("bus: dynamixel\njoints: [{name: a, id: 1, lower: 0, upper: 1, colour: red}]\n")
    with pytest.raises(BridgeConfigError, match=r"arm.yaml joints\[0\].*colour"):
        load_robot_config(path)


def test_units_round_trip():
    arm = DynamixelArm(load_robot_config("widowx"))
    counts = arm.to_counts(SLEEP_POSE)
    assert counts[0] == ct.CENTER_COUNT
    assert counts[1] == round(ct.CENTER_COUNT - 1.80 * 4096 / (2 * math.pi))
    assert counts[6] == round(1530 + (50 - 30) * (2560 - 1530) / 44)
    assert np.all(np.abs(arm.from_counts(counts) - SLEEP_POSE) <= 0.5 / np.abs(arm._cpu) + 1e-12)


def test_connect_configures_every_servo(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    state = arm.connect()
    np.testing.assert_allclose(state.positions[:6], 0.0, atol=1e-3)
    for motor_id, servo in emu.servos.items():
        assert servo.torque, motor_id
        assert servo.get(ct.OPERATING_MODE) == ct.MODE_POSITION
        assert servo.get(ct.RETURN_DELAY_TIME) == 0
    assert emu.servos[1].read(224, 8)[1:] == bytes(servo_bytes(emu.servos[1]))
    arm.disconnect()


def servo_bytes(servo):
    return servo.table[70:71] + servo.table[126:128] + servo.table[132:136]


def test_one_sync_write_and_one_sync_read_per_tick(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    arm.step(HOME)  # first tick also arms the bus watchdog
    assert emu.servos[4].get(ct.BUS_WATCHDOG) == round(cfg.bus_watchdog_s / 0.02)
    target = np.array([0.3, -0.2, 0.25, 0.0, 0.1, -0.1, 60.0])
    for _ in range(3):
        n = len(emu.log)
        arm.step(target)
        insts = [pkt.instruction for pkt in emu.log[n:]]
        assert insts == [p.Instruction.SYNC_WRITE, p.Instruction.SYNC_READ]
    goal = emu.servos[2].get(ct.GOAL_POSITION)
    assert goal == arm.to_counts(target)[1]
    assert emu.servos[3].get(ct.GOAL_POSITION) == goal  # the shadow follows its primary
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        state = arm.step(target)
        if np.all(np.abs(state.positions - target) <= 1.0 / np.abs(arm._cpu)):
            break
    assert np.all(np.abs(state.positions - target) <= 1.0 / np.abs(arm._cpu))  # within one count
    arm.disconnect()


def test_targets_up_to_the_limits_are_sent_as_they_are(widowx_emulator):
    """Issue 11, one clamp: the runtime clamps, the bridge sends a command within limits unchanged (it used to
    clamp again, silently)."""
    _emu, cfg = widowx_emulator
    arm = DynamixelArm(replace(cfg, max_step=0.1))
    arm.connect()
    lower, upper = arm.limits  # the YAML limits rounded inwards to whole servo counts
    assert 0 <= lower[1] - cfg.joints[1].lower < 1.0 / ct.COUNTS_PER_RAD
    assert upper[6] == pytest.approx(74.0, abs=0.05)
    target = arm.last_command.copy()
    for k in range(1, 40):  # walk to the shoulder's lower limit at max_step per tick
        target[1] = max(lower[1], -0.1 * k)
        arm.step(target)
    assert arm.last_command[1] == lower[1] and arm.stop_record is None
    arm.disconnect()


@pytest.mark.parametrize(
    ("joint", "value", "match"),
    [(1, -3.0, r"joint shoulder: target -3 below its lower limit -1\.88"),
     (6, 80.0, r"joint gripper: target 80 above its upper limit 74"),
     (0, 0.25, r"joint waist: target 0\.25 is 0\.25 from the last command 0, more than max_step 0\.1")],
)  # fmt: skip
def test_a_target_beyond_a_limit_stops_naming_joint_value_and_limit(widowx_emulator, joint, value, match):
    """Issue 11, one clamp: what the bridge used to clamp silently is now a `limit` safe stop."""
    emu, cfg = widowx_emulator
    arm = DynamixelArm(replace(cfg, max_step=0.1))
    arm.connect()
    target = HOME.copy()
    target[6] = arm.last_command[6]
    target[joint] = value
    with pytest.raises(InvalidCommandError, match=match):
        arm.step(target)
    assert arm.stop_record.reason is StopReason.LIMIT and arm.stop_record.exit_code != 0
    assert "joint" in arm.stop_record.detail
    emu.settle(arm.bus.transport.tx_bytes)
    assert not any(s.torque for s in emu.servos.values())  # the normal stop: hold, then torque off
    arm.disconnect()


def test_nan_stops_and_nothing_follows(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    arm.step(HOME)
    with pytest.raises(InvalidCommandError):
        arm.step(np.array([0, np.nan, 0, 0, 0, 0, 40.0]))
    assert arm.stop_record.reason is StopReason.NAN and arm.stop_record.exit_code != 0
    emu.settle(arm.bus.transport.tx_bytes)
    assert not any(s.torque for s in emu.servos.values())  # torque off after the hold
    time.sleep(0.02)
    rx = emu.rx_bytes
    with pytest.raises(BusStoppedError):
        arm.step(HOME)
    arm.disconnect()
    time.sleep(0.02)
    assert emu.rx_bytes == rx


def test_hold_without_torque_off(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(replace(cfg, torque_off_on_stop=False))
    arm.connect()
    state = arm.step(HOME)
    arm.safe_stop("sigint")
    assert arm.stop_record.reason is StopReason.SIGINT and arm.stop_record.exit_code == 130
    emu.settle(arm.bus.transport.tx_bytes)
    assert all(s.torque for s in emu.servos.values())
    assert emu.servos[1].get(ct.GOAL_POSITION) == arm.to_counts(state.positions)[0]


def test_host_stall_longer_than_the_watchdog_stops(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(replace(cfg, bus_watchdog_s=0.06, timeout_s=0.02))
    arm.connect()
    arm.step(HOME)
    time.sleep(0.12)
    assert emu.servos[1].watchdog_expired  # the servos stopped on their own
    with pytest.raises(BusWatchdogExpiredError):
        arm.step(HOME)
    assert arm.stop_record.reason is StopReason.BUS_WATCHDOG
