"""Mean/std normalization with the statistics as module buffers: they travel in the state dict and export.

One definition for every stage (the exported graph and the C++ pre-step use the same numbers):
- vectors (state, environment state, action): `(x - mean) / (std + EPS)`, inverse `y * std + mean`;
- images: uint8 (B, C, H, W) -> `x / 255` -> `(x - mean_c) / (std_c + EPS)`, per-channel stats in 0..1
  units (LeRobot's image stats are computed on frames scaled to 0..1).
EPS = 1e-8 as in LeRobot's normalizer, so imported LeRobot policies give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from edgeact.train.train_config import TrainError
from torch import Tensor, nn

EPS = 1e-8


class PolicyFeatureError(TrainError, ValueError):
    """The features or stats given to a policy do not fit it (names the feature and the field)."""


def buffer_name(feature: str) -> str:
    """Module key of a feature (no dots in module names): `observation.state` -> `observation_state`."""
    return feature.replace(".", "_")


def _stat_vector(feature: str, stats: Mapping[str, Any], field: str, size: int) -> Tensor:
    if field not in stats:
        raise PolicyFeatureError(f"stats[{feature!r}]: missing {field!r} (have {sorted(stats)})")
    try:
        values = torch.as_tensor(stats[field], dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise PolicyFeatureError(f"stats[{feature!r}][{field!r}]: not a list of numbers: {err}") from err
    if values.numel() != size:
        raise PolicyFeatureError(
            f"stats[{feature!r}][{field!r}]: expected {size} values, got {values.numel()}"
        )
    if not torch.isfinite(values).all():
        raise PolicyFeatureError(f"stats[{feature!r}][{field!r}]: non-finite value in {values.tolist()}")
    if field == "std" and (values < 0).any():
        raise PolicyFeatureError(f"stats[{feature!r}]['std']: negative value in {values.tolist()}")
    return values.to(torch.float32)


class MeanStd(nn.Module):
    """Buffers `mean` and `std` of one feature, shaped to broadcast against it ((D,) or (C, 1, 1))."""

    def __init__(self, feature: str, stats: Mapping[str, Any] | None, shape: Sequence[int]) -> None:
        super().__init__()
        size = math.prod(shape)
        if stats is None:  # placeholder values, overwritten by load_state_dict
            mean, std = torch.zeros(size), torch.ones(size)
        else:
            mean = _stat_vector(feature, stats, "mean", size)
            std = _stat_vector(feature, stats, "std", size)
        self.register_buffer("mean", mean.reshape(tuple(shape)))
        self.register_buffer("std", std.reshape(tuple(shape)))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / (self.std + EPS)

    def unnormalize(self, y: Tensor) -> Tensor:
        return y * self.std + self.mean


class Normalizer(nn.Module):
    """Per-feature normalization for an ACT policy: images (per channel), state, environment state, action.

    `image_channels` maps image features to their channel count; `vector_dims` maps the other features to
    their size. `stats` is feature -> {"mean": [...], "std": [...], ...} as in a dataset's stats.json; with
    `stats=None` the buffers hold placeholders that a state dict overwrites.
    """

    def __init__(
        self,
        image_channels: Mapping[str, int],
        vector_dims: Mapping[str, int],
        stats: Mapping[str, Mapping[str, Any]] | None,
    ) -> None:
        super().__init__()
        # Submodules named after the features: state-dict keys `observation_state.mean`, `action.std`, ...
        for key, channels in image_channels.items():
            self.add_module(buffer_name(key), MeanStd(key, _stats_for(stats, key), (channels, 1, 1)))
        for key, dim in vector_dims.items():
            self.add_module(buffer_name(key), MeanStd(key, _stats_for(stats, key), (dim,)))

    def _get(self, key: str) -> MeanStd:
        module = getattr(self, buffer_name(key), None)
        if not isinstance(module, MeanStd):
            raise PolicyFeatureError(f"normalizer: no statistics for feature {key!r}")
        return module

    def image(self, key: str, frames: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> normalized float32 (B, C, H, W); keeps the memory format (channels-last)."""
        x = frames.to(torch.float32) / 255.0
        return self._get(key).normalize(x)

    def normalize(self, key: str, x: Tensor) -> Tensor:
        return self._get(key).normalize(x)

    def unnormalize(self, key: str, y: Tensor) -> Tensor:
        return self._get(key).unnormalize(y)

    def stats_of(self, key: str) -> dict[str, list[float]]:
        """The mean/std held for `key`, as flat lists."""
        module = self._get(key)
        return {"mean": module.mean.reshape(-1).tolist(), "std": module.std.reshape(-1).tolist()}


def _stats_for(stats: Mapping[str, Mapping[str, Any]] | None, key: str) -> Mapping[str, Any] | None:
    if stats is None:
        return None
    if key not in stats:
        raise PolicyFeatureError(f"stats: no entry for feature {key!r} (have {sorted(stats)})")
    entry = stats[key]
    if not isinstance(entry, Mapping):
        raise PolicyFeatureError(
            f"stats[{key!r}]: expected a mapping of mean/std/min/max, got {type(entry).__name__}"
        )
    return entry
