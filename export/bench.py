"""`edgeact-bench`: latency of the C++ runtime against PyTorch eager, on ACT policies at real sizes.

    edgeact-bench [--quick] [--sizes pusht arm] [--json bench.json] [--png bench.png] [--min-speedup X]

For each size it builds an ACT policy with random weights (default ACTConfig: ResNet18, dim 512, chunk 100),
saves it as a checkpoint and exports it with `export-policy` (the real exporter), then times in one process:
- the C++ runtime: `Session.step` (pre, infer, ensemble, post and the whole step) on fixed random frames;
- PyTorch eager on the same weights with the same temporal ensembling (`edgeact.runtime.ensemble_ref`):
  HWC -> CHW conversion, `predict_chunk` and the ensembler per step;
- the same policy quantized to int8 (`export-policy --quantize int8 --force`, PushT size by default): its
  runtime step, its parity loss and its speed-up over the fp32 eager step, always labelled int8;
- the real-time loop: the PushT policy in async mode ticking at 50 Hz, wake-up lateness (jitter) per tick, in
  a torch-free subprocess; again with a 200 us spin before each deadline (`--loop-spin-us`), and with
  `--loop-realtime P` with SCHED_FIFO P + mlockall + one pinned CPU (and the spin);
- RSS and time to first action of a torch-free runtime process, for the fp32 and the int8 model.

Runtime rows: `pre`, `infer`, `ensemble`, `post` (C++ stages), `core` (the whole C++ `Session::step`), `step`
(the call as Python sees it), `overhead` = core - infer (what the runtime adds around the model; the C++ loop
pays this) and `python` = step - core (the Python face and the binding; only Python callers pay this).

Sizes: `pusht` (one 96x96 camera, state 2, action 2, 10 Hz) and `arm` (two 480x640 cameras, state 7,
action 7, 50 Hz). Absolute times depend on the machine and its load; the speed-up (eager p50 / runtime p50,
measured in the same run) is what `--min-speedup` and the CI test check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeact.export.bench_report import format_table, write_png
from edgeact.export.bench_runtime import runtime_process_probe, time_loop
from edgeact.export.bench_steppers import EagerStepper, RuntimeStepper
from edgeact.runtime.runner import percentiles_us

log = logging.getLogger(__name__)

# Floor for the CI check (tests/export/test_bench_ci.py): eager p50 / runtime p50 of the full control step
# at the PushT size, set well under the ratios measured on the shared 2-core machine (docs/rt-run.md).
CI_SPEEDUP_FLOOR = 1.3


@dataclass(frozen=True)
class BenchSize:
    name: str
    cameras: tuple[tuple[str, int, int], ...]  # (feature, height, width)
    state_dim: int
    action_dim: int
    fps: int


SIZES = {
    "pusht": BenchSize("pusht", (("observation.image", 96, 96),), 2, 2, 10),
    "arm": BenchSize(
        "arm", (("observation.images.top", 480, 640), ("observation.images.wrist", 480, 640)), 7, 7, 50
    ),
}


def _features_and_stats(size: BenchSize) -> tuple[dict[str, Any], dict[str, Any]]:
    features: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for key, h, w in size.cameras:
        features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channel"]}
        stats[key] = {"mean": [[[0.5]], [[0.45]], [[0.4]]], "std": [[[0.25]], [[0.25]], [[0.25]]]}
    for key, dim in (("observation.state", size.state_dim), ("action", size.action_dim)):
        # PushT uses lerobot/pusht's names, so its export also runs under `rt-run --robot pusht-sim`
        names = [f"motor_{i}" if size.name == "pusht" else f"joint_{i}" for i in range(dim)]
        features[key] = {"dtype": "float32", "shape": [dim], "names": names}
        stats[key] = {"mean": [100.0] * dim, "std": [50.0] * dim, "min": [0.0] * dim, "max": [500.0] * dim}
    return features, stats


def build_policy(size: BenchSize, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A default-size ACTPolicy with random weights and its checkpoint config dict."""
    import torch
    from edgeact.train.config import ACTConfig
    from edgeact.train.model import ACTPolicy

    torch.manual_seed(seed)
    cfg = ACTConfig()
    features, stats = _features_and_stats(size)
    policy = ACTPolicy(cfg, features, stats).eval()
    doc = {
        "policy": asdict(cfg),
        "dataset": {
            "id": f"edgeact-bench/{size.name}",
            "fps": size.fps,
            "features": features,
            "stats": stats,
        },
        "train": {},
    }
    return policy, doc


