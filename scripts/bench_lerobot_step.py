"""Control-step latency: LeRobot's ACT `select_action` (temporal ensembling) against the runtime's
`Session.step` on the same weights, in one process, interleaved tick by tick.

    PYTHONPATH=<lerobot folder> .venv/bin/python scripts/bench_lerobot_step.py [--ticks 200] [--threads 1]

It builds LeRobot's ACT (lerobot 0.4.x) with random weights at the PushT config (one 96x96 camera, state 2,
action 2, chunk 20, ensembling m = 0.01; everything else LeRobot's default, no pretrained backbone), saves it
with its pre/post-processors as a `pretrained_model/` folder, imports that with `import_lerobot_act`, exports
it with `export-policy --format onnx` and loads it in the runtime. It checks that both give the same action
chunk, then times per tick, alternating which goes first:
- LeRobot: frame HWC uint8 -> float CHW in 0..1, its preprocessor (normalize), `select_action` (a forward pass
  and its temporal ensembler every tick), its postprocessor (unnormalize);
- the runtime: `Session.step(images, state)` (pre, ONNX Runtime, ensemble, post).
Only the ratio measured in one run means anything on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

H, W, S, A, FPS = 96, 96, 2, 2, 10


def import_lerobot():
    from edgeact.train.lerobot_import import ensure_torchvision_importable

    ensure_torchvision_importable()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    return FeatureType, PolicyFeature, ACTConfig, ACTPolicy, make_pre_post_processors


def build_lerobot(folder: Path, chunk: int):
    """LeRobot ACT with random weights and PushT-like stats, saved as a pretrained_model folder."""
    FeatureType, PolicyFeature, LRConfig, LRPolicy, make_processors = import_lerobot()
    cfg = LRConfig(
        input_features={
            "observation.image": PolicyFeature(type=FeatureType.VISUAL, shape=(3, H, W)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(S,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(A,))},
        chunk_size=chunk,
        n_action_steps=1,
        temporal_ensemble_coeff=0.01,
        pretrained_backbone_weights=None,
        device="cpu",
    )
    torch.manual_seed(0)
    policy = LRPolicy(cfg).eval()
    vec = {"mean": [100.0] * S, "std": [50.0] * S, "min": [0.0] * S, "max": [500.0] * S}
    stats = {
        "observation.image": {"mean": [[[0.5]], [[0.45]], [[0.4]]], "std": [[[0.25]], [[0.25]], [[0.25]]]},
        "observation.state": vec,
        "action": vec,
    }
    stats = {k: {s: np.asarray(v, dtype=np.float32) for s, v in d.items()} for k, d in stats.items()}
    pre, post = make_processors(cfg, dataset_stats=stats)
    policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)
    return policy, pre, post


def export_runtime_model(folder: Path, workdir: Path) -> Path:
    from edgeact.export.cli import main as export_main
    from edgeact.train.lerobot_import import import_lerobot_act

    step_dir = import_lerobot_act(folder, workdir / "run", fps=FPS)
    out = workdir / "policy.onnx"
    argv = [str(step_dir), "--format", "onnx", "--output", str(out), "--parity-frames", "0"]
    if export_main([*argv, "--parity-random", "1"]) != 0 or not out.is_file():
        raise RuntimeError(f"export-policy {' '.join(argv)} failed")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ticks", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads and ONNX Runtime intra-op threads")
    p.add_argument("--chunk-size", type=int, default=20)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from edgeact.runtime.core import Policy, PolicyParams

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)  # (H, W, 3)
    state = rng.uniform(50, 450, size=S).astype(np.float32)  # (S,)
    with tempfile.TemporaryDirectory(prefix="bench_lerobot_step_") as tmp:
        lr_policy, pre, post = build_lerobot(Path(tmp) / "pretrained_model", args.chunk_size)
        model = export_runtime_model(Path(tmp) / "pretrained_model", Path(tmp))
        rt_policy = Policy.load(model, PolicyParams(intra_op_threads=args.threads, warmup_runs=3))
        session = rt_policy.session()

        def lr_batch() -> dict[str, torch.Tensor]:
            img = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
            return pre({"observation.image": img, "observation.state": torch.from_numpy(state)[None]})

        with torch.inference_mode():
            want = post(lr_policy.predict_action_chunk(lr_batch())).numpy()  # (1, k, A)
        got = rt_policy.infer({"image": frame}, state)  # (1, k, A)
        chunk_diff = float(np.abs(got - want).max())

        def lr_step() -> np.ndarray:
            with torch.inference_mode():
                return post(lr_policy.select_action(lr_batch())).numpy()[0]  # (A,)

        def rt_step() -> np.ndarray:
            return session.step({"image": frame}, state)[0]  # (A,)

        lr_policy.reset()
        session.reset()
        first = np.abs(lr_step() - rt_step()).max()
        times: dict[str, list[int]] = {"lerobot": [], "runtime": []}
        steps = {"lerobot": lr_step, "runtime": rt_step}
        out: dict[str, np.ndarray] = {}
        for i in range(args.warmup + args.ticks):
            for name in ("lerobot", "runtime") if i % 2 == 0 else ("runtime", "lerobot"):
                t0 = time.perf_counter_ns()
                out[name] = steps[name]()
                times[name].append(time.perf_counter_ns() - t0)
    res = {
        "threads": args.threads,
        "chunk_size": args.chunk_size,
        "ticks": args.ticks,
        "params": sum(q.numel() for q in lr_policy.parameters()),
        "max_abs_chunk_diff": chunk_diff,
        "max_abs_first_action_diff": float(first),
        "max_abs_last_action_diff": float(np.abs(out["lerobot"] - out["runtime"]).max()),
    }
    for name, t in times.items():
        ms = np.asarray(t[args.warmup :]) / 1e6
        res[name] = {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)}
    res["ratio_p50"] = res["lerobot"]["p50_ms"] / res["runtime"]["p50_ms"]
    print(f"PushT ACT, {res['params'] / 1e6:.1f} M parameters, chunk {args.chunk_size}, "
          f"{args.threads} thread(s), {args.ticks} ticks; same chunk within {chunk_diff:.2e}, "
          f"first / last ensembled action within {first:.2e} / "
          f"{res['max_abs_last_action_diff']:.2e}")  # fmt: skip
    for name in ("lerobot", "runtime"):
        r = res[name]
        print(f"{name:8s} p50 {r['p50_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms")
    print(f"runtime speed-up (p50): {res['ratio_p50']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
