"""The SO-101 arm (FeetechArm) against the STS3215 chain emulator: bring-up writes LeRobot's calibration
(once), ticks in LeRobot units, limits, step limit, NaN guard, and every injected fault safe-stops the arm
with torque off and nothing sent after the stop; `rt-run --robot so101 --dry-run` end to end."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.calibration import parse_calibration
from edgeact.firmware_bridge.errors import (
    BusStoppedError,
    CommTimeoutError,
    FeetechOverheatError,
    FeetechOverloadError,
    InvalidCommandError,
)
from edgeact.firmware_bridge.feetech import control_table as ct
from edgeact.firmware_bridge.feetech.arm import FeetechArm
from edgeact.firmware_bridge.feetech.config import load_feetech_config
from edgeact.firmware_bridge.safety import StopReason
from edgeact.firmware_bridge.sim.feetech_chain import Fault, FeetechChainEmulator


@pytest.fixture
def so101():
    config = load_feetech_config("so101")
    emu = FeetechChainEmulator(config.ids)
    emu.start()
    cfg = replace(config, port=emu.port, hold_s=0.0, timeout_s=0.05)
    arm = FeetechArm(cfg, parse_calibration(cfg.dry_run_calibration, "test"))
    yield emu, arm
    arm.disconnect()
    emu.stop()


def test_connect_writes_lerobot_calibration_once_and_reports_units(so101):
    emu, arm = so101
    state = arm.connect()
    cal = arm.calibration["gripper"]
    servo = emu.servos[6]
    assert servo.get(ct.HOMING_OFFSET) == cal.homing_offset == 1100
    assert (servo.get(ct.MIN_ANGLE_LIMIT), servo.get(ct.MAX_ANGLE_LIMIT)) == (600, 1600)
    assert servo.get(ct.MAX_TORQUE_LIMIT) == 500 and servo.get(ct.LOCK) == 1 and servo.torque
    # present = actual 2048 - offset 1100 = 948 counts: LeRobot's 0..100 gripper value
    assert state.positions[5] == pytest.approx((948 - 600) / 1000 * 100)
    assert arm.to_counts(state.positions)[5] == 948
    writes = {i: s.eeprom_writes for i, s in emu.servos.items()}
    arm.disconnect()
    arm2 = FeetechArm(arm.config, arm.calibration)
    arm2.connect()  # a second bring-up writes no EEPROM item
    assert {i: s.eeprom_writes for i, s in emu.servos.items()} == writes
    arm2.disconnect()


def test_step_clamps_to_calibrated_limits_and_step_limit(so101):
    emu, arm = so101
    start = arm.connect().positions.copy()
    _lo, hi = arm.limits
    target = start.copy()
    target[0] = 500.0  # far past the shoulder_pan limit
    arm.step(target)
    assert arm.last_command[0] == pytest.approx(start[0] + 10.0)  # max_step 10 deg per tick
    for _ in range(60):
        arm.step(target)
    assert arm.last_command[0] == hi[0]
    emu.settle(arm.bus.transport.tx_bytes)
    assert emu.servos[1].get(ct.GOAL_POSITION) == 3292  # range_max of the calibration


def test_nan_stops_with_torque_off_and_nothing_after(so101):
    emu, arm = so101
    arm.connect()
    with pytest.raises(InvalidCommandError, match="so101"):
        arm.step(np.full(6, np.nan))
    assert arm.stop_record.reason is StopReason.NAN
    emu.settle(arm.bus.transport.tx_bytes)
    assert not any(s.torque for s in emu.servos.values())
    sent = emu.rx_bytes
    with pytest.raises(BusStoppedError):
        arm.step(arm.state.positions)
    time.sleep(0.02)
    assert emu.rx_bytes == sent


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (Fault.OVERLOAD, FeetechOverloadError, StopReason.HARDWARE_ALERT),
        (Fault.OVERHEAT, FeetechOverheatError, StopReason.HARDWARE_ALERT),
        (Fault.NO_REPLY, CommTimeoutError, StopReason.COMM_LOSS),
    ],
)
def test_faults_stop_within_one_tick(so101, fault, error, reason):
    emu, arm = so101
    arm.connect()
    arm.step(arm.state.positions)
    emu.inject(fault, 3)
    with pytest.raises(error, match=r"servo 3 \(elbow_flex\)"):
        arm.step(arm.state.positions)
    assert arm.stop_record.reason is reason and arm.stop_record.tick == 2
    emu.settle(arm.bus.transport.tx_bytes)
    assert not any(s.torque for i, s in emu.servos.items() if i != 3 or fault is not Fault.NO_REPLY)
    sent = arm.bus.transport.tx_bytes
    with pytest.raises(BusStoppedError):
        arm.step(arm.state.positions)
    assert arm.bus.transport.tx_bytes == sent


def test_single_bad_checksum_or_late_reply_is_retried_without_a_stop(so101):
    emu, arm = so101
    arm.connect()
    emu.inject(Fault.BAD_CHECKSUM, 2, count=1)
    arm.step(arm.state.positions)
    emu.inject(Fault.LATE_REPLY, 4, count=1)
    arm.step(arm.state.positions)
    assert arm.stop_record is None and arm.bus.retried == 2


def test_rt_run_so101_dry_run_end_to_end(tmp_path):
    """The robot registry, the calibration and the emulator through `BusArmRobot` (the runtime's robot)."""
    from edgeact.runtime.robots import make_robot

    robot = make_robot("so101", dry_run=True)
    spec = robot.spec
    assert spec.state_names == ("shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos",
                                "wrist_flex.pos", "wrist_roll.pos", "gripper.pos")  # fmt: skip
    assert spec.fps == 30.0 and spec.action_low[5] == 0.0 and spec.action_high[5] == 100.0
    robot.connect()
    try:
        obs = robot.observe()
        target = obs.state.copy()
        target[5] = 80.0
        for _ in range(10):
            robot.command(target)
        assert robot.arm.last_command[5] == pytest.approx(80.0)
    finally:
        robot.disconnect()
    assert robot.stop_record.reason is StopReason.END


@pytest.mark.slow
def test_rt_run_cli_so101_dry_run(tmp_path, monkeypatch):
    """`rt-run --robot so101 --dry-run` as a user runs it: the C++ loop, cameras, bus and emulator."""
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("onnx")
    from edgeact.runtime.robots import make_robot

    path = Path(__file__).parents[2] / "runtime" / "core_graphs.py"
    if not path.is_file():
        pytest.skip("tests/runtime/core_graphs.py is not available")
    monkeypatch.syspath_prepend(str(path.parent))  # core_graphs imports its neighbour tiny_policy
    spec_ = importlib.util.spec_from_file_location("edgeact_test_core_graphs_ft", path)
    graphs = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(graphs)
    spec = make_robot("so101", dry_run=True, fps=10.0).spec  # slow: a busy test machine stalls cameras
    cam = spec.cameras[0]
    model = graphs.build_graph_policy(
        tmp_path / "policy", cameras=((cam.name, cam.height // 40, cam.width // 40, "NHWC"),),
        vectors=(("observation.state", spec.state_names),), action_dim=6, action_names=spec.action_names,
        chunk_size=8, fps=spec.fps,
    )  # fmt: skip
    config = tmp_path / "runtime.yaml"
    config.write_text("robot: so101\nstale_timeout_s: 5.0\nmax_consecutive_overruns: 1000\n")
    out = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "edgeact.runtime.cli", "--robot", "so101", "--model", str(model),
           "--dry-run", "--duration", "1.5", "--json", str(out), "--config", str(config),
           "--robot-option", "fps=10"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["robot"] == "so101" and summary["safe_stops"] == []
    assert summary["ticks"] >= 7  # about 1.5 s at 10 Hz
