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
import signal
import sys
import threading
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


def resolve_config(args: argparse.Namespace, overrides: list[str]) -> tuple[TrainConfig, int | None]:
    """The run's config, and with `--resume` the step of the checkpoint it continues (else None)."""
    dotted = overrides_to_dict(overrides)
    flags = flag_overrides(args)
    merged = {**dotted, **flags}
    fresh = load_train_config(config_file=args.config, dataset=args.dataset, overrides=merged)
    if not args.resume:
        return fresh, None
    from edgeact.train import checkpoint as ckpt_io

    if not args.print_config and _is_main_rank():
        from edgeact.train.checkpoint_recovery import recover_checkpoints

        recover_checkpoints(ckpt_io.checkpoints_dir(fresh.output))
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
    step = doc.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise ConfigError(f"{doc_path(fresh.output)}: field 'step' must be an integer, got {step!r}")
    if cfg.steps < step:
        raise ConfigError(
            f"--resume --steps {cfg.steps}: the checkpoint in {fresh.output} is already at step {step}; "
            f"nothing was done (pass --steps above {step} to train further)"
        )
    return cfg, step


def doc_path(output: str) -> Path:
    from edgeact.train import checkpoint as ckpt_io

    return ckpt_io.checkpoints_dir(output) / ckpt_io.LAST / ckpt_io.CONFIG_FILE


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM before the loop installs its own handler: stop like Ctrl-C, with the signal's name."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.INFO if rank == 0 else logging.WARNING),
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    from edgeact.train.data.errors import DatasetError

    old_term = _install(signal.SIGTERM, _on_sigterm)
    output = None
    try:
        cfg, resumed_at = resolve_config(args, split_overrides(extra))
        output = cfg.output
        if args.print_config:
            import yaml

            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            return 0
        if resumed_at is not None and cfg.steps == resumed_at:
            if rank == 0:
                print(f"train-act: {cfg.output} is already at step {resumed_at}; nothing to train")
            return 0
        if rank == 0:
            _prepare_output(cfg, args.resume)
        from edgeact.train.loop import train

        result = train(cfg, resume=args.resume)
    except (TrainError, DatasetError) as err:
        print(f"train-act: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as err:
        name = "SIGTERM" if isinstance(err, _Terminated) else "Ctrl-C"
        print(
            f"train-act: {name}: interrupted before the run finished; {_last_said(output)}", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    finally:
        _install(signal.SIGTERM, old_term)
        _destroy_process_group()
    if rank == 0:
        where = result.checkpoint or "(none)"
        if result.interrupted:
            print(f"train-act: interrupted at step {result.step}; checkpoint {where}; continue with --resume")
        else:
            print(f"train-act: done at step {result.step}; checkpoint {where}")
    return EXIT_INTERRUPTED if result.interrupted else 0


def _prepare_output(cfg: TrainConfig, resume: bool) -> None:
    """Refuse an unwritable --output before any work; clean what killed saves left (resume did it already)."""
    from edgeact.train import checkpoint as ckpt_io

    ckpt_io.ensure_writable(cfg.output)
    if not resume:
        from edgeact.train.checkpoint_recovery import recover_checkpoints

        recover_checkpoints(ckpt_io.checkpoints_dir(cfg.output))


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _last_said(output: str | None) -> str:
    if output is None:
        return "nothing was written"
    # No import of edgeact.train.checkpoint (and so torch) here: the interrupt may have landed inside torch's
    # import, and importing it again fails with an unrelated error. The layout is checkpoint.py's.
    last = Path(output) / "checkpoints" / "last"
    if last.is_symlink():
        return f"the last complete checkpoint is {last} -> {os.readlink(last)}; continue with --resume"
    return "no checkpoint was written"


def _install(signum: int, handler: Any) -> Any:
    if threading.current_thread() is not threading.main_thread() or handler is None:
        return None
    return signal.signal(signum, handler)


def _destroy_process_group() -> None:
    # Never import torch.distributed here: after a Ctrl-C that landed inside torch's own import, importing
    # it again fails with an unrelated operator-registration error (TORCH_LIBRARY ... triton).
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception as err:  # clean-up after a failure must not replace its message
        logging.getLogger(__name__).debug("destroying the process group failed: %s", err)


if __name__ == "__main__":
    sys.exit(main())
