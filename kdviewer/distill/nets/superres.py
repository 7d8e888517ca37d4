"""Super-resolution nets: SRResNet (teacher, Ledig et al. 2017), its SRGAN discriminator, and the
ESPCN (Shi et al. 2016) and FSRCNN (Dong et al. 2016) students.

The generators map (N, C, H, W) float to (N, C, scale·H, scale·W), any H, W; ``scale`` is 2 (default),
3 or 4 (SRResNet also 8). With ``bicubic_skip`` (default) they learn the residual over a bicubic upsampling of
the input (the global skip of VDSR, Kim et al. 2016): at the start of training the output already is the bicubic
image, so a short CPU training refines it instead of first learning to reproduce the image. The discriminator maps (N, C, H, W) to real/fake logits (N, 1) for any H, W ≥ 16
(use ``BCEWithLogitsLoss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by an integer factor (ONNX Resize, cubic, half-pixel centres)."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def _near_zero(layer: nn.Module) -> None:
    """A last layer whose output starts near zero, so a net with a bicubic skip starts as the bicubic image."""
    nn.init.normal_(layer.weight, 0.0, 0.001)
    nn.init.zeros_(layer.bias)


def _check_scale(scale: int, allowed: tuple[int, ...]) -> int:
    if scale not in allowed:
        raise ValueError(f"scale must be one of {allowed}, not {scale}")
    return scale


class SRResidualBlock(nn.Module):
    """conv3×3, BN, PReLU, conv3×3, BN, plus the input: (N, ch, H, W) -> (N, ch, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRResNet: 9×9 head, ``num_blocks`` residual blocks, a global skip, PixelShuffle ×2 stages, 9×9 tail.

    Names: ``head``, ``blocks.i``, ``fuse`` (conv+BN after the blocks), ``upsample``, ``tail``.
    """

    def __init__(self, *, in_channels: int = 1, scale: int = 2, channels: int = 64, num_blocks: int = 16,
                 bicubic_skip: bool = True):
        super().__init__()
        self.scale, self.bicubic_skip = _check_scale(scale, (2, 3, 4, 8)), bicubic_skip
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*(SRResidualBlock(channels) for _ in range(num_blocks)))
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        stages = [(3, 1)] if scale == 3 else [(2, n) for n in range({2: 1, 4: 2, 8: 3}[scale])]
        ups: list[nn.Module] = []
        for factor, _ in stages:
            ups += [
                nn.Conv2d(channels, channels * factor**2, 3, padding=1),
                nn.PixelShuffle(factor),
                nn.PReLU(),
            ]
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(channels, in_channels, 9, padding=4)
        if bicubic_skip:
            _near_zero(self.tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        out = self.fuse(self.blocks(head)) + head
        out = self.tail(self.upsample(out))
        return out + _bicubic(x, self.scale) if self.bicubic_skip else out


class ESPCN(nn.Module):
    """ESPCN: 5×5 conv (64) tanh, 3×3 conv (32) tanh, 3×3 conv to C·scale² channels, PixelShuffle.

    Names: ``body`` (``body.1``, ``body.3`` are the two tanh outputs), ``upsample``.
    """

    def __init__(self, *, in_channels: int = 1, scale: int = 2, channels: int = 64, bicubic_skip: bool = True):
        super().__init__()
        self.scale, self.bicubic_skip = _check_scale(scale, (2, 3, 4)), bicubic_skip
        half = channels // 2
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(channels, half, 3, padding=1),
            nn.Tanh(),
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(half, in_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale)
        )
        if bicubic_skip:
            _near_zero(self.upsample[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsample(self.body(x))
        return out + _bicubic(x, self.scale) if self.bicubic_skip else out


class FSRCNN(nn.Module):
    """FSRCNN(d, s, m): 5×5 extract (d), 1×1 shrink (s), m × 3×3 mapping, 1×1 expand (d), 9×9 deconv ×scale.

    Names: ``extract``, ``shrink``, ``mapping``, ``expand``, ``deconv``; PReLU after every conv but the last.
    """

    def __init__(self, *, in_channels: int = 1, scale: int = 2, d: int = 56, s: int = 12, m: int = 4,
                 bicubic_skip: bool = True):
        super().__init__()
        self.scale, self.bicubic_skip = _check_scale(scale, (2, 3, 4)), bicubic_skip
        self.extract = nn.Sequential(nn.Conv2d(in_channels, d, 5, padding=2), nn.PReLU(d))
        self.shrink = nn.Sequential(nn.Conv2d(d, s, 1), nn.PReLU(s))
        self.mapping = nn.Sequential(
            *(layer for _ in range(m) for layer in (nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)))
        )
        self.expand = nn.Sequential(nn.Conv2d(s, d, 1), nn.PReLU(d))
        self.deconv = nn.ConvTranspose2d(d, in_channels, 9, stride=scale, padding=4, output_padding=scale - 1)
        nn.init.normal_(self.deconv.weight, 0.0, 0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.deconv(self.expand(self.mapping(self.shrink(self.extract(x)))))
        return out + _bicubic(x, self.scale) if self.bicubic_skip else out


class SRGANDiscriminator(nn.Module):
    """SRGAN discriminator: 8 convs (64→512, stride 2 every other), then a fully-convolutional classifier.

    The paper's dense layers (1024, 1) are 1×1 convs after global average pooling, so any input size works.
    Names: ``body.0`` .. ``body.7``, ``classifier``. Output: logits (N, 1).
    """

    def __init__(self, *, in_channels: int = 1, channels: int = 64):
        super().__init__()
        c = channels
        plan = [(c, 2), (2 * c, 1), (2 * c, 2), (4 * c, 1), (4 * c, 2), (8 * c, 1), (8 * c, 2)]
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        ]
        in_ch = c
        for out_ch, stride in plan:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(out_ch),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            in_ch = out_ch
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, 16 * c, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(16 * c, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.body(x)), 1)


def srresnet(*, in_channels: int = 1, scale: int = 2, channels: int = 64, num_blocks: int = 16,
             bicubic_skip: bool = True) -> SRResNet:
    """SRResNet teacher: 16 blocks, 64 channels (≈ 1.4 M parameters at ×2, 1.5 M at ×4, 1 channel)."""
    return SRResNet(in_channels=in_channels, scale=scale, channels=channels, num_blocks=num_blocks,
                    bicubic_skip=bicubic_skip)


def espcn(*, in_channels: int = 1, scale: int = 2, channels: int = 64, bicubic_skip: bool = True) -> ESPCN:
    """ESPCN student (≈ 21 k parameters at ×2, 1 channel)."""
    return ESPCN(in_channels=in_channels, scale=scale, channels=channels, bicubic_skip=bicubic_skip)


def fsrcnn(*, in_channels: int = 1, scale: int = 2, d: int = 56, s: int = 12, m: int = 4,
           bicubic_skip: bool = True) -> FSRCNN:
    """FSRCNN(56, 12, 4) student (≈ 12.8 k parameters, 1 channel)."""
    return FSRCNN(in_channels=in_channels, scale=scale, d=d, s=s, m=m, bicubic_skip=bicubic_skip)


def srgan_discriminator(*, in_channels: int = 1, channels: int = 64) -> SRGANDiscriminator:
    """The discriminator for adversarial SRResNet training (SRGAN); (N, C, H, W) -> logits (N, 1)."""
    return SRGANDiscriminator(in_channels=in_channels, channels=channels)