_CHECKPOINTS: dict[Path, Path] = {}  # workdir -> the checkpoint the fp32 and int8 exports share


def export_policy(
    policy: Any, doc: dict[str, Any], workdir: Path, exporter: str = "dynamo", int8: bool = False
) -> Path:
    """Checkpoint, `export-policy --format onnx` (`int8`: `--quantize int8 --force`); the policy.onnx path.

    `--force`: random weights are not a trained policy, and the int8 bound is about trained ones; the loss is
    read back from the sidecar and reported next to the timings."""
    from edgeact.export.cli import main as export_main
    from edgeact.train.checkpoint import save_checkpoint

    step_dir = _CHECKPOINTS.get(workdir)
    if step_dir is None or not step_dir.is_dir():
        step_dir = _CHECKPOINTS[workdir] = save_checkpoint(workdir / "run", 0, policy=policy, config=doc)
    out = workdir / "int8" / "policy.onnx" if int8 else workdir / "policy.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        str(step_dir),
        "--format",
        "onnx",
        "--output",
        str(out),
        "--parity-frames",
        "0",
        "--parity-random",
        "1",
        "--exporter",
        exporter,
    ]
    if int8:
        argv += ["--quantize", "int8", "--force"]
    rc = export_main(argv)
    if rc != 0 or not out.is_file():
        raise RuntimeError(f"export-policy {' '.join(argv)} failed with exit code {rc}")
    return out


def bench_size(
    size: BenchSize, workdir: Path, ticks: int, threads: int, exporter: str, int8: bool = False
) -> dict[str, Any]:
    t0 = time.monotonic()
    policy, doc = build_policy(size)
    model = export_policy(policy, doc, workdir / size.name, exporter)
    export_s = time.monotonic() - t0
    model8 = export_policy(policy, doc, workdir / size.name, exporter, int8=True) if int8 else None
    runtime_step = RuntimeStepper(model, size, ticks, threads)
    int8_step = RuntimeStepper(model8, size, ticks, threads) if model8 is not None else None
    eager_step = EagerStepper(policy, size, ticks, threads)
    for i in range(ticks):  # interleaved, so that all see the same machine load
        runtime_step(i)
        if int8_step is not None:
            int8_step(i)
        eager_step(i)
    rt, eager = runtime_step.rows, eager_step.rows
    res: dict[str, Any] = {
        "model": str(model),
        "params_millions": sum(p.numel() for p in policy.parameters()) / 1e6,
        "export_s": export_s,
        "model_mb": model.stat().st_size / 1e6,
        "runtime": runtime_step.summary(),
        "eager": {k: percentiles_us(v) for k, v in eager.items()},
        "raw_step_ns": {"runtime": rt["step"].tolist(), "eager": eager["step"].tolist()},
    }
    r, e = res["runtime"]["step"], res["eager"]["step"]
    res["speedup_p50"] = e["p50_us"] / r["p50_us"]
    res["speedup_p99"] = e["p99_us"] / r["p99_us"]
    res["runtime_p99_over_p50"] = r["p99_us"] / r["p50_us"]
    if int8_step is not None and model8 is not None:
        res["int8"] = _int8_summary(model8, int8_step, res)
    return res


