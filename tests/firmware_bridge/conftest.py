"""Firmware bridge test fixtures: the WidowX config pointed at a servo-chain emulator behind a pty."""

from __future__ import annotations

from dataclasses import replace

import pytest
from edgeact.firmware_bridge.config import load_robot_config
from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator


@pytest.fixture
def widowx_emulator():
    config = load_robot_config("widowx")
    emu = DynamixelChainEmulator.for_arm(config)
    emu.start()
    # Generous timeouts: this machine is shared, and the emulator is a Python thread.
    # No step limit (the gripper's own included): these tests are about the bus, and jump between targets.
    joints = tuple(replace(j, max_step=None) for j in config.joints)
    cfg = replace(
        config, port=emu.port, hold_s=0.0, timeout_s=0.05, bus_watchdog_s=0.5, max_step=None, joints=joints
    )
    yield emu, cfg
    emu.stop()
