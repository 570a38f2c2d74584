#!/usr/bin/env python3
"""Benchmark the firmware bridge against its device emulators and print two tables.

1. Bridge time per tick (encode + write + read + decode, i.e. `arm.step`) p50/p99/max for the WidowX 250
   (7 commanded servos, Sync Write + Sync Read through a real pty to the servo-chain emulator running in a
   separate process) and a 6-axis CiA 402 arm (6 RPDOs + SYNC + 6 TPDOs on python-can's virtual bus, drive
   emulators in this process), at 50 Hz and 200 Hz, with the bytes/frames per tick and the time those would
   occupy a real 1 Mbit/s line.
2. Fault injection: each fault, ticks from injection to safe stop, the stop reason and exit code, and what
   reached the wire after the stop (must be 0).

    python scripts/bench_bridge.py [--ticks 400] [--rates 50 200] [--json out.json]

Absolute times depend on the machine and its load; the emulators answer instantly (no baud-rate delay on a
pty or a virtual bus), so the wire column is computed from the byte/frame counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import sys
from dataclasses import asdict, replace

import numpy as np
from edgeact.firmware_bridge.canopen.arm import CanArm
from edgeact.firmware_bridge.config import load_robot_config
from edgeact.firmware_bridge.dynamixel.arm import DynamixelArm
from edgeact.firmware_bridge.sim import scenarios
from edgeact.firmware_bridge.sim.cia402_drive import DriveRack
from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator
from edgeact.firmware_bridge.transport import FrameCounter

CAN_FRAME_BITS = 47  # CAN 2.0A frame overhead without stuffing: SOF..EOF + IFS; +8 per data byte


def _serve_chain(conn) -> None:
    emu = DynamixelChainEmulator.for_arm(load_robot_config("widowx"))
    conn.send(emu.start())
    conn.recv()  # until the parent is done
    emu.stop()


def _targets(n_joints: int, scale: np.ndarray):
    def target(i: int) -> np.ndarray:
        return scale * math.sin(2 * math.pi * i / 100.0) * np.ones(n_joints)

    return target


def _row(name: str, fps: float, times: np.ndarray, per_tick: float, unit: str, wire_us: float, arm) -> dict:
    us = times * 1e6 if times.size else np.full(1, np.nan)
    stop = arm.stop_record
    return {"stopped": None if stop is None or not stop.is_fault else f"{stop.reason.value}: {stop.detail}",
            "arm": name, "rate_hz": fps, "ticks": int(us.size), "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max()), "per_tick": per_tick,
            "unit": unit, "wire_us_at_1mbps": wire_us,
            "overruns": int((times > 1.0 / fps).sum())}  # fmt: skip


def bench_widowx(fps: float, ticks: int) -> dict:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_chain, args=(child,), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        # Timing runs use wide safety margins (a shared machine stalls processes for 100s of ms); the fault
        # table below runs with the strict ones.
        cfg = replace(load_robot_config("widowx"), port=port, hold_s=0.0, timeout_s=0.05, bus_watchdog_s=2.0)
        arm = DynamixelArm(cfg)
        arm.connect()
        gripper = np.array([0.3] * 6 + [5.0])
        base = np.array([0.0] * 6 + [50.0])
        target = _targets(7, gripper)
        scenarios.time_ticks(arm, fps, 20, lambda i: base + target(i))  # warm-up
        tr = arm.bus.transport
        b0 = tr.tx_bytes + tr.rx_bytes
        times = scenarios.time_ticks(arm, fps, ticks, lambda i: base + target(i))
        per_tick = (tr.tx_bytes + tr.rx_bytes - b0) / max(1, times.size)
        arm.disconnect()
    finally:
        parent.send("stop")
        proc.join(5)
    # 10 bits per byte on the UART (start + 8 data + stop) at 1 Mbit/s
    return _row("widowx (7 servos)", fps, times, per_tick, "bytes", per_tick * 10 / 1.0, arm)


_channels = itertools.count()


def bench_can(fps: float, ticks: int) -> dict:
    channel = f"bench-can-{os.getpid()}-{next(_channels)}"
    cfg = scenarios.can_test_config(channel, fps=fps, max_missed_feedback=10, heartbeat_timeout_s=1.0)
    rack = DriveRack("virtual", channel, cfg.node_ids)
    counter = FrameCounter("virtual", channel)
    arm = CanArm(cfg)
    try:
        arm.connect()
        target = _targets(6, np.full(6, 0.3))
        scenarios.time_ticks(arm, fps, 20, target)
        n0 = len(counter.frames)
        times = scenarios.time_ticks(arm, fps, ticks, target)
        arm.disconnect()
        frames = counter.frames[n0:]
        cyclic = [m for m in frames if m.arbitration_id < 0x700]  # without the drives' heartbeats
        per_tick = len(cyclic) / max(1, times.size)
        wire_us = _bits(cyclic) / max(1, times.size)  # bits at 1 Mbit/s = microseconds
    finally:
        counter.close()
        rack.close()
    return _row("can arm (6 drives)", fps, times, per_tick, "frames", wire_us, arm)


def _bits(frames) -> int:
    return sum(CAN_FRAME_BITS + 8 * len(m.data) for m in frames)


def fault_table() -> list[dict]:
    rows = [asdict(scenarios.dynamixel_fault_run(f)) for f in scenarios.DXL_FAULTS]
    rows += [asdict(scenarios.can_fault_run(f)) for f in scenarios.CAN_FAULTS]
    for f in ("bad_crc", "no_reply", "late_reply"):
        row = asdict(scenarios.dynamixel_fault_run(f, max_ticks=3, count=1))
        row["fault"] = f"{f} (once)"
        rows.append(row)
    return rows


def print_tables(timing: list[dict], faults: list[dict]) -> None:
    print("Bridge time per tick (arm.step: encode + write + read + decode)")
    print(f"{'arm':<20}{'rate':>6}{'ticks':>7}{'p50 us':>9}{'p99 us':>9}{'max us':>9}{'overruns':>9}"
          f"{'per tick':>16}{'wire us @1Mbit/s':>18}")  # fmt: skip
    for r in timing:
        print(f"{r['arm']:<20}{r['rate_hz']:>6.0f}{r['ticks']:>7}{r['p50_us']:>9.0f}{r['p99_us']:>9.0f}"
              f"{r['max_us']:>9.0f}{r['overruns']:>9}{r['per_tick']:>9.1f} {r['unit']:<6}"
              f"{r['wire_us_at_1mbps']:>18.0f}")  # fmt: skip
        if r["stopped"]:
            print(f"    ^ stopped early after {r['ticks']} ticks: {r['stopped']}")
    print()
    print("Fault injection (ticks from injection to safe stop; traffic after the stop must be 0)")
    print(f"{'bus':<10}{'fault':<22}{'ticks to stop':>14}{'reason':>16}{'exit':>6}{'sent after stop':>17}")
    for r in faults:
        ticks = "no stop" if r["ticks_to_stop"] is None else str(r["ticks_to_stop"])
        print(f"{r['bus']:<10}{r['fault']:<22}{ticks:>14}{r['reason'] or '-':>16}{r['exit_code'] or '-':>6}"
              f"{r['sent_after_stop']:>10} {r['unit']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=400, help="timed ticks per arm and rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the fault runs log their safe stops as errors
    timing = [bench(fps, args.ticks) for bench in (bench_widowx, bench_can) for fps in args.rates]
    faults = [] if args.skip_faults else fault_table()
    print_tables(timing, faults)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"timing": timing, "faults": faults}, fh, indent=2)
    bad = [r for r in timing if r["stopped"]]
    bad += [r for r in faults if "once" not in r["fault"] and (r["ticks_to_stop"] or 99) > 2]
    bad += [r for r in faults if r["sent_after_stop"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
