"""Every injected fault ends in a safe stop within two ticks, and nothing reaches the wire after it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from edgeact.firmware_bridge.sim import scenarios

DXL_REASONS = {
    "bad_crc": "comm_loss",
    "no_reply": "comm_loss",
    "late_reply": "comm_loss",
    "hardware_alert": "hardware_alert",
    "watchdog_expiry": "bus_watchdog",
    "nan": "nan",
    "host_stall": "bus_watchdog",
}
CAN_REASONS = {"emcy": "emcy", "heartbeat_loss": ("heartbeat_loss", "comm_loss"), "nan": "nan"}


@pytest.fixture(autouse=True)
def _no_gripper_step_limit(monkeypatch):
    """The scenarios command `home` from wherever the emulated servos start: the gripper's own max_step
    (5 mm) would make that first jump a `limit` stop now that the bridge checks instead of clamping
    (issue 11), and these tests are about bus faults."""
    make = scenarios.widowx_test_config

    def without_joint_steps(port, **overrides):
        cfg = make(port, **overrides)
        return replace(cfg, joints=tuple(replace(j, max_step=None) for j in cfg.joints))

    monkeypatch.setattr(scenarios, "widowx_test_config", without_joint_steps)


@pytest.mark.parametrize("fault", scenarios.DXL_FAULTS)
def test_dynamixel_fault_stops_within_two_ticks(fault):
    res = scenarios.dynamixel_fault_run(fault, fps=50.0, warmup=3)
    assert res.ticks_to_stop is not None and res.ticks_to_stop <= 2, res
    assert res.reason == DXL_REASONS[fault]
    assert res.exit_code != 0
    assert res.sent_after_stop == 0


@pytest.mark.parametrize("fault", ["bad_crc", "no_reply", "late_reply"])
def test_dynamixel_transient_fault_is_retried_without_a_stop(fault):
    res = scenarios.dynamixel_fault_run(fault, fps=50.0, warmup=3, max_ticks=3, count=1)
    assert res.ticks_to_stop is None and res.reason is None, res


@pytest.mark.parametrize("fault", scenarios.CAN_FAULTS)
def test_can_fault_stops_within_two_ticks(fault):
    res = scenarios.can_fault_run(fault, fps=200.0, warmup=3)
    assert res.ticks_to_stop is not None and res.ticks_to_stop <= 2, res
    expected = CAN_REASONS[fault]
    assert res.reason in (expected if isinstance(expected, tuple) else (expected,))
    assert res.exit_code != 0
    assert res.sent_after_stop == 0
