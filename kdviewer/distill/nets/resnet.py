"""ResNet-18/34/50 (He et al. 2016) in plain torch, with torchvision's module names.

Layout: `conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc`, so forward hooks and state-dict keys
read like torchvision's. Input (N, in_channels, H, W) float; output logits (N, num_classes).

The stem (`stem` argument):
- ``"imagenet"``: 7×7 conv stride 2 + 3×3 max-pool (total stride 32), for inputs of about 128 px and up.
- ``"small"``: 3×3 conv stride 1, no max-pool (total stride 8), as the MedMNIST v2 ResNets use for 28/64 px.
- ``"auto"`` (default): ``"small"`` when ``input_size`` is given and its largest side is ≤ 64 px,
  else ``"imagenet"``. ``small_input=True/False`` is a shorthand that overrides ``stem``.
With the small stem, ``maxpool`` is an ``nn.Identity`` so the names stay the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SMALL_INPUT_MAX_PX = 64


def use_small_stem(
    stem: str = "auto", small_input: bool | None = None, input_size: int | Sequence[int] | None = None
) -> bool:
    """Decide the stem: True for the small-input stem (see the module docstring)."""
    if small_input is not None:
        return bool(small_input)
    if stem == "small":
        return True
    if stem == "imagenet":
        return False
    if stem != "auto":
        raise ValueError(f"stem must be 'auto', 'small' or 'imagenet', not {stem!r}")
    if input_size is None:
        return False
    sides = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    return max(sides) <= SMALL_INPUT_MAX_PX


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a shortcut (ResNet-18/34). (N, in_ch, H, W) -> (N, out_ch, H/s, W/s)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (stride here, as torchvision's "ResNet v1.5"), 1×1 expand ×4, with a shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet classifier: (N, in_channels, H, W) -> logits (N, num_classes); any H, W ≥ 1 after the stem."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        in_channels: int = 1,
        num_classes: int = 2,
        small_stem: bool = False,
    ):
        super().__init__()
        self.in_ch = 64
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], width: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        out_ch = width * block.expansion
        if stride != 1 or self.in_ch != out_ch:
            downsample = nn.Sequential(_conv1x1(self.in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
        layers = [block(self.in_ch, width, stride, downsample)]
        self.in_ch = out_ch
        layers += [block(self.in_ch, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(
    block: type[BasicBlock] | type[Bottleneck],
    layers: Sequence[int],
    in_channels: int,
    num_classes: int,
    stem: str,
    small_input: bool | None,
    input_size: int | Sequence[int] | None,
) -> ResNet:
    small = use_small_stem(stem, small_input, input_size)
    return ResNet(block, layers, in_channels=in_channels, num_classes=num_classes, small_stem=small)


def resnet18(
    *,
    in_channels: int = 1,
    num_classes: int = 2,
    stem: str = "auto",
    small_input: bool | None = None,
    input_size: int | Sequence[int] | None = None,
) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]); ≈ 11.2 M parameters for 1 channel, 2 classes."""
    return _resnet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, stem, small_input, input_size)


def resnet34(
    *,
    in_channels: int = 1,
    num_classes: int = 2,
    stem: str = "auto",
    small_input: bool | None = None,
    input_size: int | Sequence[int] | None = None,
) -> ResNet:
    """ResNet-34 (BasicBlock, [3, 4, 6, 3]); ≈ 21.3 M parameters for 1 channel, 2 classes."""
    return _resnet(BasicBlock, (3, 4, 6, 3), in_channels, num_classes, stem, small_input, input_size)


def resnet50(
    *,
    in_channels: int = 1,
    num_classes: int = 2,
    stem: str = "auto",
    small_input: bool | None = None,
    input_size: int | Sequence[int] | None = None,
) -> ResNet:
    """ResNet-50 (Bottleneck, [3, 4, 6, 3]); ≈ 23.5 M parameters for 1 channel, 2 classes."""
    return _resnet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, stem, small_input, input_size)
