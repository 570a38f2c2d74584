"""Training fidelity against LeRobot's ACT: same config, same batches, same samples; validation L1 curves.

    PYTHONPATH=/tmp/lrsite EDGEACT_DATASET_MIRROR=/work/shared/datasets HF_LEROBOT_HOME=/tmp/lerobot_home \
        nice -n 19 .venv/bin/python scripts/fidelity_lerobot.py --samples 200000 --eval-every 10000
    ... scripts/fidelity_lerobot.py --check-steps 5      # mechanics: dropout 0, identical weights, per step

Our side is the real training step (`edgeact.train.loop.Trainer`: its `ACTPolicy`, the AdamW of
`edgeact.train.optim`, the loss of `ACTPolicy.forward`, gradient clipping, the per-step torch reseed), fp32.
LeRobot's side (lerobot 0.4.x, importable as docs/training.md "Against LeRobot's ACT" describes) is its
`ACTPolicy`, its pre-processor (normalization from the same dataset statistics), the optimizer of its ACT
preset (`get_optimizer_preset().build(get_optim_params())`) and the update `lerobot-train` makes (forward,
backward, clip to `grad_clip_norm`, step). Both see the batches of `Trainer.indices(step)` over the training
episodes, in the same order; LeRobot starts from the weights it initialises and ours from a copy of them
(`--init own` keeps our own seeded init). Every `--eval-every` samples both are evaluated on all samples of
the held-out episodes (every `--holdout-every`-th): L1 of the eval-mode (zero latent) chunk against the
normalized target, padded steps excluded. Writes a JSON of the curves and a PNG of the two validation curves.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

STATE, ENV, ACTION = "observation.state", "observation.environment_state", "action"
MODEL_KEYS = (STATE, ENV, ACTION, "action_is_pad")
TRAIN_KEYS = (
    "train_l1_ours",
    "train_l1_lerobot",
    "kld_ours",
    "kld_lerobot",
)  # means since the last evaluation
CURVE_KEYS = ("samples", "val_l1_ours", "val_l1_lerobot", *TRAIN_KEYS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="pusht_keypoints")
    p.add_argument("--samples", type=int, default=200_000, help="training samples per model")
    p.add_argument("--eval-every", type=int, default=10_000, help="samples between validation passes")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--holdout-every", type=int, default=10, help="episodes 0, N, 2N, ... are held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--dim-feedforward", type=int, default=512)
    p.add_argument("--n-encoder-layers", type=int, default=4)
    p.add_argument("--n-decoder-layers", type=int, default=1)
    p.add_argument("--n-vae-encoder-layers", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--kl-weight", type=float, default=10.0)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument(
        "--init", choices=("copy", "own"), default="copy", help="ours starts from LeRobot's weights"
    )
    p.add_argument(
        "--lerobot-env-norm",
        choices=("mean_std", "identity"),
        default="mean_std",
        help="LeRobot's ACT default maps no normalization to ENV features (environment state goes in raw); "
        "mean_std normalizes it as ours does",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--check-steps", type=int, default=0, help="only compare the first N steps (dropout 0)")
    p.add_argument("--json", type=Path, default=Path("outputs/fidelity_lerobot.json"))
    p.add_argument("--png", type=Path, default=Path("outputs/fidelity_lerobot.png"))
    return p.parse_args(argv)


def build_ours(args: argparse.Namespace, workdir: Path):
    """Our Trainer on the training episodes, and a ChunkDataset over the held-out ones."""
    from edgeact.train.data import ChunkDataset, LeRobotDataset, resolve_dataset
    from edgeact.train.loop import Trainer
    from edgeact.train.train_config import load_train_config

    n_eps = len(LeRobotDataset(resolve_dataset(args.dataset)).meta.episodes)
    held = [e for e in range(n_eps) if e % args.holdout_every == 0]
    train_eps = [e for e in range(n_eps) if e % args.holdout_every != 0]
    policy = {
        "chunk_size": args.chunk_size, "n_action_steps": args.chunk_size, "execution_mode": "chunk",
        "dim_model": args.dim_model, "n_heads": args.n_heads, "dim_feedforward": args.dim_feedforward,
        "n_encoder_layers": args.n_encoder_layers, "n_decoder_layers": args.n_decoder_layers,
        "n_vae_encoder_layers": args.n_vae_encoder_layers, "kl_weight": args.kl_weight,
        "dropout": args.dropout,
    }  # fmt: skip
    cfg = load_train_config(
        overrides={
            "dataset": args.dataset,
            "episodes": train_eps,
            "steps": 10**9,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "lr_backbone": args.lr,
            "weight_decay": args.weight_decay,
            "grad_clip": 10.0,
            "seed": args.seed,
            "bf16": False,
            "num_threads": args.threads,
            "progress": False,
            "output": str(workdir / "run"),
            "policy": policy,
        }
    )
    trainer = Trainer(cfg)
    val = ChunkDataset(trainer.dataset, args.chunk_size, episodes=held, progress=False)
    return trainer, val, held


def build_lerobot(trainer, args: argparse.Namespace):
    """LeRobot's ACTPolicy, pre-processor and optimizer at the same config and statistics."""
    from edgeact.train.lerobot_import import ensure_torchvision_importable

    ensure_torchvision_importable()
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig as LRConfig
    from lerobot.policies.act.modeling_act import ACTPolicy as LRPolicy
    from lerobot.policies.act.processor_act import make_act_pre_post_processors

    pc, feats, tc = trainer.cfg.policy, trainer.dataset_info["features"], trainer.cfg
    norm = {k: NormalizationMode.MEAN_STD for k in ("VISUAL", "STATE", "ACTION")}
    if args.lerobot_env_norm == "mean_std":
        norm["ENV"] = NormalizationMode.MEAN_STD
    lr_cfg = LRConfig(
        input_features={
            STATE: PolicyFeature(type=FeatureType.STATE, shape=tuple(feats[STATE]["shape"])),
            ENV: PolicyFeature(type=FeatureType.ENV, shape=tuple(feats[ENV]["shape"])),
        },
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=tuple(feats[ACTION]["shape"]))},
        normalization_mapping=norm, chunk_size=pc.chunk_size, n_action_steps=pc.chunk_size,
        dim_model=pc.dim_model, n_heads=pc.n_heads, dim_feedforward=pc.dim_feedforward,
        n_encoder_layers=pc.n_encoder_layers, n_decoder_layers=pc.n_decoder_layers, use_vae=pc.use_vae,
        latent_dim=pc.latent_dim, n_vae_encoder_layers=pc.n_vae_encoder_layers, dropout=pc.dropout,
        kl_weight=pc.kl_weight, pretrained_backbone_weights=None, device="cpu",
        optimizer_lr=tc.lr, optimizer_lr_backbone=tc.lr_backbone, optimizer_weight_decay=tc.weight_decay,
    )  # fmt: skip
    torch.manual_seed(args.seed + 1)
    policy = LRPolicy(lr_cfg)
    policy.train()
    stats = {
        k: {s: torch.as_tensor(np.asarray(v, dtype=np.float32)) for s, v in d.items()}
        for k, d in trainer.dataset_info["stats"].items()
    }
    pre, _ = make_act_pre_post_processors(lr_cfg, dataset_stats=stats)
    preset = lr_cfg.get_optimizer_preset()
    opt = preset.build(policy.get_optim_params())
    return policy, pre, opt, preset.grad_clip_norm


