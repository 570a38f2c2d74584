"""ACT model configuration: one validated dataclass with the defaults of the paper's code (and LeRobot's).

Only the model and how its chunks are executed live here; the training run (steps, batch size, optimizer,
schedule, dataset) has its own config. Field names follow LeRobot's `ACTConfig` so that a LeRobot
`config.json` maps onto this one field by field (see `edgeact.train.lerobot_import`).

    from edgeact.train.config import ACTConfig
    cfg = ACTConfig(chunk_size=50, dim_model=256)
    ACTConfig.from_dict(cfg.to_dict()) == cfg
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

EXECUTION_MODES = ("ensemble", "chunk")
ACTIVATIONS = ("relu", "gelu")
BACKBONES = ("resnet18",)


@dataclass
class ACTConfig:
    """Hyper-parameters of an ACT policy (Zhao et al. 2023); input and output sizes come from the features."""

    # Action chunking: the model predicts `chunk_size` future actions per observation.
    chunk_size: int = 100
    # How chunks are executed at run time (the same semantics in eval and in the C++ runtime, docs/design.md):
    # "ensemble" = infer every tick and average overlapping chunks with weights exp(-m * i), i = 0 the oldest;
    # "chunk" = infer when the queue is empty and execute the first `n_action_steps` entries of the chunk
    # (None = the whole chunk).
    execution_mode: str = "ensemble"
    temporal_ensemble_coeff: float = 0.01
    n_action_steps: int | None = None
    # ACT conditions on the current observation only.
    n_obs_steps: int = 1

    # Vision backbone: a ResNet18 with frozen batch norm, built in edgeact.train.backbone.
    vision_backbone: str = "resnet18"
    # Optional local safetensors file with a torchvision-format resnet18 state dict (nothing is downloaded).
    pretrained_backbone_weights: str | None = None
    replace_final_stride_with_dilation: bool = False

    # Transformer.
    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    # One decoder layer: the original ACT code builds 7 but returns the output of the first one only
    # (tonyzhaozh/act issue #25), so the published results come from a 1-layer decoder.
    n_decoder_layers: int = 1

    # CVAE.
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4

    # Training-time terms that belong to the model's definition.
    dropout: float = 0.1
    kl_weight: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "chunk_size",
            "dim_model",
            "n_heads",
            "dim_feedforward",
            "n_encoder_layers",
            "n_decoder_layers",
            "latent_dim",
            "n_vae_encoder_layers",
        ):
            _check_positive_int(name, getattr(self, name))
        _check_positive_int("n_obs_steps", self.n_obs_steps)
        if self.n_obs_steps != 1:
            raise ValueError(
                f"ACTConfig.n_obs_steps: ACT uses the current observation only, got {self.n_obs_steps}"
            )
        for name in ("replace_final_stride_with_dilation", "pre_norm", "use_vae"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ACTConfig.{name}: expected true or false, got {getattr(self, name)!r}")
        _check_choice("execution_mode", self.execution_mode, EXECUTION_MODES)
        _check_choice("feedforward_activation", self.feedforward_activation, ACTIVATIONS)
        if self.vision_backbone in ("resnet34", "resnet50"):  # LeRobot's other choices
            raise ValueError(
                f"ACTConfig.vision_backbone: {self.vision_backbone!r} is not implemented here "
                f"(train/backbone.py has resnet18 only); train or re-train the policy with resnet18"
            )
        _check_choice("vision_backbone", self.vision_backbone, BACKBONES)
        if self.n_action_steps is not None:
            _check_positive_int("n_action_steps", self.n_action_steps)
        if self.n_action_steps is not None and self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"ACTConfig.n_action_steps: {self.n_action_steps} is larger than chunk_size {self.chunk_size}"
            )
        if self.dim_model % self.n_heads != 0:
            raise ValueError(
                f"ACTConfig.dim_model: {self.dim_model} is not divisible by n_heads {self.n_heads}"
            )
        # The 2-D sine embedding gives dim_model/2 channels per axis, split evenly into sine and cosine.
        if self.dim_model % 4 != 0:
            raise ValueError(
                f"ACTConfig.dim_model: must be a multiple of 4 (2-D sine embedding), got {self.dim_model}"
            )
        # Any sign, as LeRobot allows: m < 0 weighs the newest chunk most (w_i = exp(-m i), i = 0 the oldest).
        # The weights must stay finite in float32 (exp(88.7) overflows): -m (chunk_size - 1) <= 80.
        _check_real("temporal_ensemble_coeff", self.temporal_ensemble_coeff, low=-math.inf)
        lowest = -80.0 / max(self.chunk_size - 1, 1)
        if self.temporal_ensemble_coeff < lowest:
            raise ValueError(
                f"ACTConfig.temporal_ensemble_coeff: {self.temporal_ensemble_coeff} overflows the ensemble "
                f"weights exp(-m i) for chunk_size {self.chunk_size}; use m >= {lowest:.4g}"
            )
        _check_real("kl_weight", self.kl_weight, low=0.0)
        _check_real("dropout", self.dropout, low=0.0)
        if self.dropout >= 1.0:
            raise ValueError(f"ACTConfig.dropout: must be in [0, 1), got {self.dropout}")
        weights = self.pretrained_backbone_weights
        if weights is not None and (not isinstance(weights, str) or not weights):
            raise ValueError(
                f"ACTConfig.pretrained_backbone_weights: expected a file path or null, got {weights!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ACTConfig:
        """Build from a dict (e.g. a checkpoint's `config.json["policy"]`); unknown keys are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"ACTConfig: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ACTConfig: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ACTConfig.{name}: expected a positive integer, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"ACTConfig.{name}: expected one of {list(choices)}, got {value!r}")


def _check_real(name: str, value: Any, *, low: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < low
    ):
        raise ValueError(f"ACTConfig.{name}: expected a finite number >= {low}, got {value!r}")
