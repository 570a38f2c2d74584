"""What real drives do and the emulator now models (issue 11): TPDOs padded to 8 bytes, and the max profile
velocity 0x607F that a CSP target stream must respect (else following error, EMCY 0x8611)."""

from __future__ import annotations

import itertools
import struct
import time
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.canopen.arm import CanArm
from edgeact.firmware_bridge.canopen.cia402 import State
from edgeact.firmware_bridge.config import load_robot_config
from edgeact.firmware_bridge.errors import BridgeConfigError, EmergencyError, InvalidCommandError
from edgeact.firmware_bridge.safety import StopReason
from edgeact.firmware_bridge.sim.cia402_drive import DriveRack
from edgeact.firmware_bridge.sim.scenarios import can_test_config, time_ticks
from edgeact.firmware_bridge.transport import FrameCounter

_n = itertools.count()


def _rig(**drive_options):
    channel = f"test-drive-limits-{next(_n)}"
    cfg = can_test_config(channel)
    return cfg, DriveRack("virtual", channel, cfg.node_ids, drive_options=drive_options)


def test_padded_tpdos_are_decoded():
    cfg, rack = _rig(pad_tpdo=True)
    counter = FrameCounter("virtual", cfg.channel)
    arm = CanArm(cfg)
    try:
        arm.connect()
        target = np.array([0.1, -0.1, 0.05, 0.0, 0.02, -0.05])
        for _ in range(12):  # max_step 0.015 rad per tick: 7 ticks to the target
            step = arm.step_limits
            state = arm.step(np.clip(target, arm.last_command - step, arm.last_command + step))
        tpdos = [m for m in list(counter.frames) if cod.TPDO1_BASE < m.arbitration_id < 0x200]
        assert tpdos and all(len(m.data) == 8 for m in tpdos)  # the drives did pad
        np.testing.assert_allclose(state.positions, target, atol=1.0 / cfg.joints[0].counts_per_rad)
        assert arm.stop_record is None
    finally:
        arm.disconnect()
        counter.close()
        rack.close()


def test_bring_up_refuses_a_max_step_above_the_drive_max_profile_velocity():
    cfg, rack = _rig(max_profile_velocity=65536)  # counts/s: 3.14 rad/s, 0.0157 rad per tick at 200 Hz
    try:
        arm = CanArm(replace(cfg, max_step=0.05, fps=200.0))
        with pytest.raises(BridgeConfigError) as info:
            arm.connect()
        msg = str(info.value)
        assert "drive 1" in msg and "0x607F" in msg and "max_step 0.05" in msg and "is 65536" in msg, msg
        assert "0.01571" in msg and "208608" in msg, msg  # the step it allows, the 0x607F the step needs
        assert not arm.is_connected and arm.network is None
        assert all(d.cia402_state is not State.OPERATION_ENABLED for d in rack.drives.values())
    finally:
        rack.close()


def test_the_velocity_unit_factor_is_applied():
    cfg, rack = _rig(max_profile_velocity=30)  # the drive's velocity unit: rpm of a 17-bit encoder
    rpm = 2**17 / 60
    joints = tuple(replace(j, counts_per_s_per_velocity_unit=rpm) for j in cfg.joints)
    try:
        arm = CanArm(replace(cfg, joints=joints, max_step=0.015))  # 30 rpm = 3.14 rad/s >= 3 rad/s
        arm.connect()
        assert arm.max_profile_velocity == dict.fromkeys(cfg.node_ids, 30)
        arm.disconnect()
        with pytest.raises(BridgeConfigError, match=r"max_step 0.05 .* 0x607F >= 95"):
            CanArm(replace(cfg, joints=joints, max_step=0.05)).connect()
    finally:
        rack.close()


def test_a_step_faster_than_0x607f_trips_the_drive_following_error():
    """The emulator enforces 0x607F: what the bring-up check prevents (the drive lowered after bring-up)."""
    cfg, rack = _rig(max_profile_velocity=10**6)
    arm = CanArm(replace(cfg, max_step=0.05))
    try:
        arm.connect()
        for drive in rack.drives.values():  # the drive's commissioning, not the host, sets the real limit
            drive._store(cod.MAX_PROFILE_VELOCITY, 65536, struct.Struct("<I"))
        with pytest.raises(EmergencyError, match="0x8611") as info:
            for k in range(1, 40):
                arm.step(np.full(6, 0.05 * k))  # 10 rad/s against 3.14 rad/s
        assert info.value.code == cod.EMCY_FOLLOWING_ERROR
        assert arm.stop_record.reason is StopReason.EMCY
        assert rack.drives[1].cia402_state is State.FAULT
        assert rack.drives[1]._get(cod.ERROR_CODE) == cod.EMCY_FOLLOWING_ERROR
    finally:
        arm.disconnect()
        rack.close()


def test_without_max_step_the_drive_limit_is_the_step():
    """The step the drive allows (0x607F) is the step limit: commands within it move the drives, a command
    beyond it is a `limit` stop naming joint and numbers (issue 11: the bridge checks, it used to clamp)."""
    cfg, rack = _rig(max_profile_velocity=65536)
    arm = CanArm(replace(cfg, max_step=None))
    try:
        arm.connect()
        allowed = 65536 / cfg.joints[0].counts_per_rad / cfg.fps
        np.testing.assert_allclose(arm.step_limits, allowed)
        for k in range(1, 31):
            state = arm.step(np.full(6, k * allowed))
            time.sleep(0.002)
        np.testing.assert_allclose(state.positions, 30 * allowed, atol=2e-4)
        assert arm.stop_record is None
        with pytest.raises(
            InvalidCommandError, match=r"joint joint1: target 1 is .* more than max_step 0\.0157"
        ):
            arm.step(np.full(6, 1.0))
        assert arm.stop_record.reason is StopReason.LIMIT
    finally:
        arm.disconnect()
        rack.close()


@pytest.mark.parametrize(("timeout_s", "missed", "stops"), [(0.005, 2, True), (None, None, False)])
def test_tpdo_latency_bursts_stop_only_the_old_defaults(timeout_s, missed, stops):
    """TPDOs held 30 ms every 40 SYNCs (a loaded host's latency bursts): the former defaults (5 ms wait,
    2 missed ticks) stop the run with comm loss; the shipped ones (None here) ride through."""
    channel = f"test-drive-limits-{next(_n)}"
    base = load_robot_config("can_arm", interface="virtual", channel=channel, hold_s=0.0)
    cfg = replace(
        base,
        joints=base.joints[:2],  # two emulated drives: less Python work in this process than six
        feedback_timeout_s=timeout_s or base.feedback_timeout_s,
        max_missed_feedback=missed or base.max_missed_feedback,
    )
    rack = DriveRack("virtual", channel, cfg.node_ids, drive_options={"tpdo_stall": (40, 0.03)})
    arm = CanArm(cfg)
    try:
        arm.connect()
        times = time_ticks(arm, cfg.fps, 200, lambda i: np.full(2, 0.001 * (i % 10)))
        late = arm.feedback_latency_stats()["late"]
    finally:
        arm.disconnect()
        rack.close()
    if stops:
        assert arm.stop_record is not None and arm.stop_record.reason is StopReason.COMM_LOSS
        assert times.size < 200
    else:
        assert arm.stop_record.reason is StopReason.END, arm.stop_record  # only the disconnect
        assert times.size == 200 and late > 0.05  # the bursts did happen