def copy_weights(lr_policy, ours) -> int:
    """LeRobot's `model.*` tensors into our `model` (same names, docs/model.md); returns how many."""
    src = {k.removeprefix("model."): v for k, v in lr_policy.state_dict().items() if k.startswith("model.")}
    missing, unexpected = ours.model.load_state_dict(src, strict=False)
    if missing or unexpected:
        raise SystemExit(f"state dicts differ: ours lacks {unexpected}, LeRobot lacks {missing}")
    return len(src)


def lerobot_batch(pre, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return pre({k: batch[k] for k in MODEL_KEYS})


def lerobot_step(policy, opt, clip: float, batch: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    """What `lerobot-train`'s update does: forward, backward, clip, step, zero the gradients."""
    loss, parts = policy.forward(batch)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), clip, error_if_nonfinite=False)
    opt.step()
    opt.zero_grad()
    return float(loss.detach()), parts["l1_loss"], float(grad_norm)


def val_batches(val, batch_size: int) -> list[dict[str, torch.Tensor]]:
    idx = np.arange(len(val))
    out = []
    for a in range(0, len(idx), batch_size):
        b = val.get_batch(idx[a : a + batch_size])
        out.append({k: torch.from_numpy(np.ascontiguousarray(b[k])) for k in MODEL_KEYS})
    return out


