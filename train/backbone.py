"""ResNet18 feature extractor with frozen batch norm, written here (torchvision is not a dependency).

Parameter names follow torchvision's `resnet18` (`conv1`, `bn1`, `layer1.0.conv1`, ..., `layer4.1.bn2`)
without the classifier (`avgpool`, `fc`), so that a torchvision state dict and LeRobot's ACT backbone
(`model.backbone.*`) load onto it unchanged. The forward pass returns the `layer4` feature map
(B, 512, H/32, W/32).

Batch norm is frozen as in DETR and ACT: its statistics and affine terms are buffers, never updated and never
trained. With `replace_final_stride_with_dilation`, `layer4` keeps stride 1 and dilates its 3x3 convolutions
by 2 (feature map H/16 x W/16), as torchvision's `replace_stride_with_dilation=[False, False, True]`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

RESNET18_CHANNELS = 512  # channels of the layer4 feature map


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms (buffers): (x - mean) / sqrt(var + eps) * w + b."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # torchvision and trainable BatchNorm2d state dicts carry a step counter that frozen stats do not use.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # (C,)
        shift = self.bias - self.running_mean * scale  # (C,)
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016), torchvision's names."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride, dilation)
        self.bn1 = FrozenBatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout, 1, dilation)
        self.bn2 = FrozenBatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), FrozenBatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Backbone(nn.Module):
    """ResNet18 up to layer4: float input (B, 3, H, W) -> feature map (B, 512, h, w)."""

    out_channels = RESNET18_CHANNELS

    def __init__(self, replace_final_stride_with_dilation: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 64, stride=1, dilation=1)
        self.layer2 = self._make_layer(64, 128, stride=2, dilation=1)
        self.layer3 = self._make_layer(128, 256, stride=2, dilation=1)
        if replace_final_stride_with_dilation:
            # torchvision's rule: the first block keeps the previous dilation (1), later ones use the new one.
            self.layer4 = nn.Sequential(BasicBlock(256, 512, 1, 1), BasicBlock(512, 512, 1, 2))
        else:
            self.layer4 = self._make_layer(256, 512, stride=2, dilation=1)
        self.stride = 16 if replace_final_stride_with_dilation else 32
        self._init_weights()

    @staticmethod
    def _make_layer(cin: int, cout: int, stride: int, dilation: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(cin, cout, stride, dilation), BasicBlock(cout, cout, 1, dilation))

    def _init_weights(self) -> None:
        # torchvision's initialisation for convolutions; frozen norms start as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size (h, w) of the feature map for an input of height x width."""

        def down(n: int, times: int) -> int:
            for _ in range(times):
                n = (n - 1) // 2 + 1  # a stride-2 conv or pool with 'same'-style padding
            return n

        times = 4 if self.stride == 16 else 5
        return down(height, times), down(width, times)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # (B, 512, H/32, W/32) or H/16 with dilation


def load_resnet18_weights(backbone: ResNet18Backbone, path: str | Path) -> None:
    """Load a torchvision-format resnet18 state dict from a local safetensors file (`fc.*` is dropped).

    Raises ValueError naming the file when it is missing, unreadable or does not fit a ResNet18.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pretrained_backbone_weights: no such file {path}")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"pretrained_backbone_weights: cannot read {path} as safetensors: {err}") from err
    state = {
        k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"pretrained_backbone_weights: {path} is not a resnet18 state dict "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]})"
        )
    backbone.load_state_dict(state, strict=True)
    log.info("loaded resnet18 backbone weights from %s", path)
