"""AdamW with a separate backbone learning rate (ACT, docs/model.md) and the learning-rate schedule.

The optimizer is the fused AdamW kernel where torch has one for the device (CPU and CUDA in torch >= 2.4),
else the multi-tensor (`foreach`) one. The schedule is a pure function of the step: linear warmup, then
constant or cosine down to `min_lr_ratio` x lr at `steps`.
"""

from __future__ import annotations

import logging
import math

import torch
from edgeact.train.train_config import TrainConfig

log = logging.getLogger(__name__)


def param_groups(policy: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Two groups: the image backbone at `lr_backbone`, the rest at `lr`; frozen parameters left out."""
    backbone, rest = [], []
    for name, p in policy.named_parameters():
        if not p.requires_grad:
            continue
        (backbone if "backbone" in name.split(".") else rest).append(p)
    groups = [{"params": rest, "lr": cfg.lr, "name": "main"}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr_backbone, "name": "backbone"})
    return groups


def make_optimizer(policy: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    groups = param_groups(policy, cfg)
    try:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError) as err:  # no fused kernel for this device or dtype
        log.info("fused AdamW unavailable on %s (%s); using foreach", device, err)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return opt


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate for the update made at `step` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    # A plain function (not a callable object): LambdaLR keeps no state for it, so its state dict is JSON.
    def factor(step: int) -> float:
        return lr_factor(step, cfg)

    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=factor)
