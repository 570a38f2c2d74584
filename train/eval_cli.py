"""`eval-act`: closed-loop evaluation of a checkpoint in simulation.

    eval-act outputs/train --env pusht --episodes 50 --seed 0
    eval-act outputs/train/checkpoints/010000 --mode chunk --n-action-steps 10 --video videos --json r.json

Prints success rate and average max overlap (docs/training.md, "Evaluation"), computed by
edgeact.runtime.robots.pusht_sim.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edgeact.train.train_config import EvalConfig, TrainError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval-act", description="Evaluate an ACT checkpoint in simulation.")
    p.add_argument("checkpoint", help="a run folder, its checkpoints/last, or a step folder")
    p.add_argument("--env", default="pusht", choices=["pusht"])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=100_000, help="episode i uses seed SEED + i")
    p.add_argument("--mode", choices=["ensemble", "chunk"], help="action execution (default: the policy's)")
    p.add_argument("--temporal-ensemble-coeff", type=float, help="m in exp(-m*i) (ensemble mode)")
    p.add_argument("--n-action-steps", type=int, help="entries executed per chunk (chunk mode)")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--video", type=Path, help="write mp4s of the first --video-episodes episodes here")
    p.add_argument("--video-episodes", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="write the full results as JSON here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from edgeact.runtime.robots.base import RobotError
    from edgeact.train.checkpoint import load_policy
    from edgeact.train.eval import evaluate_policy

    try:
        cfg = EvalConfig(
            env=args.env,
            episodes=args.episodes,
            seed=args.seed,
            mode=args.mode,
            temporal_ensemble_coeff=args.temporal_ensemble_coeff,
            n_action_steps=args.n_action_steps,
            max_steps=args.max_steps,
            video_episodes=args.video_episodes if args.video else 0,
            video_dir=str(args.video) if args.video else None,
        )
        policy, doc = load_policy(args.checkpoint, device=args.device)
        data = doc["dataset"]
        result = evaluate_policy(
            policy, cfg, camera_keys=data["camera_keys"], fps=data["fps"], device=args.device
        )
    except (TrainError, RobotError, ValueError) as err:
        print(f"eval-act: error: {err}", file=sys.stderr)
        return 2
    s = result.summary()
    ex = result.execution
    print(
        f"{args.env}: {s['n_episodes']} episodes (seeds {cfg.seed}..{cfg.seed + cfg.episodes - 1}), "
        f"execution {ex['mode']} (m={ex['temporal_ensemble_coeff']}, n={ex['n_action_steps']}), "
        f"checkpoint step {doc.get('step')}\n"
        f"success rate     {s['success_rate']:.3f}\n"
        f"avg max overlap  {s['avg_max_overlap']:.3f}\n"
        f"mean steps       {s['mean_steps']:.1f}\n"
        f"wall time        {s['wall_s']:.1f} s"
    )
    for v in result.videos:
        print(f"video: {v}")
    if args.json:
        out = {
            "checkpoint": str(args.checkpoint),
            "step": doc.get("step"),
            "env": args.env,
            **result.as_dict(),
        }
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
