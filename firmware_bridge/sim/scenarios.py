"""Fault-injection and timing scenarios against the emulators (simulation only), shared by the tests and
`scripts/bench_bridge.py`.

A fault run: connect an arm to its emulator, run a few ticks at the configured rate on absolute deadlines,
inject one fault, tick until the arm safe-stops, then keep calling `step` and count what still reaches the
emulated wire (bytes received by the servo chain, or host frames on the CAN bus). That count must be 0.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from edgeact.firmware_bridge.canopen import od as cod
from edgeact.firmware_bridge.canopen.arm import CanArm
from edgeact.firmware_bridge.config import CanArmConfig, DynamixelArmConfig, load_robot_config
from edgeact.firmware_bridge.dynamixel.arm import DynamixelArm
from edgeact.firmware_bridge.errors import BridgeError, BusStoppedError
from edgeact.firmware_bridge.sim.cia402_drive import DriveRack
from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator, Fault
from edgeact.firmware_bridge.transport import FrameCounter

DXL_FAULTS = ("bad_crc", "no_reply", "late_reply", "hardware_alert", "watchdog_expiry", "nan", "host_stall")
CAN_FAULTS = ("emcy", "heartbeat_loss", "nan")
_channels = itertools.count()


@dataclass(frozen=True)
class FaultResult:
    bus: str
    fault: str
    ticks_to_stop: (
        int | None
    )  # ticks from the injection to the stop (1 = the first tick after it); None = none
    reason: str | None
    exit_code: int | None
    sent_after_stop: int  # bytes (Dynamixel) or host frames (CAN) on the wire after the stop
    unit: str


def _ticker(fps: float) -> Iterator[None]:
    """Absolute-deadline pacing: next += period; sleep until next; overruns are skipped, not bursted."""
    period = 1.0 / fps
    nxt = time.monotonic()
    while True:
        yield
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()


def widowx_test_config(port: str, **overrides: Any) -> DynamixelArmConfig:
    base = load_robot_config("widowx")
    assert isinstance(base, DynamixelArmConfig)
    # Generous timeouts: the emulator is a Python thread on a possibly busy machine.
    opts = {"port": port, "hold_s": 0.0, "timeout_s": 0.05, "bus_watchdog_s": 0.5, "max_step": None}
    return replace(base, **{**opts, **overrides})


def can_test_config(channel: str, **overrides: Any) -> CanArmConfig:
    base = load_robot_config("can_arm")
    assert isinstance(base, CanArmConfig)
    # a shared test machine can stall threads for tens of ms: keep the consumer time generous here
    opts = {
        "interface": "virtual",
        "channel": channel,
        "hold_s": 0.0,
        "feedback_timeout_s": 0.02,
        "heartbeat_timeout_s": 0.3,
    }
    return replace(base, **{**opts, **overrides})


def _run(
    arm: Any,
    fps: float,
    inject: Callable[[], None],
    wire: Callable[[], int],
    settle: Callable[[], None],
    warmup: int,
    max_ticks: int,
    home: np.ndarray,
) -> tuple[int | None, int]:
    ticks = _ticker(fps)
    for _ in range(warmup):
        next(ticks)
        arm.step(home)
    inject()
    stopped_at = None
    for k in range(1, max_ticks + 1):
        next(ticks)
        try:
            arm.step(home)
        except BusStoppedError:
            break
        except (BridgeError, ValueError):
            stopped_at = k
            break
    if stopped_at is None and arm.stop_record is None:
        return None, 0
    settle()
    before = wire()
    for _ in range(3):  # the loop keeps trying to command: nothing may go out
        next(ticks)
        with contextlib.suppress(BusStoppedError):
            arm.step(home)
    time.sleep(0.05)
    return stopped_at, wire() - before


def _connected_run(
    bus: str,
    fault: str,
    unit: str,
    arm: Any,
    close: Callable[[], None],
    run: Callable[[], tuple[int | None, int]],
) -> FaultResult:
    """Connect `arm` and `run()` the scenario (a `_run` call), then disconnect the arm and `close()` the
    emulator side, also on error; the result names `bus`, `fault` and the `unit` of what was counted."""
    try:
        arm.connect()
        ticks, sent = run()
    finally:
        arm.disconnect()
        close()
    rec = arm.stop_record if ticks is not None else None
    return FaultResult(bus, fault, ticks, rec and rec.reason.value, rec and rec.exit_code, sent, unit)


def dynamixel_fault_run(
    fault: str, *, fps: float = 50.0, warmup: int = 5, max_ticks: int = 10, count: int | None = None
) -> FaultResult:
    cfg0 = load_robot_config("widowx")
    emu = DynamixelChainEmulator.for_arm(cfg0, late_reply_s=0.1)  # twice the host timeout
    emu.start()
    arm = DynamixelArm(widowx_test_config(emu.port, bus_watchdog_s=0.5, fps=fps))
    home = np.array([0, 0, 0, 0, 0, 0, 40.0])
    nan_cmd = home.copy()
    nan_cmd[2] = np.nan

    def inject() -> None:
        if fault == "nan":
            home[:] = nan_cmd
        elif fault == "host_stall":
            time.sleep(0.6)  # longer than the 0.5 s bus watchdog
        else:
            emu.inject(Fault(fault), 4, count)

    return _connected_run(
        "dynamixel",
        fault,
        "bytes",
        arm,
        emu.stop,
        lambda: _run(
            arm,
            fps,
            inject,
            lambda: emu.rx_bytes,
            lambda: emu.settle(arm.bus.transport.tx_bytes),
            warmup,
            max_ticks,
            home,
        ),
    )


def is_host_frame(msg: Any) -> bool:
    """Frames only the host sends: NMT, SYNC, RPDOs, SDO requests."""
    cob = msg.arbitration_id
    return cob in (cod.NMT_ID, cod.SYNC_ID) or 0x200 <= cob < 0x580 or 0x600 <= cob < 0x680


def wait_quiet(counter: FrameCounter, quiet_s: float = 0.1, limit_s: float = 2.0) -> None:
    """Wait until the listener has seen every host frame sent so far (its count stays put for `quiet_s`):
    a listener thread that lags on a busy machine must not count frames of the stop as frames after it."""
    deadline = time.monotonic() + limit_s
    seen, since = counter.count(is_host_frame), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now_seen = counter.count(is_host_frame)
        if now_seen != seen:
            seen, since = now_seen, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def can_fault_run(fault: str, *, fps: float = 200.0, warmup: int = 5, max_ticks: int = 10) -> FaultResult:
    channel = f"edgeact-fault-{next(_channels)}"
    cfg = can_test_config(channel, fps=fps)
    rack = DriveRack("virtual", channel, cfg.node_ids)
    counter = FrameCounter("virtual", channel)
    arm = CanArm(cfg)
    home = np.zeros(len(cfg.joints))

    def inject() -> None:
        if fault == "nan":
            home[0] = np.nan
        elif fault == "emcy":
            rack.drives[3].inject_fault()
        elif fault == "heartbeat_loss":
            rack.drives[3].lose_heartbeat()
        else:
            raise ValueError(f"unknown CAN fault {fault!r}")

    def close() -> None:
        counter.close()
        rack.close()

    return _connected_run(
        "canopen",
        fault,
        "frames",
        arm,
        close,
        lambda: _run(
            arm,
            fps,
            inject,
            lambda: counter.count(is_host_frame),
            lambda: wait_quiet(counter),
            warmup,
            max_ticks,
            home,
        ),
    )


def time_ticks(arm: Any, fps: float, n: int, targets: Callable[[int], np.ndarray]) -> np.ndarray:
    """Seconds spent in `arm.step` (encode + write + read + decode) for up to `n` ticks paced at `fps`.

    A fault ends the run early: the times of the ticks before it are returned and the arm's `stop_record`
    says why.
    """
    out = np.empty(n)
    ticks = _ticker(fps)
    for i in range(n):
        next(ticks)
        t0 = time.perf_counter()
        try:
            arm.step(targets(i))
        except BridgeError:
            return out[:i]
        out[i] = time.perf_counter() - t0
    return out