def _int8_summary(model8: Path, stepper: RuntimeStepper, res: dict[str, Any]) -> dict[str, Any]:
    """The int8 model's runtime rows, its ratios to the fp32 eager and fp32 runtime steps, and its loss."""
    from edgeact.export.quantize import INT8_MAX_NORMALIZED_ERR

    parity = json.loads(model8.with_suffix(".json").read_text()).get("parity", {})
    # the sidecar's parity block of an int8 export: the int8-vs-PyTorch errors at its top level
    loss = {k: parity.get(k) for k in ("max_abs_err", "max_abs_err_normalized", "cases", "real_frames")}
    rows = stepper.summary()
    return {
        "model": str(model8),
        "model_mb": model8.stat().st_size / 1e6,
        "runtime": rows,
        "speedup_over_eager_fp32_p50": res["eager"]["step"]["p50_us"] / rows["step"]["p50_us"],
        "speedup_over_runtime_fp32_p50": res["runtime"]["step"]["p50_us"] / rows["step"]["p50_us"],
        "parity": loss,
        "bound": INT8_MAX_NORMALIZED_ERR,
        "within_bound": (loss["max_abs_err_normalized"] or float("inf")) <= INT8_MAX_NORMALIZED_ERR,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeact-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run for CI: fewer steps and loop ticks")
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None, help="default: pusht arm")
    p.add_argument("--ticks", type=int, help="timed steps per size (default pusht 100, arm 20; quick 20, 5)")
    p.add_argument("--loop-ticks", type=int, help="loop ticks at 50 Hz (default 1000; quick 250; 0 skips)")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), help="export-policy exporter (quick: legacy)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both ONNX Runtime and torch")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--png", type=Path, help="latency histogram (default: beside --json)")
    p.add_argument("--workdir", type=Path, help="keep the exported policies here (default: a temp folder)")
    p.add_argument(
        "--int8",
        nargs="*",
        choices=sorted(SIZES),
        default=None,
        help="sizes that also get an int8 row (default: pusht; quick: none; no value: none)",
    )
    p.add_argument(
        "--loop-realtime",
        type=int,
        default=0,
        metavar="PRIO",
        help="also run the loop with SCHED_FIFO PRIO, mlockall and the last CPU pinned (reports both)",
    )
    p.add_argument(
        "--loop-spin-us",
        type=float,
        default=200.0,
        metavar="US",
        help="also run the loop with LoopParams.spin_us=US (0: no such row); the real-time row uses it too",
    )
    p.add_argument("--min-speedup", type=float, help="exit 1 when a size's p50 speed-up is below this")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    sizes = args.sizes or ["pusht", "arm"]
    # timed steps per size: the arm's eager step takes seconds on a small CPU
    default_ticks = {"pusht": 20, "arm": 5} if args.quick else {"pusht": 100, "arm": 20}
    exporter = args.exporter or ("legacy" if args.quick else "dynamo")
    loop_ticks = args.loop_ticks if args.loop_ticks is not None else (250 if args.quick else 1000)
    results: dict[str, Any] = {
        "quick": args.quick,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "exporter": exporter,
        "sizes": {},
    }
    raw: dict[str, Any] = {}
    for name in sizes:
        print(f"edgeact-bench: {name}: building, exporting and timing ...", file=sys.stderr, flush=True)
        ticks = args.ticks or default_ticks[name]
        int8 = name in (args.int8 if args.int8 is not None else ([] if args.quick else ["pusht"]))
        res = bench_size(SIZES[name], workdir, ticks, args.threads, exporter, int8=int8)
        res["ticks"] = ticks
        raw[name] = res.pop("raw_step_ns")
        results["sizes"][name] = res
    model = Path(results["sizes"][sizes[0]]["model"])
    spin = args.loop_spin_us
    for key, prio, spin_us in (
        ("loop", 0, 0.0),
        ("loop_spin", 0, spin),
        ("loop_realtime", args.loop_realtime, spin),
    ):
        if loop_ticks <= 0 or (key == "loop_realtime" and prio <= 0) or (key == "loop_spin" and spin <= 0):
            continue
        loop = time_loop(model, loop_ticks, 50.0, args.threads, realtime=prio, spin_us=spin_us)
        raw[key] = np.asarray(loop.pop("lateness_ns"), np.int64)
        loop["jitter"] = percentiles_us(np.abs(raw[key]))
        loop["tick"] = percentiles_us(np.asarray(loop.pop("tick_ns"), np.int64))
        loop["size"] = sizes[0]
        results[key] = loop
    results["runtime_process"] = runtime_process_probe(model)
    # the same without malloc_trim after load (PolicyParams.release_load_memory=False), for comparison
    results["runtime_process_keep"] = runtime_process_probe(model, release_load_memory=False)
    int8_model = results["sizes"][sizes[0]].get("int8", {}).get("model")
    if int8_model:
        results["runtime_process_int8"] = runtime_process_probe(Path(int8_model))
    from edgeact.runtime.cli import rss_mb

    results["bench_peak_rss_mb"] = rss_mb().get("peak_rss_mb")
    return results, raw


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    with tempfile.TemporaryDirectory(prefix="edgeact-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        results, raw = run(args, workdir)
        if args.workdir is None:  # the temp models are gone after this block
            for res in results["sizes"].values():
                res["model"] = Path(res["model"]).name
                if "int8" in res:
                    res["int8"]["model"] = Path(res["int8"]["model"]).name
    print(format_table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.json.with_name(f".{args.json.name}.tmp-{os.getpid()}")
        tmp_json.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp_json, args.json)
    png = args.png or (args.json.with_suffix(".png") if args.json is not None else None)
    if png is not None:
        write_png(results, png, raw)
    if args.min_speedup is not None:
        slow = {
            n: r["speedup_p50"] for n, r in results["sizes"].items() if r["speedup_p50"] < args.min_speedup
        }
        if slow:
            print(f"edgeact-bench: speed-up below {args.min_speedup}: {slow}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
