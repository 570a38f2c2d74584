"""The module that is exported: raw sensor inputs in, raw-unit action chunk out, through `predict_chunk`.

The graph takes one `uint8 (1, H, W, 3)` NHWC image per camera (what a camera driver hands over, no
transpose on the robot), then one `float32 (1, D)` per vector input (`observation.state`,
`observation.environment_state`, in the I/O contract's order), and returns `float32 (1, k, A)` actions in
robot units. A policy may have no camera (keypoint policies) or no state.
Normalization, unnormalization and the zero latent all live in `ACTPolicy.predict_chunk`; this wrapper only
fixes the argument order and the layout, so the exported graph is exactly the path that evaluation runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from edgeact.export.artifact import ENV_STATE, STATE, PolicySpec
from edgeact.export.verify import random_inputs
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["ExportWrapper", "Float64Mode", "float64_runner", "random_inputs", "run_torch", "to_torch_args"]


class ExportWrapper(nn.Module):
    """`forward(*images_nhwc, *vectors) -> actions`: the inputs of `spec`, in `spec.input_names` order."""

    def __init__(self, policy: nn.Module, spec: PolicySpec) -> None:
        super().__init__()
        self.policy = policy
        self.camera_features = [c.feature for c in spec.cameras]
        self.vector_features = [v.feature for v in spec.vectors]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = len(self.camera_features)
        images, vectors = inputs[:n], dict(zip(self.vector_features, inputs[n:], strict=True))
        # (1, H, W, 3) uint8 -> (1, 3, H, W) uint8: the policy converts to float and normalizes.
        batch = {
            feat: img.permute(0, 3, 1, 2) for feat, img in zip(self.camera_features, images, strict=True)
        }
        state, env_state = vectors.get(STATE), vectors.get(ENV_STATE)
        return self.policy.predict_chunk(batch, state, env_state)  # (1, k, A) raw units


def to_torch_args(spec: PolicySpec, feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """Graph feeds (by input name) -> the wrapper's positional arguments."""
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in spec.input_names)


@torch.no_grad()
def run_torch(wrapper: ExportWrapper, spec: PolicySpec, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The PyTorch reference output for one set of feeds: `float32 (1, k, A)`."""
    return wrapper(*to_torch_args(spec, feeds)).float().numpy()


class Float64Mode(TorchFunctionMode):
    """Runs float32 code in float64: `.float()`, `.to(torch.float32)` and `dtype=torch.float32` become
    float64 (the model casts to float32 in a few places, e.g. uint8 images and the zero latent), so a
    `.double()` copy of the policy computes the whole chunk in float64: the reference for parity."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.float:
            func = torch.Tensor.double
        if kwargs.get("dtype") is torch.float32:
            kwargs["dtype"] = torch.float64
        args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        return func(*args, **kwargs)


def float64_runner(policy: nn.Module, spec: PolicySpec) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """feeds -> float64 `(1, k, A)` from a float64 copy of `policy` (the policy itself is left as it is)."""
    wrapper = ExportWrapper(copy.deepcopy(policy).double(), spec).eval()

    @torch.no_grad()
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # tensors made without a dtype (arange of floats, ...)
        try:
            with Float64Mode():
                out = wrapper(*to_torch_args(spec, feeds))
        finally:
            torch.set_default_dtype(default)
        if out.dtype != torch.float64:
            raise RuntimeError(f"the float64 reference computed in {out.dtype}")
        return out.numpy()

    return run
