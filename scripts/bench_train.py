"""Training-speed benchmark: seconds per step and samples/s of edgeact's ACT at the default PushT config.

    .venv/bin/python scripts/bench_train.py                    # batch 8, synthetic PushT-shaped data
    .venv/bin/python scripts/bench_train.py --dataset pusht --steps 20 --json bench_train.json

One "step" is what the training loop does per step: fetch the batch (frame cache), forward, backward, gradient
clipping and the AdamW update. It times the precision/layout variants of the loop (fp32 or bf16 autocast,
contiguous or channels-last) and, when the `lerobot` package is importable, LeRobot's ACT at the same config
on the same batches in the same process, and prints the ratio. All models are built first and then stepped in
turn (one step of each per round, the order rotating every round), so every one sees the same machine load;
only ratios measured in one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {
    "fp32": {"bf16": False, "channels_last": False},
    "fp32+channels_last": {"bf16": False, "channels_last": True},
    "bf16": {"bf16": True, "channels_last": False},
    "bf16+channels_last": {"bf16": True, "channels_last": True},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--dataset", help="dataset name or folder (default: a synthetic 96x96 PushT-shaped dataset)"
    )
    p.add_argument("--config", type=Path, help="train config YAML (default: configs/train/act_pusht.yaml)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-lerobot", action="store_true", help="skip LeRobot even when it is importable")
    p.add_argument(
        "--lerobot-data",
        action="store_true",
        help="also time LeRobot's ACT fed by LeRobot's own pipeline (LeRobotDataset with video decoding, its "
        "DataLoader with --lerobot-workers workers, its pre-processor): needs --dataset with videos",
    )
    p.add_argument("--lerobot-workers", type=int, default=4, help="DataLoader workers (LeRobot's default 4)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


def synthetic_pusht(root: Path) -> Path:
    """PushT's shapes (one 96x96 camera, state 2, action 2, 10 fps) with synthetic content."""
    from edgeact.train.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(root, episodes=4, length=60, image_hw=(96, 96), state_dim=2, action_dim=2)


def build_variant(dataset: str, args: argparse.Namespace, overrides: dict, workdir: Path):
    """A Trainer for one variant and a `step(i) -> seconds` that runs one loop step (batch fetch included)."""
    from edgeact.train.loop import Trainer
    from edgeact.train.train_config import load_train_config

    cfg = load_train_config(
        config_file=args.config,
        dataset="pusht" if args.config is None else None,
        overrides={
            "dataset": dataset,
            "batch_size": args.batch_size,
            "steps": args.warmup + args.steps,
            "output": str(workdir / f"run-{time.monotonic_ns()}"),
            "progress": False,
            **overrides,
        },
    )
    trainer = Trainer(cfg)
    trainer.policy.train()
    last: dict = {}

    def step(i: int) -> float:
        t0 = time.perf_counter()
        idx, batch = trainer._load(i)
        metrics, _ = trainer.train_step(batch, idx, False)
        last["loss"] = metrics["loss"]
        return time.perf_counter() - t0

    info = {
        "params": sum(p.numel() for p in trainer.policy.parameters()),
        "config": {"policy": vars(cfg.policy), "bf16": cfg.bf16, "channels_last": cfg.channels_last},
        "_last": last,
    }
    return trainer, step, info


def build_lerobot(trainer, args: argparse.Namespace, own_data: bool = False):
    """LeRobot's ACT (lerobot 0.4.x) built from our config (fp32, as LeRobot does), trained on our batches
    or, with `own_data`, on batches from LeRobot's own data pipeline; returns `step(i) -> seconds`, info."""
    from edgeact.train.lerobot_import import ensure_torchvision_importable

    ensure_torchvision_importable()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig as LRConfig
    from lerobot.policies.act.modeling_act import ACTPolicy as LRPolicy

    pc = trainer.cfg.policy
    feats = trainer.dataset_info["features"]
    inputs = {}
    for key, f in feats.items():
        if key.startswith("observation.image"):
            h, w = f["shape"][:2]
            inputs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, h, w))
        elif key == "observation.state":
            inputs[key] = PolicyFeature(type=FeatureType.STATE, shape=tuple(f["shape"]))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=tuple(feats["action"]["shape"]))}
    lr_cfg = LRConfig(
        input_features=inputs, output_features=outputs, chunk_size=pc.chunk_size,
        n_action_steps=pc.n_action_steps,
        dim_model=pc.dim_model, n_heads=pc.n_heads, dim_feedforward=pc.dim_feedforward,
        n_encoder_layers=pc.n_encoder_layers, n_decoder_layers=pc.n_decoder_layers, use_vae=pc.use_vae,
        latent_dim=pc.latent_dim, n_vae_encoder_layers=pc.n_vae_encoder_layers, dropout=pc.dropout,
        kl_weight=pc.kl_weight, pretrained_backbone_weights=None, device="cpu",
    )  # fmt: skip
    policy = LRPolicy(lr_cfg)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=trainer.cfg.lr, weight_decay=trainer.cfg.weight_decay)
    last: dict = {}
    next_batch = lerobot_pipeline(lr_cfg, trainer, args) if own_data else None

    def step(i: int) -> float:
        t0 = time.perf_counter()
        if next_batch is not None:
            lb = next_batch()
        else:
            _, batch = trainer._load(i)
            # LeRobot's processors hand the model float images in 0..1 (contiguous NCHW); state and action go
            # in unnormalized (its loss is then large, the compute is the same; edgeact normalizes inside).
            lb = {
                k: (v.float().contiguous() / 255.0 if v.dtype == torch.uint8 else v) for k, v in batch.items()
            }
        loss, _ = policy.forward(lb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), trainer.cfg.grad_clip or 10.0)
        opt.step()
        last["loss"] = float(loss.detach())
        return time.perf_counter() - t0

    return step, {"params": sum(p.numel() for p in policy.parameters()), "_last": last}


