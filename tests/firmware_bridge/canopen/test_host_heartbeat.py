"""The host heartbeat and the drives' reaction to losing it (issue 11), on python-can's virtual bus.

Bring-up configures each drive's heartbeat consumer (CiA 301, 0x1016) for the host's heartbeat and its abort
connection option (CiA 402, 0x6007); when the host's heartbeat stops, every drive applies that reaction within
the consumer time. The SIGKILL of a real host process is in test_host_death_netns.py.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.canopen.arm import CanArm
from edgeact.firmware_bridge.canopen.cia402 import State
from edgeact.firmware_bridge.sim.cia402_drive import DriveRack
from edgeact.firmware_bridge.sim.scenarios import can_test_config
from edgeact.firmware_bridge.transport import FrameCounter

_n = itertools.count()


@pytest.fixture
def rig():
    channel = f"test-host-hb-{next(_n)}"
    cfg = can_test_config(channel)
    rack = DriveRack("virtual", channel, cfg.node_ids)
    counter = FrameCounter("virtual", channel)
    yield cfg, rack, counter
    counter.close()
    rack.close()


def test_bring_up_configures_the_consumer_and_the_reaction(rig):
    cfg, rack, counter = rig
    cfg = replace(cfg, host_node_id=100, host_heartbeat_ms=10, host_heartbeat_timeout_ms=250)
    arm = CanArm(cfg)
    arm.connect()
    try:
        for drive in rack.drives.values():
            assert cod.parse_heartbeat_consumer_entry(drive._get(cod.HEARTBEAT_CONSUMER, 1)) == (100, 250)
            assert drive._get(cod.ABORT_CONNECTION_OPTION) == cfg.abort_connection_option == 3
        n0 = counter.count(lambda m: m.arbitration_id == 0x700 + 100)
        time.sleep(0.2)
        beats = [m for m in list(counter.frames) if m.arbitration_id == 0x700 + 100][n0:]
        assert len(beats) >= 10 and all(bytes(m.data) == b"\x05" for m in beats)  # operational, every 10 ms
        assert all(d.cia402_state is State.OPERATION_ENABLED for d in rack.drives.values())
    finally:
        arm.disconnect()


def _emcy_senders(counter: FrameCounter, code: int) -> set[int]:
    frames = [m for m in list(counter.frames) if cod.EMCY_BASE < m.arbitration_id < 0x100]
    return {m.arbitration_id - cod.EMCY_BASE for m in frames if int.from_bytes(m.data[:2], "little") == code}


@pytest.mark.parametrize(
    ("option", "state", "emcy"),
    [
        (cod.ABORT_FAULT_SIGNAL, State.FAULT, cod.EMCY_HEARTBEAT),
        (cod.ABORT_DISABLE_VOLTAGE, State.SWITCH_ON_DISABLED, cod.EMCY_HEARTBEAT),
        (cod.ABORT_QUICK_STOP, State.QUICK_STOP_ACTIVE, cod.EMCY_HEARTBEAT),
    ],
)
def test_a_silent_host_stops_every_drive_within_the_consumer_time(rig, option, state, emcy):
    cfg, rack, counter = rig
    timeout_ms = 150  # generous for a busy test machine: the heartbeat thread must not stall this long
    arm = CanArm(
        replace(
            cfg, host_heartbeat_ms=20, host_heartbeat_timeout_ms=timeout_ms, abort_connection_option=option
        )
    )
    arm.connect()
    try:
        for _ in range(5):
            arm.step(np.full(6, 0.01))
        assert all(d.cia402_state is State.OPERATION_ENABLED for d in rack.drives.values())
        assert all(d.comm_losses == 0 for d in rack.drives.values())
        arm._heartbeat_task.stop()  # what a killed host leaves: no heartbeat, no frames at all
        t0 = time.monotonic()
        left: dict[int, float] = {}
        while len(left) < 6 and time.monotonic() - t0 < 2.0:
            for i, d in rack.drives.items():
                if i not in left and d.cia402_state is not State.OPERATION_ENABLED:
                    left[i] = time.monotonic() - t0
            time.sleep(0.002)
        assert sorted(left) == list(cfg.node_ids), left
        assert all(d.cia402_state is state for d in rack.drives.values())
        assert max(left.values()) <= timeout_ms / 1000 + 0.25, left
        assert min(left.values()) >= (timeout_ms - 20) / 1000 - 0.005, left
        time.sleep(0.05)
        assert _emcy_senders(counter, emcy) == set(cfg.node_ids)
    finally:
        arm.disconnect()


def test_a_drive_stopped_by_host_loss_is_brought_up_again(rig):
    cfg, rack, _ = rig
    arm = CanArm(replace(cfg, host_heartbeat_timeout_ms=100, abort_connection_option=cod.ABORT_FAULT_SIGNAL))
    arm.connect()
    arm._heartbeat_task.stop()
    deadline = time.monotonic() + 2.0
    while (
        any(d.cia402_state is not State.FAULT for d in rack.drives.values()) and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    assert all(d.cia402_state is State.FAULT for d in rack.drives.values())
    arm.disconnect()
    again = CanArm(cfg)  # a new host: fault reset through the state machine
    again.connect()
    try:
        assert all(d.cia402_state is State.OPERATION_ENABLED for d in rack.drives.values())
        again.step(np.zeros(6))
    finally:
        again.disconnect()
