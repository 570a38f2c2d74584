"""Stops that must always happen (issue 11, Dynamixel): the hold honoured with the bus watchdog shorter than
it, a line that keeps delivering bytes (another device, noise), signals while the bus waits, Ctrl-C and
SIGTERM during bring-up."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from edgeact.firmware_bridge.dynamixel import control_table as ct
from edgeact.firmware_bridge.dynamixel.arm import DynamixelArm
from edgeact.firmware_bridge.dynamixel.bus import DynamixelBus
from edgeact.firmware_bridge.errors import BusWatchdogExpiredError, CommTimeoutError
from edgeact.firmware_bridge.safety import StopReason
from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator, Fault
from edgeact.firmware_bridge.transport import SerialTransport
from edgeact.runtime.cameras import CameraRig
from edgeact.runtime.robots import make_robot

HOME = np.array([0, 0, 0, 0, 0, 0, 40.0])


def _in_thread(fn, limit_s: float):
    """Run `fn` in a thread; return (finished, seconds, exception). A hang shows as finished=False (the thread
    ends once the test closes the emulator's pty under it)."""
    out: dict = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            fn()
        except BaseException as err:  # handed back to the test
            out["err"] = err
        out["s"] = time.monotonic() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    return not thread.is_alive(), out.get("s"), out.get("err")


# --- item 3: the hold versus the bus watchdog -------------------------------------------------------------


def _servos_after(emu, arm):
    emu.settle(arm.bus.transport.tx_bytes)
    return list(emu.servos.values())


def test_hold_longer_than_the_watchdog_is_honoured(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(replace(cfg, hold_s=0.2, bus_watchdog_s=0.1, timeout_s=0.02))
    arm.connect()
    for _ in range(3):
        arm.step(HOME)
    assert emu.servos[1].get(ct.BUS_WATCHDOG) == 5  # armed: 5 x 20 ms
    arm.safe_stop("end")
    servos = _servos_after(emu, arm)
    assert [s.watchdog_expiries for s in servos] == [0] * len(servos)  # never expired during the hold
    assert [s.get(ct.BUS_WATCHDOG) for s in servos] == [0] * len(servos)  # left cleared, not -1
    assert not any(s.torque for s in servos)
    assert not any(s.ignored for s in servos)
    arm.disconnect()


def test_hold_after_a_host_stall_is_accepted(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(
        replace(cfg, hold_s=0.05, bus_watchdog_s=0.06, timeout_s=0.02, torque_off_on_stop=False)
    )
    arm.connect()
    arm.step(HOME)
    time.sleep(0.15)  # the host stalls: the servos' watchdog expires
    assert emu.servos[1].watchdog_expired
    with pytest.raises(BusWatchdogExpiredError):
        arm.step(HOME)
    assert arm.stop_record.reason is StopReason.BUS_WATCHDOG
    servos = _servos_after(emu, arm)
    assert not any(s.ignored for s in servos), {s.id: s.ignored for s in servos}  # the hold goal went in
    assert [s.get(ct.BUS_WATCHDOG) for s in servos if s.id in cfg.ids] == [0] * len(cfg.ids)
    assert all(s.torque for s in servos)  # torque_off_on_stop false: the servos hold
    for i in cfg.ids:  # ... where they are
        assert abs(emu.servos[i].get(ct.GOAL_POSITION) - emu.servos[i].get(ct.PRESENT_POSITION)) <= 1
    arm.disconnect()


# --- item 4: a line that keeps delivering bytes -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["status", "noise"])
def test_a_babbling_line_cannot_hold_a_transaction(kind):
    emu = DynamixelChainEmulator({1: ct.MODEL_XM430_W350, 2: ct.MODEL_XM430_W350})
    emu.start()
    bus = DynamixelBus(SerialTransport(emu.port), timeout_s=0.05, retries=2)
    bus.open()
    try:
        assert bus.read_register(1, ct.PRESENT_POSITION) == ct.CENTER_COUNT
        emu.babble(kind)
        assert bus.read_register(1, ct.PRESENT_POSITION) == ct.CENTER_COUNT  # answers still get through
        emu.inject(Fault.NO_REPLY, 2)  # servo 2 is silent while the other device keeps talking
        finished, seconds, err = _in_thread(
            lambda: bus.sync_read(ct.PRESENT_POSITION.address, 4, [1, 2]), 5.0
        )
        assert finished, "the sync read never returned on a babbling line"
        assert isinstance(err, CommTimeoutError) and "servo 2" in str(err), err
        # 3 attempts x (2 replies + 1 drain) x 50 ms = 0.45 s, plus scheduling on a busy machine
        assert seconds < 1.5, seconds
        assert emu.babbled_bytes > 1000
    finally:
        bus.close()
        emu.stop()


def test_babble_with_a_silent_servo_stops_the_arm(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(cfg)
    arm.connect()
    arm.step(HOME)
    emu.babble("status")
    emu.inject(Fault.NO_REPLY, 4)
    finished, _seconds, err = _in_thread(lambda: arm.step(HOME), 5.0)
    assert finished and isinstance(err, CommTimeoutError), err
    assert arm.stop_record.reason is StopReason.COMM_LOSS
    emu.stop_babble()
    servos = _servos_after(emu, arm)  # servo 4 is gone (no_reply also drops what it is sent)
    assert not any(s.torque for s in servos if s.id != 4)  # the stop reached the others through the babble


def test_sigint_while_the_bus_waits_reaches_the_safe_stop(widowx_emulator):
    emu, cfg = widowx_emulator
    arm = DynamixelArm(replace(cfg, timeout_s=0.3, bus_watchdog_s=2.0))
    arm.connect()
    arm.step(HOME)
    emu.babble("noise")
    emu.inject(Fault.NO_REPLY, 4)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            arm.step(HOME)  # 3 x 4 x 0.3 s at most: the signal arrives while it waits
    finally:
        timer.cancel()
    assert arm.stop_record.reason is StopReason.SIGINT
    emu.stop_babble()
    assert not any(s.torque for s in _servos_after(emu, arm) if s.id != 4)


# --- item 5: Ctrl-C and SIGTERM during bring-up -----------------------------------------------------------


@pytest.mark.parametrize(("sig", "exc", "reason"), [
    (None, KeyboardInterrupt, StopReason.SIGINT),
    (signal.SIGINT, KeyboardInterrupt, StopReason.SIGINT),
    (signal.SIGTERM, SystemExit, StopReason.SIGTERM),
])  # fmt: skip
def test_interrupt_while_waiting_for_the_first_frame_ends_in_torque_off(monkeypatch, sig, exc, reason):
    robot = make_robot("widowx", dry_run=True, hold_s=0.0)
    seen: dict = {}

    def start(_rig, wait_first_frame: bool = True) -> None:  # the arm is torqued on by now
        seen["emu"] = robot._emulator
        seen["torque_on"] = all(s.torque for s in robot._emulator.servos.values())
        if sig is None:
            raise KeyboardInterrupt
        os.kill(os.getpid(), sig)
        time.sleep(1.0)  # the handler raises here
        raise AssertionError("the signal did not interrupt the bring-up")

    def stop_emulator() -> None:
        seen["emu"].settle(robot.arm.bus.transport.tx_bytes)
        seen["emu"].stop()

    monkeypatch.setattr(CameraRig, "start", start)
    monkeypatch.setattr(robot, "_emulator_stop", stop_emulator)
    with pytest.raises(exc) as info:
        robot.connect()
    if exc is SystemExit:
        assert info.value.code == 143
    assert seen["torque_on"]
    assert not any(s.torque for s in seen["emu"].servos.values())  # the emulator saw torque off
    assert robot.stop_record.reason is reason
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the bring-up handlers are gone again
