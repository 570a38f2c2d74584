"""`train-act`: train an ACT policy on a LeRobot dataset.

    train-act --dataset pusht                                  # configs/train/act_pusht.yaml
    train-act --dataset pusht --steps 2000 --batch-size 16 --policy.chunk_size=50 --lr=3e-5
    train-act --output outputs/run1 --resume                   # continue outputs/run1/checkpoints/last
    torchrun --nproc_per_node 2 -m edgeact.train.cli --dataset pusht --device cpu   # DDP, global batch 2 x B

Precedence: TrainConfig defaults < YAML (`--config FILE`, or the shipped config for the dataset name) < flags
and dotted overrides (`--section.field=value`, values parsed as YAML). With `--resume` the checkpoint's
resolved config is the base, and only fields that do not change the math (steps, output, logging,
evaluation...) may differ.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from edgeact.train.train_config import (
    RESUMABLE_FIELDS,
    ConfigError,
    TrainConfig,
    TrainError,
    config_differences,
    config_to_dict,
    load_train_config,
    overrides_to_dict,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train-act",
        description="Train an ACT policy. Any config field can be set with --FIELD=VALUE or "
        "--SECTION.FIELD=VALUE (e.g. --policy.chunk_size=50, --lr=3e-5, --eval.episodes=10).",
    )
    p.add_argument("--dataset", help="dataset name (pusht), LeRobot repo id, or folder")
    p.add_argument("--config", type=Path, help="YAML file of config overrides")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--batch-size", type=int, help="batch size per process (global = this x world size)")
    p.add_argument("--device", help="cpu | cuda | cuda:N")
    p.add_argument("--output", help="run folder (checkpoints land in OUTPUT/checkpoints/last)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/last")
    p.add_argument("--eval-every", type=int, help="closed-loop evaluation every N steps (0: never)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def split_overrides(extra: list[str]) -> list[str]:
    """`--a.b=1` / `--a.b 1` / `--lr=3e-5` pairs from the arguments argparse did not know."""
    out, i = [], 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(
                f"unexpected argument {arg!r} (config overrides look like --policy.chunk_size=50)"
            )
        if "=" in arg:
            out.append(arg[2:])
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out.append(f"{arg[2:]}={extra[i + 1]}")
            i += 1
        else:
            raise ConfigError(f"override {arg!r} has no value (write {arg}=VALUE)")
        i += 1
    return out


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "device": args.device,
        "output": args.output,
        "eval_every": args.eval_every,
    }
    out = {k: v for k, v in flags.items() if v is not None}
    if args.no_progress:
        out["progress"] = False
    return out


def resolve_config(args: argparse.Namespace, overrides: list[str]) -> TrainConfig:
    dotted = overrides_to_dict(overrides)
    flags = flag_overrides(args)
    merged = {**dotted, **flags}
    if not args.resume:
        return load_train_config(config_file=args.config, dataset=args.dataset, overrides=merged)
    from edgeact.train import checkpoint as ckpt_io

    fresh = load_train_config(config_file=args.config, dataset=args.dataset, overrides=merged)
    doc = ckpt_io.read_config(ckpt_io.checkpoints_dir(fresh.output) / ckpt_io.LAST)
    cmdline = merged if args.dataset is None else {**merged, "dataset": args.dataset}
    cfg = load_train_config(base=doc["train"], config_file=args.config, overrides=cmdline)
    changed = [
        k
        for k in config_differences(doc["train"], config_to_dict(cfg))
        if k.split(".")[0] not in RESUMABLE_FIELDS
    ]
    if changed:
        raise ConfigError(
            f"--resume: {', '.join(changed)} differ from the checkpoint in {fresh.output}; a resumed run "
            f"keeps them (only {', '.join(sorted(RESUMABLE_FIELDS))} may change)"
        )
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.INFO if rank == 0 else logging.WARNING),
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    from edgeact.train.data.errors import DatasetError

    try:
        cfg = resolve_config(args, split_overrides(extra))
        if args.print_config:
            import yaml

            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            return 0
        from edgeact.train.loop import train

        result = train(cfg, resume=args.resume)
    except (TrainError, DatasetError) as err:
        print(f"train-act: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        _destroy_process_group()
    if rank == 0:
        where = result.checkpoint or "(none)"
        if result.interrupted:
            print(f"train-act: interrupted at step {result.step}; checkpoint {where}; continue with --resume")
        else:
            print(f"train-act: done at step {result.step}; checkpoint {where}")
    return EXIT_INTERRUPTED if result.interrupted else 0


def _destroy_process_group() -> None:
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
