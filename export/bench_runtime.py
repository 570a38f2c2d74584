"""`edgeact-bench`'s runtime-process measurements: the real-time loop's jitter and a fresh process's RSS.

Both run in a fresh runtime-only Python process (no torch imported), the process a robot computer runs:
- `loop`: the C++ loop at a fixed rate in async mode for N ticks, with or without the real-time options
  (SCHED_FIFO at a priority, `mlockall`, the loop thread pinned to one CPU: `LoopParams`), reporting the
  wake-up lateness of every tick. `mlockall` locks the whole process, which is why this is not done inside
  the bench process (it holds torch and the eager model).
- `probe`: peak RSS and time from process start to the first action of a process that loads the model.
`time_loop` and `runtime_process_probe` start them in a fresh interpreter for `edgeact-bench`.

    python -m edgeact.export.bench_runtime loop MODEL --ticks 1000 --spin-us 200 [--realtime 80 --cpu 1]
    python -m edgeact.export.bench_runtime probe MODEL
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def run_loop(
    model: Path,
    ticks: int,
    rate_hz: float,
    threads: int,
    realtime: int,
    cpu: int | None,
    spin_us: float = 0.0,
) -> dict:
    """The C++ loop in async mode on fixed random inputs; lateness (ns) of every tick."""
    from edgeact.runtime.core import Loop, LoopParams, Policy, PolicyParams

    policy = Policy.load(model, PolicyParams(intra_op_threads=threads))
    execution = dataclasses.replace(policy.execution, mode="async", n_action_steps=min(20, policy.chunk_size))
    session = policy.session(execution=execution)
    rng = np.random.default_rng(1)
    images = {c.name: rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8) for c in policy.cameras}
    state = rng.uniform(50, 450, size=policy.state_dim).astype(np.float32)
    session.reset(initial_command=np.zeros(policy.action_dim, np.float32))
    params = LoopParams(
        rate_hz=rate_hz,
        stale_timeout_s=1.0,
        max_consecutive_overruns=1_000_000,
        stop_on_fault=False,
        realtime_priority=realtime,
        lock_memory=realtime > 0,
        cpu_affinity=[cpu] if realtime > 0 and cpu is not None else None,
        spin_us=spin_us,
    )
    with Loop(session, params) as loop:
        last = -1
        while loop.stats().ticks < ticks:
            loop.post_observation(images, state)
            cmd = loop.wait_command(after_seq=last, timeout_s=1.0)
            if cmd is not None:
                last = cmd.seq
        stats = loop.stats()
        timings = loop.timings()
        edges, counts = loop.jitter_histogram()
    return {
        "rate_hz": rate_hz,
        "realtime": {
            "priority": realtime,
            "lock_memory": realtime > 0,
            "cpu": params.cpu_affinity,
            "spin_us": spin_us,
        },
        "realtime_warnings": list(stats.realtime_warnings),
        "ticks": int(stats.ticks),
        "overruns": int(stats.overruns),
        "safe_stopped": bool(stats.safe_stopped),
        "lateness_ns": timings["lateness"].astype(np.int64).tolist(),
        "tick_ns": timings["total"].astype(np.int64).tolist(),
        "histogram": {"edges_us": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "torch_imported": "torch" in sys.modules,
    }


def run_probe(model: Path, release_load_memory: bool = True) -> dict[str, Any]:
    """Time to first action (from the process start) and RSS of this process after loading `model`."""
    t0 = time.monotonic()
    from edgeact.runtime.cli import process_age_s, rss_mb

    age = process_age_s()
    from edgeact.runtime.core import Policy, PolicyParams

    p = Policy.load(model, PolicyParams(release_load_memory=release_load_memory))
    s = p.session()
    s.reset()
    imgs = {c.name: np.zeros((c.height, c.width, 3), np.uint8) for c in p.cameras}
    s.step(imgs, np.zeros(p.state_dim, np.float32))
    first = (age or 0.0) + time.monotonic() - t0
    for _ in range(20):
        s.step(imgs, np.zeros(p.state_dim, np.float32))
    return {
        "time_to_first_action_s": first,
        "torch_imported": "torch" in sys.modules,
        "release_load_memory": release_load_memory,
        **rss_mb(),
    }


def in_subprocess(argv: list[str]) -> dict[str, Any]:
    """Run this module's `argv` in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, "-m", "edgeact.export.bench_runtime", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_loop(
    model: Path, ticks: int, rate_hz: float, threads: int, realtime: int = 0, spin_us: float = 0.0
) -> dict[str, Any]:
    """The C++ loop at `rate_hz` in async mode in a fresh runtime-only process (`bench_runtime loop`);
    `realtime` > 0: SCHED_FIFO at that priority, mlockall and the loop thread pinned to the last CPU;
    `spin_us` > 0: the last `spin_us` before each deadline busy-waited (LoopParams.spin_us)."""
    argv = ["loop", str(model), "--ticks", str(ticks), "--rate", str(rate_hz), "--threads", str(threads)]
    argv += ["--spin-us", str(spin_us)]
    if realtime > 0:
        argv += ["--realtime", str(realtime), "--cpu", str((os.cpu_count() or 1) - 1)]
    return in_subprocess(argv)


def runtime_process_probe(model: Path, release_load_memory: bool = True) -> dict[str, Any]:
    """RSS and time to first action of a fresh runtime-only process (no torch) running the model."""
    return in_subprocess(["probe", str(model)] + ([] if release_load_memory else ["--keep-load-memory"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgeact.export.bench_runtime", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("loop")
    lp.add_argument("model", type=Path)
    lp.add_argument("--ticks", type=int, default=1000)
    lp.add_argument("--rate", type=float, default=50.0)
    lp.add_argument("--threads", type=int, default=1)
    lp.add_argument("--realtime", type=int, default=0, help="SCHED_FIFO priority + mlockall + --cpu (0: off)")
    lp.add_argument("--cpu", type=int, default=None, help="with --realtime: pin the loop thread to this CPU")
    lp.add_argument(
        "--spin-us", type=float, default=0.0, help="LoopParams.spin_us: busy-wait before each deadline"
    )
    pp = sub.add_parser("probe")
    pp.add_argument("model", type=Path)
    pp.add_argument("--keep-load-memory", action="store_true", help="PolicyParams(release_load_memory=False)")
    args = p.parse_args(argv)
    if args.cmd == "loop":
        res = run_loop(args.model, args.ticks, args.rate, args.threads, args.realtime, args.cpu, args.spin_us)
    else:
        res = run_probe(args.model, release_load_memory=not args.keep_load_memory)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