@torch.no_grad()
def validation_l1(ours, lr_policy, pre, batches) -> tuple[float, float, float]:
    """Masked mean |pred - target| on normalized actions (zero latent): ours, LeRobot's, and the largest
    difference between the two normalizations of the target (they use the same statistics)."""
    ours.eval()
    lr_policy.eval()
    err_o = err_l = count = 0.0
    target_gap = 0.0
    nz = ours.normalize
    for b in batches:
        target = nz.normalize(ACTION, b[ACTION])  # (B, k, A)
        pred_o = ours.model([], nz.normalize(STATE, b[STATE]), nz.normalize(ENV, b[ENV]))[0]
        lb = lerobot_batch(pre, b)
        pred_l = lr_policy.model(lb)[0]
        target_gap = max(target_gap, float((lb[ACTION] - target).abs().max()))
        mask = (~b["action_is_pad"]).unsqueeze(-1).float()  # (B, k, 1)
        err_o += float(((pred_o - target).abs() * mask).sum())
        err_l += float(((pred_l - target).abs() * mask).sum())
        count += float(mask.sum()) * target.shape[-1]
    ours.train()
    lr_policy.train()
    return err_o / count, err_l / count, target_gap


def check_mechanics(trainer, lr_policy, pre, opt, clip: float, n_steps: int) -> list[dict]:
    """Dropout 0 and identical weights: per step, both losses on the same batch (same VAE noise: the torch
    RNG is reseeded identically before each forward) and the largest weight difference after the update."""
    from edgeact.train.loop import step_seed

    ours = trainer.policy
    lr_params = dict(lr_policy.named_parameters())
    rows = []
    for step in range(n_steps):
        idx, batch = trainer._load(step)
        seed = step_seed(trainer.cfg.seed, 0, step)
        m, _ = trainer.train_step(batch, idx, False)  # reseeds with `seed` itself
        torch.manual_seed(seed)
        loss_l, l1_l, gn_l = lerobot_step(lr_policy, opt, clip, lerobot_batch(pre, batch))
        with torch.no_grad():
            diffs = {n: (p - lr_params[f"model.{n}"]).abs() for n, p in ours.model.named_parameters()}
            # Attention key biases get a zero gradient in exact arithmetic (softmax ignores a constant added
            # to every score of a query), so AdamW turns rounding noise into +-lr steps there; apart.
            key_bias = max(
                float(_key_bias(n, d).max()) for n, d in diffs.items() if n.endswith("in_proj_bias")
            )
            diffs = {n: float(_without_key_bias(n, d).max()) for n, d in diffs.items()}
        worst = max(diffs, key=diffs.get)
        row = {
            "step": step,
            **{f"{k}_ours": m.get(k) for k in ("loss", "l1", "grad_norm")},
            **{"loss_lerobot": loss_l, "l1_lerobot": l1_l, "grad_norm_lerobot": gn_l},
            **{"loss_diff": abs(m["loss"] - loss_l), "max_weight_diff": diffs[worst], "worst": worst},
            "max_key_bias_diff": key_bias,
        }
        print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        rows.append(row)
    return rows


def _key_bias(name: str, t: torch.Tensor) -> torch.Tensor:
    """The key third of an `nn.MultiheadAttention` packed `in_proj_bias` (q, k, v)."""
    d = t.shape[0] // 3
    return t[d : 2 * d]


def _without_key_bias(name: str, t: torch.Tensor) -> torch.Tensor:
    if not name.endswith("in_proj_bias"):
        return t
    d = t.shape[0] // 3
    return torch.cat([t[:d], t[2 * d :]])


