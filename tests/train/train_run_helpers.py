"""Tiny configs shared by the training tests (loop, checkpoint, CLI, eval, DDP), small enough for 2 cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

# A tiny ACT: the ResNet18 backbone stays (it is the only one), everything else is shrunk.
TINY_POLICY: dict[str, Any] = {
    "chunk_size": 5,
    "n_action_steps": 5,
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 4,
}


def tiny_overrides(dataset: Path | str, output: Path | str, **extra: Any) -> dict[str, Any]:
    """Train-config overrides for a tiny run (fp32 and contiguous: the fast path at these sizes)."""
    policy = {**TINY_POLICY, **extra.pop("policy", {})}
    return {
        "dataset": str(dataset),
        "output": str(output),
        "batch_size": 4,
        "steps": 4,
        "lr": 1e-3,
        "lr_backbone": 1e-3,
        "bf16": False,
        "channels_last": False,
        "progress": False,
        "log_every": 1,
        "policy": policy,
        **extra,
    }


def tiny_cli(dataset: Path | str, output: Path | str, **extra: Any) -> list[str]:
    """The same as command-line arguments for `train-act`."""
    args = []
    for key, value in tiny_overrides(dataset, output, **extra).items():
        if isinstance(value, dict):
            args += [f"--{key}.{k}={_yaml(v)}" for k, v in value.items()]
        else:
            args.append(f"--{key}={_yaml(value)}")
    return args


def _yaml(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def weights(run_or_step: Path) -> dict[str, torch.Tensor]:
    """The model.safetensors of a run's `last` checkpoint (or of a step folder)."""
    path = Path(run_or_step)
    if (path / "checkpoints" / "last").exists():
        path = path / "checkpoints" / "last"
    return load_file(str(path / "model.safetensors"))


class OneThread:
    """torch on one thread: on a loaded 2-core machine two OpenMP threads spin-wait for each other and a tiny
    step takes seconds instead of tenths."""

    def __enter__(self) -> OneThread:
        self._old = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._old)
