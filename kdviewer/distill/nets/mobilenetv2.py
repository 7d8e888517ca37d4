"""MobileNetV2 (Sandler et al. 2018) in plain torch, with torchvision's module names.

Layout: `features.0` (stem conv) .. `features.17` (inverted residual blocks), `features.18` (1×1 conv to
1280·max(1, width) channels), `classifier` (Dropout, Linear). Output strides of the blocks: features.1 → 2,
features.3 → 4, features.6 → 8, features.13 → 16, features.18 → 32 (each halved with ``small_input``,
whose first conv has stride 1). ``width`` multiplies every width, rounded to a multiple of 8 as
torchvision does. Input (N, in_channels, H, W) float; output logits (N, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdviewer.distill.nets.resnet import use_small_stem

# t (expansion), c (channels), n (repeats), s (stride of the first repeat), as in the paper's Table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going down by more than 10 %."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNAct(nn.Sequential):
    """Conv (same padding, no bias) + BatchNorm + ReLU6; children `0`, `1`, `2` as torchvision's."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1×1 expand, 3×3 depthwise (stride), 1×1 linear project; shortcut when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, kernel_size=1))
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


def mobilenetv2_blocks(in_channels: int, width: float, first_stride: int = 2) -> list[nn.Module]:
    """The stem and the 17 inverted residual blocks (features.0..17), without the last 1×1 conv."""
    in_ch = make_divisible(32 * width)
    blocks: list[nn.Module] = [ConvBNAct(in_channels, in_ch, stride=first_stride)]
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out_ch = make_divisible(c * width)
        for i in range(n):
            blocks.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
            in_ch = out_ch
    return blocks


def init_weights(module: nn.Module) -> None:
    """torchvision's MobileNetV2 initialisation (Kaiming fan-out convs, unit BN, small Linear)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class MobileNetV2(nn.Module):
    """MobileNetV2 classifier: (N, in_channels, H, W) -> logits (N, num_classes)."""

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 2,
        width: float = 1.0,
        small_stem: bool = False,
        dropout: float = 0.2,
    ):
        super().__init__()
        blocks = mobilenetv2_blocks(in_channels, width, first_stride=1 if small_stem else 2)
        self.last_channel = make_divisible(1280 * max(1.0, width))
        blocks.append(ConvBNAct(blocks[-1].out_channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2(
    *,
    in_channels: int = 1,
    num_classes: int = 2,
    width: float = 1.0,
    stem: str = "auto",
    small_input: bool | None = None,
    input_size: int | Sequence[int] | None = None,
    dropout: float = 0.2,
) -> MobileNetV2:
    """MobileNetV2 with a width multiplier; ≈ 2.2 M parameters at width 1.0 (1 channel, 2 classes).

    ``stem``/``small_input``/``input_size`` choose the first conv's stride as for the ResNets
    (``"small"``: stride 1 for inputs ≤ 64 px).
    """
    small = use_small_stem(stem, small_input, input_size)
    return MobileNetV2(
        in_channels=in_channels, num_classes=num_classes, width=width, small_stem=small, dropout=dropout
    )