def train_both(trainer, val, lr_policy, pre, opt, clip: float, args: argparse.Namespace) -> dict:
    """Interleaved steps on the same batches; validation every `eval_every` samples and at the end."""
    from edgeact.train.loop import step_seed

    b = args.batch_size
    n_steps = -(-args.samples // b)
    every = max(1, args.eval_every // b)
    batches = val_batches(val, 512)
    curve: dict[str, list] = {k: [] for k in CURVE_KEYS}
    wall = {"ours": 0.0, "lerobot": 0.0}
    acc = np.zeros(4)  # running sums since the last evaluation: l1 ours, l1 lerobot, kld ours, kld lerobot
    v_o, v_l, gap = validation_l1(trainer.policy, lr_policy, pre, batches)
    _record(curve, 0, v_o, v_l, None)
    for step in range(n_steps):
        t0 = time.perf_counter()
        idx, batch = trainer._load(step)
        m, _ = trainer.train_step(batch, idx, False)
        t1 = time.perf_counter()
        torch.manual_seed(step_seed(args.seed + 1, 0, step))  # LeRobot's own noise stream
        loss_l, l1_l, _ = lerobot_step(lr_policy, opt, clip, lerobot_batch(pre, batch))
        t2 = time.perf_counter()
        wall["ours"] += t1 - t0
        wall["lerobot"] += t2 - t1
        acc += (m["l1"], l1_l, m["kld"], (loss_l - l1_l) / args.kl_weight)
        done = step + 1
        if done % every == 0 or done == n_steps:
            v_o, v_l, g = validation_l1(trainer.policy, lr_policy, pre, batches)
            gap = max(gap, g)
            _record(curve, done * b, v_o, v_l, acc / (done - (done - 1) // every * every))
            acc[:] = 0
            print(
                f"samples {done * b:>8d}  val L1 ours {v_o:.4f}  lerobot {v_l:.4f}  ratio {v_o / v_l:.3f}  "
                f"train l1 {curve['train_l1_ours'][-1]:.4f} / {curve['train_l1_lerobot'][-1]:.4f}  "
                f"wall {wall['ours']:.0f} s / {wall['lerobot']:.0f} s",
                flush=True,
            )
    return {
        "curve": curve,
        "wall_s": wall,
        "steps": n_steps,
        "val_samples": len(val),
        "max_target_normalization_gap": gap,
    }


def _record(curve: dict, samples: int, v_o: float, v_l: float, acc: np.ndarray | None) -> None:
    curve["samples"].append(samples)
    curve["val_l1_ours"].append(v_o)
    curve["val_l1_lerobot"].append(v_l)
    means = [None] * 4 if acc is None else [float(v) for v in acc]
    for key, v in zip(TRAIN_KEYS, means, strict=True):
        curve[key].append(v)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["curve"]
    x = np.asarray(c["samples"]) / 1000
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    ax.plot(x, c["val_l1_ours"], "o-", ms=3, label="edgeact ACTPolicy")
    ax.plot(x, c["val_l1_lerobot"], "s--", ms=3, label="LeRobot ACTPolicy (0.4.4)")
    ax.set_xlabel("training samples seen (thousands)")
    ax.set_ylabel("validation L1 (normalized actions)")
    ax.set_yscale("log")
    f = result["final"]
    ax.set_title(f"PushT keypoints, held-out episodes; final ratio {f['ratio']:.3f}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.check_steps:
        args.dropout = 0.0
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fidelity_") as tmp:
        trainer, val, held = build_ours(args, Path(tmp))
        lr_policy, pre, opt, clip = build_lerobot(trainer, args)
        if args.init == "copy":
            copy_weights(lr_policy, trainer.policy)
        n_params = sum(p.numel() for p in trainer.policy.parameters())
        n_lr = sum(p.numel() for p in lr_policy.parameters())
        print(
            f"parameters: ours {n_params}, LeRobot {n_lr}; train samples {len(trainer.chunks)} "
            f"({len(trainer.cfg.episodes)} episodes), validation samples {len(val)} ({len(held)} episodes)"
        )
        if args.check_steps:
            rows = check_mechanics(trainer, lr_policy, pre, opt, clip, args.check_steps)
            print(json.dumps({"check": rows}) if args.json is None else "")
            return 0
        result = train_both(trainer, val, lr_policy, pre, opt, clip, args)
    c = result["curve"]
    vo, vl = c["val_l1_ours"], c["val_l1_lerobot"]
    result["final"] = {
        "val_l1_ours": vo[-1],
        "val_l1_lerobot": vl[-1],
        "ratio": vo[-1] / vl[-1],
        "ratio_mean_last3": float(np.mean(vo[-3:]) / np.mean(vl[-3:])),
    }
    result["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result.update(params=n_params, held_out_episodes=held, cpu=cpu_model(), threads=torch.get_num_threads())
    result["total_wall_s"] = time.perf_counter() - t_start
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    plot(result, args.png)
    f = result["final"]
    print(
        f"final validation L1: ours {f['val_l1_ours']:.4f}, LeRobot {f['val_l1_lerobot']:.4f}, "
        f"ratio {f['ratio']:.3f} (mean of the last 3 evaluations: {f['ratio_mean_last3']:.3f}); "
        f"{result['total_wall_s']:.0f} s; JSON {args.json}, PNG {args.png}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
