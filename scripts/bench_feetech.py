"""Benchmark of the SO-101 (Feetech STS3215) bridge against the pty emulator: per-tick bus exchange time at
30 Hz and 100 Hz, bytes per tick, and the fault table (time from the faulty tick to the safe stop).

    python scripts/bench_feetech.py [--ticks 300] [--rates 30 100] [--json out.json]

Exit status 1 when a fault took more than one tick to stop the arm or anything was sent after a stop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from dataclasses import replace

import numpy as np
from edgeact.firmware_bridge.calibration import parse_calibration
from edgeact.firmware_bridge.errors import BridgeError
from edgeact.firmware_bridge.feetech.arm import FeetechArm
from edgeact.firmware_bridge.feetech.config import load_feetech_config
from edgeact.firmware_bridge.sim.feetech_chain import FeetechChainEmulator


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _arm(**kw):
    cfg = load_feetech_config("so101")
    emu = FeetechChainEmulator(cfg.ids)
    emu.start()
    cfg = replace(cfg, port=emu.port, hold_s=0.0, timeout_s=0.05, **kw)
    return emu, FeetechArm(cfg, parse_calibration(cfg.dry_run_calibration, "so101 dry_run_calibration"))


def timing(rate: float, ticks: int) -> dict:
    emu, arm = _arm()
    state = arm.connect()
    period, times, nbytes = 1.0 / rate, [], []
    base = state.positions.copy()
    nxt = time.monotonic()
    for k in range(ticks):
        target = base + 5.0 * np.sin(2 * np.pi * k / rate)
        before = arm.bus.transport.tx_bytes + arm.bus.transport.rx_bytes
        t0 = time.perf_counter()
        arm.step(target)
        times.append((time.perf_counter() - t0) * 1e6)
        nbytes.append(arm.bus.transport.tx_bytes + arm.bus.transport.rx_bytes - before)
        nxt += period
        time.sleep(max(0.0, nxt - time.monotonic()))
    arm.disconnect()
    emu.stop()
    p50, p99 = np.percentile(times, [50, 99])
    per_tick = int(np.median(nbytes))
    return {"rate": rate, "p50_us": float(p50), "p99_us": float(p99), "bytes_per_tick": per_tick,
            "line_ms_at_1M": per_tick * 10 / 1000}  # fmt: skip


def fault(name: str, rate: float = 30.0) -> dict:
    emu, arm = _arm()
    arm.connect()
    for _ in range(3):
        arm.step(arm.state.positions)
    if name == "nan":
        pass
    else:
        emu.inject(name, 3, count=None if name in ("no_reply", "bad_checksum") else 1)
    t0 = time.perf_counter()
    ticks = 0
    try:
        for _ in range(5):
            ticks += 1
            arm.step(np.full(6, np.nan) if name == "nan" else arm.state.positions)
            time.sleep(1.0 / rate)
    except BridgeError:
        pass
    stop_ms = (time.perf_counter() - t0) * 1e3
    stopped = arm.stop_record is not None
    emu.settle(arm.bus.transport.tx_bytes)
    sent = emu.rx_bytes
    with contextlib.suppress(BridgeError):
        arm.step(arm.state.positions)
    time.sleep(0.05)
    after = emu.rx_bytes - sent
    torque_on = [i for i, s in emu.servos.items() if s.torque]
    reason = arm.stop_record.reason.value if stopped else None
    arm.disconnect()
    emu.stop()
    return {"fault": name, "stopped": stopped, "reason": reason, "ticks": ticks if stopped else None,
            "time_to_stop_ms": stop_ms if stopped else None, "bytes_after_stop": after,
            "torque_on": torque_on}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--rates", type=float, nargs="+", default=[30.0, 100.0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [timing(r, args.ticks) for r in args.rates]
    faults = [fault(n) for n in ("bad_checksum", "no_reply", "late_reply", "overload", "overheat", "nan")]
    print(f"CPU: {_cpu()}")
    print(f"{'rate':>6} {'p50 us':>9} {'p99 us':>9} {'bytes/tick':>11} {'line ms @1M':>12}")
    for r in rows:
        print(
            f"{r['rate']:6.0f} {r['p50_us']:9.0f} {r['p99_us']:9.0f} {r['bytes_per_tick']:11d} "
            f"{r['line_ms_at_1M']:12.2f}"
        )
    print(
        f"{'fault':>13} {'stopped':>8} {'reason':>15} {'ticks':>6} {'stop ms':>8} {'bytes after':>12} "
        "torque on"
    )
    for f in faults:
        ms = "-" if f["time_to_stop_ms"] is None else f"{f['time_to_stop_ms']:.1f}"
        print(f"{f['fault']:>13} {f['stopped']!s:>8} {f['reason']!s:>15} {f['ticks']!s:>6} {ms:>8} "
              f"{f['bytes_after_stop']:12d} {f['torque_on']}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu": _cpu(), "timing": rows, "faults": faults}, fh, indent=2)
    # late_reply with count 1 is retried: no stop expected
    bad = [f for f in faults if f["bytes_after_stop"] or (f["fault"] != "late_reply" and f["ticks"] != 1)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
