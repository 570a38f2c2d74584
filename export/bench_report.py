"""`edgeact-bench`'s report: the text table (fp32 and int8 rows labelled apart) and the PNG histograms."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

MULTI_THREAD_NOTE = (
    "note: with more than 1 thread the interleaved steps are not comparable: after each call the thread "
    "pools of ONNX Runtime and torch spin-wait for work and take CPU from the other (docs/rt-run.md); "
    "compare speed-ups at --threads 1"
)


def format_table(results: dict[str, Any]) -> str:
    lines = []
    if results.get("threads", 1) > 1:
        lines.append(MULTI_THREAD_NOTE)
    for name, res in results["sizes"].items():
        lines.append(
            f"\n{name}: ACT {res['params_millions']:.1f} M parameters, {res['ticks']} steps, "
            f"{results['threads']} thread(s)"
        )
        lines.append(f"  {'stage':<26} {'p50 us':>10} {'p99 us':>10} {'max us':>10}")
        rows = [(f"runtime fp32 {k}", v) for k, v in res["runtime"].items()]
        q = res.get("int8")
        rows += [(f"runtime INT8 {k}", v) for k, v in (q["runtime"] if q else {}).items()]
        rows += [(f"eager fp32 {k}", v) for k, v in res["eager"].items()]
        for label, st in rows:
            lines.append(f"  {label:<26} {st['p50_us']:>10.1f} {st['p99_us']:>10.1f} {st['max_us']:>10.1f}")
        lines.append(
            f"  fp32 runtime speed-up over eager (fp32): p50 {res['speedup_p50']:.2f}x, p99 "
            f"{res['speedup_p99']:.2f}x; runtime p99/p50 {res['runtime_p99_over_p50']:.2f}"
        )
        if q:
            err = q["parity"]["max_abs_err_normalized"]
            lines.append(
                f"  INT8 runtime ({q['model_mb']:.1f} MB vs fp32 {res['model_mb']:.1f} MB): p50 speed-up "
                f"{q['speedup_over_eager_fp32_p50']:.2f}x over fp32 eager, "
                f"{q['speedup_over_runtime_fp32_p50']:.2f}x over the fp32 runtime; int8 parity loss "
                f"{err:.3g} action std (bound {q['bound']}, {'within' if q['within_bound'] else 'OVER'}"
                f" the bound; random weights, exported with --force)"
            )
    for key in ("loop", "loop_spin", "loop_realtime"):
        loop = results.get(key)
        if loop:
            j, rt = loop["jitter"], loop["realtime"]
            how = (
                f"SCHED_FIFO {rt['priority']}, mlockall, CPU {rt['cpu']}"
                if rt["priority"]
                else "default scheduler"
            )
            if rt.get("spin_us"):
                how += f", spin {rt['spin_us']:g} us"
            lines.append(
                f"\nloop at {loop['rate_hz']:.0f} Hz (async, {loop['size']}, {how}): {loop['ticks']} ticks, "
                f"{loop['overruns']} overruns; jitter p50 {j['p50_us']:.1f} us, p99 {j['p99_us']:.1f} us, "
                f"max {j['max_us']:.1f} us"
            )
            for w in loop["realtime_warnings"]:
                lines.append(f"  refused: {w}")
    for key, label in (
        ("runtime_process_keep", "fp32 model, release_load_memory=False"),
        ("runtime_process", "fp32 model"),
        ("runtime_process_int8", "INT8 model"),
    ):
        probe = results.get(key)
        if probe:
            lines.append(
                f"runtime process ({label}): peak RSS {probe.get('peak_rss_mb', math.nan):.0f} MiB, "
                f"RSS after 21 steps {probe.get('rss_mb', math.nan):.0f} MiB, "
                f"time to first action {probe['time_to_first_action_s']:.2f} s, "
                f"torch imported: {probe['torch_imported']}"
            )
    lines.append(f"bench process peak RSS {results.get('bench_peak_rss_mb', float('nan')):.0f} MiB")
    return "\n".join(lines)


def write_png(results: dict[str, Any], path: Path, raw: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = [k for k in ("loop", "loop_spin", "loop_realtime") if k in raw]
    n = len(results["sizes"]) + len(loops)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], results["sizes"].items(), strict=False):
        rt = np.asarray(raw[name]["runtime"]) / 1e6
        eg = np.asarray(raw[name]["eager"]) / 1e6
        bins = np.geomspace(max(min(rt.min(), eg.min()) * 0.9, 1e-3), max(rt.max(), eg.max()) * 1.1, 40)
        ax.hist(rt, bins=bins, alpha=0.7, label=f"C++ runtime (p50 {np.median(rt):.1f} ms)")
        ax.hist(eg, bins=bins, alpha=0.7, label=f"PyTorch eager (p50 {np.median(eg):.1f} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("control step (ms)")
        ax.set_ylabel("steps")
        ax.set_title(f"{name}: speed-up {res['speedup_p50']:.2f}x at p50")
        ax.legend(fontsize=8)
    for ax, key in zip(axes[0][len(results["sizes"]) :], loops, strict=True):
        late = np.abs(np.asarray(raw[key])) / 1e3
        ax.hist(late, bins=np.geomspace(max(late.min(), 0.1), max(late.max(), 1.0) * 1.1, 40))
        ax.set_xscale("log")
        ax.set_xlabel("tick wake-up lateness (us)")
        rt = "SCHED_FIFO" if key == "loop_realtime" else "default scheduler"
        if results[key]["realtime"].get("spin_us"):
            rt += f", spin {results[key]['realtime']['spin_us']:g} us"
        ax.set_title(f"loop jitter at {results[key]['rate_hz']:.0f} Hz, {rt}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
