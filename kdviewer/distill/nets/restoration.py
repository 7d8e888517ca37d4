"""Denoising nets: DnCNN and RED-CNN (teachers) and a small residual CNN (student).

Each maps a noisy image (N, C, H, W) float to the denoised image (N, C, H, W), any H, W, learning the
residual inside (output = input - predicted noise, or input + decoder output for RED-CNN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ResidualDenoiser(nn.Module):
    """DnCNN-style net (Zhang et al. 2017): conv+ReLU, ``depth-2`` × (conv+BN+ReLU), conv; predicts the noise.

    ``dilations`` (one per middle block, ``depth - 2`` values; default all 1) widens the receptive field at no
    cost in parameters, as IRCNN (Zhang et al. 2017, "Learning deep CNN denoiser prior"): 8 layers with
    dilations 1, 2, 3, 4, 3, 2 see 35 × 35 pixels, as a plain 17-layer DnCNN.
    ``shuffle = 2`` runs the net on FFDNet's sub-images (Zhang et al. 2018): a pixel unshuffle turns each 2×2
    block into 4 channels at half resolution, the layers predict the noise of the 4 pixels there, and a pixel
    shuffle puts it back: a quarter of the multiply-adds per image for the same layers, twice the receptive
    field, every input pixel kept (H and W must be even).
    Names: ``head`` (first conv + ReLU), ``body.i`` (the middle blocks), ``tail`` (last conv).
    """

    def __init__(self, *, in_channels: int = 1, depth: int = 17, channels: int = 64, batch_norm: bool = True,
                 dilations: Sequence[int] | None = None, shuffle: int = 1):
        super().__init__()
        if depth < 3:
            raise ValueError(f"depth must be at least 3, not {depth}")
        if shuffle not in (1, 2) or isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be 1 (full resolution) or 2 (FFDNet's sub-images), not {shuffle!r}")
        dilations = tuple(dilations) if dilations else (1,) * (depth - 2)
        if len(dilations) != depth - 2 or min(dilations) < 1:
            raise ValueError(f"dilations must be {depth - 2} values >= 1 (one per middle block), not {dilations}")
        self.shuffle = shuffle
        sub = in_channels * shuffle * shuffle
        self.head = nn.Sequential(nn.Conv2d(sub, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*(self._block(channels, batch_norm, d) for d in dilations))
        self.tail = nn.Conv2d(channels, sub, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def _block(channels: int, batch_norm: bool, dilation: int) -> nn.Sequential:
        if batch_norm:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
        return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
                             nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shuffle == 1:
            return x - self.tail(self.body(self.head(x)))
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"shuffle = 2 needs an even height and width, not {tuple(x.shape[-2:])}")
        sub = nn.functional.pixel_unshuffle(x, 2)
        return x - nn.functional.pixel_shuffle(self.tail(self.body(self.head(sub))), 2)


class REDCNN(nn.Module):
    """RED-CNN (Chen et al. 2017, low-dose CT): 5 convs, 5 transposed convs (5×5, no padding), 3 shortcuts.

    As the authors' reference code, except that the last ReLU is left out so that z-scored inputs
    (negative values) can be restored. Names: ``conv1..conv5``, ``tconv1..tconv5``.
    """

    def __init__(self, *, in_channels: int = 1, channels: int = 96):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 5)
        self.conv2 = nn.Conv2d(channels, channels, 5)
        self.conv3 = nn.Conv2d(channels, channels, 5)
        self.conv4 = nn.Conv2d(channels, channels, 5)
        self.conv5 = nn.Conv2d(channels, channels, 5)
        self.tconv1 = nn.ConvTranspose2d(channels, channels, 5)
        self.tconv2 = nn.ConvTranspose2d(channels, channels, 5)
        self.tconv3 = nn.ConvTranspose2d(channels, channels, 5)
        self.tconv4 = nn.ConvTranspose2d(channels, channels, 5)
        self.tconv5 = nn.ConvTranspose2d(channels, in_channels, 5)
        self.relu = nn.ReLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual_1 = x
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        residual_2 = out
        out = self.relu(self.conv3(out))
        out = self.relu(self.conv4(out))
        residual_3 = out
        out = self.relu(self.conv5(out))
        out = self.tconv1(out) + residual_3
        out = self.tconv2(self.relu(out))
        out = self.tconv3(self.relu(out)) + residual_2
        out = self.tconv4(self.relu(out))
        return self.tconv5(self.relu(out)) + residual_1


def dncnn(*, in_channels: int = 1, depth: int = 17, channels: int = 64, batch_norm: bool = True,
          dilations: Sequence[int] | None = None, shuffle: int = 1) -> ResidualDenoiser:
    """DnCNN teacher: 17 layers, 64 channels, BatchNorm (≈ 0.56 M parameters, 1 channel).

    ``batch_norm=False`` drops the BatchNorm layers (as later low-dose CT work does): its running statistics,
    gathered on small patches, need not match whole slices at inference. ``shuffle=2``: FFDNet's sub-images
    (see `ResidualDenoiser`).
    """
    return ResidualDenoiser(in_channels=in_channels, depth=depth, channels=channels, batch_norm=batch_norm,
                            dilations=dilations, shuffle=shuffle)


def redcnn(*, in_channels: int = 1, channels: int = 96) -> REDCNN:
    """RED-CNN teacher: 96 channels (≈ 1.85 M parameters, 1 channel)."""
    return REDCNN(in_channels=in_channels, channels=channels)


def denoise_small(*, in_channels: int = 1, depth: int = 6, channels: int = 24,
                  dilations: Sequence[int] | None = None, shuffle: int = 1) -> ResidualDenoiser:
    """Small residual denoiser student: 6 layers, 24 channels, no BatchNorm (≈ 21 k parameters, 1 channel).

    ``dilations``, ``shuffle``: see `ResidualDenoiser` (a wider view of streaky low-dose CT noise at the same
    size; FFDNet's sub-images).
    """
    return ResidualDenoiser(in_channels=in_channels, depth=depth, channels=channels, batch_norm=False,
                            dilations=dilations, shuffle=shuffle)
