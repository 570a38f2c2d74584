"""The CAN arm against emulated CiA 402 drives on python-can's virtual bus."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.canopen.arm import CanArm
from edgeact.firmware_bridge.canopen.cia402 import State
from edgeact.firmware_bridge.config import load_robot_config
from edgeact.firmware_bridge.errors import BusStoppedError, HeartbeatLostError
from edgeact.firmware_bridge.safety import StopReason
from edgeact.firmware_bridge.sim.cia402_drive import DriveRack
from edgeact.firmware_bridge.sim.scenarios import can_test_config, is_host_frame, wait_quiet
from edgeact.firmware_bridge.transport import FrameCounter

_n = itertools.count()


@pytest.fixture
def rig():
    channel = f"test-can-arm-{next(_n)}"
    cfg = can_test_config(channel)
    rack = DriveRack("virtual", channel, cfg.node_ids)
    counter = FrameCounter("virtual", channel)
    yield cfg, rack, counter
    counter.close()
    rack.close()


def test_can_arm_config():
    cfg = load_robot_config("can_arm")
    assert cfg.node_ids == (1, 2, 3, 4, 5, 6) and cfg.fps == 200


def test_bring_up_configures_each_drive(rig):
    cfg, rack, _ = rig
    rack.drives[2].inject_fault()  # a drive in Fault before bring-up is reset by it
    arm = CanArm(cfg)
    arm.connect()
    for drive in rack.drives.values():
        assert drive.cia402_state is State.OPERATION_ENABLED
        assert drive._get(cod.MODES_DISPLAY) == cod.MODE_CSP
        assert drive._get(cod.HEARTBEAT_PRODUCER) == cfg.heartbeat_producer_ms
        assert drive._get(cod.COMM_CYCLE_PERIOD) == 5000  # 200 Hz
        assert drive._pdo_mapping_ok()
        assert drive.node.nmt.state == "OPERATIONAL"
    arm.disconnect()


def toward(arm: CanArm, target: np.ndarray) -> np.ndarray:
    """One tick toward `target` within max_step: what the runtime's post-processor sends (the one clamp)."""
    step = arm.step_limits
    return np.clip(target, arm.last_command - step, arm.last_command + step)


def test_each_tick_is_rpdos_then_one_sync_and_drives_follow(rig):
    cfg, rack, counter = rig
    arm = CanArm(cfg)
    arm.connect()
    target = np.array([0.2, -0.1, 0.3, 0.0, 0.05, -0.2])
    arm.step(toward(arm, target))
    time.sleep(0.01)
    n = len(counter.frames)
    arm.step(toward(arm, target))
    time.sleep(0.01)
    host = [m.arbitration_id for m in counter.frames[n:] if is_host_frame(m)]
    assert host == [cod.RPDO1_BASE + i for i in cfg.node_ids] + [cod.SYNC_ID]
    for _ in range(int(0.3 / cfg.max_step) + 2):  # max_step per tick: 0.3 rad takes 20 ticks
        state = arm.step(toward(arm, target))
    np.testing.assert_allclose(state.positions, target, atol=1.0 / cfg.joints[0].counts_per_rad)
    assert rack.drives[1].target == arm.to_counts(target)[0]
    arm.disconnect()


def test_heartbeat_loss_before_a_tick(rig):
    cfg, rack, counter = rig
    arm = CanArm(replace(cfg, heartbeat_timeout_s=0.1))
    arm.connect()
    arm.step(np.zeros(6))
    rack.drives[5].lose_heartbeat()
    time.sleep(0.2)
    with pytest.raises(HeartbeatLostError, match="heartbeat"):
        arm.step(np.zeros(6))
    assert arm.stop_record.reason is StopReason.HEARTBEAT_LOSS
    # hold + disable voltage went out to the drives that are alive
    deadline = time.monotonic() + 1.0
    while rack.drives[1].cia402_state is not State.SWITCH_ON_DISABLED and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rack.drives[1].cia402_state is State.SWITCH_ON_DISABLED
    wait_quiet(counter)
    before = counter.count(is_host_frame)
    with pytest.raises(BusStoppedError):
        arm.step(np.zeros(6))
    arm.disconnect()
    time.sleep(0.02)
    assert counter.count(is_host_frame) == before


def test_stop_without_torque_off_holds(rig):
    cfg, rack, _ = rig
    arm = CanArm(replace(cfg, torque_off_on_stop=False))
    arm.connect()
    arm.step(np.full(6, 0.01))  # within max_step of the start
    arm.safe_stop("sigterm")
    time.sleep(0.01)
    assert arm.stop_record.exit_code == 143
    assert all(d.cia402_state is State.OPERATION_ENABLED for d in rack.drives.values())
    arm.disconnect()