def lerobot_pipeline(lr_cfg, trainer, args: argparse.Namespace):
    """What `lerobot-train` does before each update: the next batch of its DataLoader over a LeRobotDataset
    (frames decoded from the dataset's videos, action chunks by delta timestamps), through its pre-processor
    (normalization). Videos decode through PyAV (scripts/lerobot_pyav_reader.py says why)."""
    import lerobot_pyav_reader
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors

    lerobot_pyav_reader.install()
    root = Path(trainer.dataset_info["root"])
    fps = trainer.dataset_info["fps"]
    ds = LeRobotDataset(
        str(trainer.dataset_info["id"]),
        root=root,
        delta_timestamps={"action": [i / fps for i in range(lr_cfg.chunk_size)]},
        video_backend="pyav",
    )
    if not ds.meta.video_keys:
        raise SystemExit(
            f"--lerobot-data: {root} has no videos; LeRobot's pipeline would not decode anything"
        )
    pre, _ = make_pre_post_processors(lr_cfg, dataset_stats=ds.meta.stats)
    workers = args.lerobot_workers
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch_size, shuffle=True, num_workers=workers, drop_last=True,
        prefetch_factor=2 if workers > 0 else None,
    )  # fmt: skip
    batches = iter(loader)
    return lambda: pre(next(batches))


def run_interleaved(runners: dict, args: argparse.Namespace) -> dict[str, dict]:
    """One step of each runner per round, the starting runner rotating; medians over the timed rounds."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.warmup + args.steps):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            times[name].append(runners[name][0](i))
    rows = {}
    for name in names:
        info = runners[name][1]
        dt = float(np.median(times[name][args.warmup :]))
        rows[name] = {"s_per_step": dt, "samples_per_s": args.batch_size / dt, "steps_s": times[name]}
        rows[name].update({k: v for k, v in info.items() if not k.startswith("_")})
        rows[name]["loss"] = info["_last"].get("loss")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        print(f"unknown variants {unknown}; choose from {list(VARIANTS)}", file=sys.stderr)
        return 2
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        workdir = Path(tmp)
        dataset = args.dataset or str(synthetic_pusht(workdir / "pusht_synthetic"))
        runners: dict = {}
        plain = None  # a trainer with contiguous batches feeds LeRobot's ACT
        for name in args.variants.split(","):
            trainer, step, info = build_variant(dataset, args, VARIANTS[name], workdir)
            runners[name] = (step, info)
            plain = trainer if plain is None or not trainer.cfg.channels_last else plain
        if not args.no_lerobot:
            try:
                import lerobot  # noqa: F401
            except ImportError:
                print("lerobot is not importable here: LeRobot's ACT not timed (no ratio)")
            else:
                runners["lerobot"] = build_lerobot(plain, args)
                if args.lerobot_data:
                    runners["lerobot+its data"] = build_lerobot(plain, args, own_data=True)
        rows = run_interleaved(runners, args)
    _report(rows, args)
    return 0


def _report(rows: dict[str, dict], args: argparse.Namespace) -> None:
    params = next(iter(rows.values()))["params"]
    print(f"\nACT train step, batch {args.batch_size}, {params / 1e6:.1f} M parameters, "
          f"{torch.get_num_threads()} threads, median of {args.steps} steps")  # fmt: skip
    print(f"{'variant':22s} {'s/step':>8s} {'samples/s':>10s} {'vs fp32':>8s} {'vs lerobot':>11s}")
    base = rows.get("fp32", {}).get("samples_per_s")
    ref = rows.get("lerobot", {}).get("samples_per_s")
    for name, r in rows.items():
        vs_fp32 = f"{r['samples_per_s'] / base:.2f}x" if base else "-"
        vs_lr = f"{r['samples_per_s'] / ref:.2f}x" if ref else "-"
        print(f"{name:22s} {r['s_per_step']:8.3f} {r['samples_per_s']:10.2f} {vs_fp32:>8s} {vs_lr:>11s}")
    if args.json:
        args.json.write_text(
            json.dumps({"batch_size": args.batch_size, "steps": args.steps, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
