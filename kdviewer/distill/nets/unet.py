"""U-Nets for segmentation: a configurable U-Net (teacher), a thin one and a MobileNetV2-encoder one (students).

All take (N, in_channels, H, W) float and give logits (N, num_classes, H, W); binary segmentation uses
2 classes (background, foreground) with a softmax. Module names, for forward hooks:
- ``encoders.i`` (i = 0 .. depth-1): the features at 1/2**i of the input (1/2**(i+1) for ``mobileunet``),
- ``bottleneck``: the deepest features (1/2**depth; 1/32 for ``mobileunet``),
- ``decoders.i``: the decoder block at the same resolution as ``encoders.i`` (they run from i = depth-1 to 0),
- ``head``: the 1×1 classifier (after a last ×2 upsampling for ``mobileunet``).
H and W must be multiples of 2**depth (32 for ``mobileunet``); the runtime pads to that.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kdviewer.distill.nets.mobilenetv2 import init_weights, mobilenetv2_blocks


class DoubleConv(nn.Sequential):
    """(3×3 conv, BatchNorm, ReLU) × 2: (N, in_ch, H, W) -> (N, out_ch, H, W)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SeparableConv(nn.Sequential):
    """Depthwise 3×3 + pointwise 1×1, each with BatchNorm and ReLU6: (N, in_ch, H, W) -> (N, out_ch, H, W)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU6(inplace=True),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


def _upsample() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


class UpBlock(nn.Module):
    """Upsample the deeper map ×2, concatenate the skip, then convolve: -> (N, out_ch, H, W).

    ``bilinear=True``: bilinear ×2 then a 1×1 conv to ``out_ch``; else a 2×2 stride-2 transposed conv.
    """

    def __init__(self, deep_ch: int, skip_ch: int, out_ch: int, *, bilinear: bool = True, separable=False):
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Sequential(_upsample(), nn.Conv2d(deep_ch, out_ch, 1, bias=False))
        else:
            self.up = nn.ConvTranspose2d(deep_ch, out_ch, 2, stride=2)
        if separable:
            self.conv: nn.Module = nn.Sequential(
                SeparableConv(out_ch + skip_ch, out_ch), SeparableConv(out_ch, out_ch)
            )
        else:
            self.conv = DoubleConv(out_ch + skip_ch, out_ch)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(deep), skip], dim=1))


def init_prior_head(head: nn.Conv2d, prior: float = 0.01, groups: int = 1, split: float = 0.0) -> None:
    """Start the 1×1 classifier near "every foreground class has probability ``prior``" (RetinaNet's prior
    initialisation, Lin et al. 2017): small weights, background bias log((1 − prior)(K − 1) / prior).

    Lesions and vessels cover well under 1 % of the pixels; a head drawn at random (He init of a 1×1 conv with
    2 outputs has std 1) starts with confident foreground logits on half of the image, a loss several times
    the converged one, and thin students then collapsed to all-background on some seeds.

    ``groups`` = r² for a head followed by a pixel shuffle of factor r: its channel ``k·r² + j`` is class k at
    sub-pixel j, so the background bias goes to the first r² channels.

    ``split`` > 0: the foreground rows start at +split on the first half of the input channels and −split on
    the rest, the background rows the opposite (plus the small noise). The inputs are ReLU outputs, never
    negative: a thin net whose last stage has only a few channels stalled at all-background when every one of
    them had come to vote against the foreground (docs/MODEL_ZOO.md, lung nodules, session 21); split makes half
    of them start as foreground voters. With the halves' features alike at the start, the prior holds.
    """
    nn.init.normal_(head.weight, 0.0, 0.01)
    if split:
        out_ch, in_ch = head.weight.shape[:2]
        rows = torch.where(torch.arange(out_ch) >= groups, 1.0, -1.0)  # foreground rows +; background (first r²) −
        cols = torch.where(torch.arange(in_ch) < in_ch // 2, 1.0, -1.0)  # the first half of the input channels +
        with torch.no_grad():
            head.weight += split * torch.outer(rows, cols)[:, :, None, None]
    if head.bias is not None:
        nn.init.zeros_(head.bias)
        classes = head.out_channels // groups
        with torch.no_grad():
            head.bias[:groups] = math.log((1 - prior) * max(classes - 1, 1) / prior)


class UNet(nn.Module):
    """Ronneberger-style U-Net with BatchNorm; widths ``base · 2**i``, ``depth`` poolings.

    ``entry_stride=2`` (students): a 3×3 stride-2 conv (``entry``) first, the U-Net at half resolution, and
    the logits upsampled ×2 (bilinear) at the end: full-resolution maps are what make a thin U-Net
    memory-bound on a CPU, so this one runs several times faster for organ- and lesion-sized structures;
    H and W must then be multiples of ``2**(depth+1)``. ``entry="shuffle"`` makes that step lossless for thin
    structures: a pixel unshuffle in (each 2×2 block becomes 4 channels at half resolution, as FFDNet's
    sub-images) and a pixel shuffle out (the head predicts the 4 full-resolution pixels of each half-resolution
    position), so every input pixel is seen and every output pixel has its own logits. ``detail=D`` (with
    ``entry="shuffle"``) adds a full-resolution detail branch: 3×3 conv of the input to D channels, ReLU, 3×3 conv
    to the classes, added to the pixel-shuffled logits (a 5×5 full-resolution view for the 1-2 px structures
    that the 2×2 blocks blur; the only full-resolution work, a few channels wide, as the spatial path of a
    two-branch segmenter such as BiSeNet). Its last conv starts at zero, so training starts from the plain
    shuffle U-Net. ``detail_mode="features"`` joins the two branches earlier: the head gives D feature channels
    per full-resolution pixel (4·D at half resolution, pixel-shuffled), the detail branch a 3×3 conv of the input
    to D channels; their sum, after a ReLU, goes through a last 3×3 conv to the classes, so the logits of a thin
    vessel are computed from both views at full resolution instead of added from two separate predictions.
    ``detail_mode="refine"``: the detail branch sees the input and the pixel-shuffled logits (a cascade's
    refinement stage: the local correction knows what the half-resolution context predicted), and its output is
    added to those logits; about the cost of ``"logits"``.

    ``widths`` (w0, ..., w_depth) sets each level's width instead of ``base · 2**i`` (and the depth): a thin net
    whose widths are multiples of 16 fills the blocked (NCHWc) convolutions of onnxruntime on AVX-512 CPUs, which
    pad any other width up to the next multiple (8 on AVX2).
    """

    def __init__(
        self, *, in_channels: int = 1, num_classes: int = 2, depth: int = 4, base: int = 32, bilinear=True,
        entry_stride: int = 1, entry: str = "conv", detail: int = 0, detail_mode: str = "logits",
        widths: tuple[int, ...] | list[int] | None = None, head_split: float = 0.0,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        if entry_stride not in (1, 2):
            raise ValueError(f"entry_stride must be 1 or 2, not {entry_stride}")
        if entry not in ("conv", "shuffle"):
            raise ValueError(f"entry must be 'conv' or 'shuffle', not {entry!r}")
        if entry == "shuffle" and entry_stride != 2:
            raise ValueError("entry 'shuffle' needs entry_stride 2")
        if detail < 0 or (detail and entry != "shuffle"):
            raise ValueError(f"detail (a full-resolution branch of D >= 1 channels) needs entry 'shuffle', got "
                             f"detail={detail} with entry {entry!r}")
        if detail_mode not in ("logits", "features", "refine"):
            raise ValueError(f"detail_mode must be 'logits', 'features' or 'refine', not {detail_mode!r}")
        if detail_mode != "logits" and not detail:
            raise ValueError(f"detail_mode {detail_mode!r} needs a detail branch (detail = D channels)")
        if not 0.0 <= head_split < 10.0:
            raise ValueError(f"head_split must be a weight from 0 to under 10 (e.g. 0.25), not {head_split}")
        if widths is not None:
            widths = [int(w) for w in widths]
            if len(widths) < 2 or min(widths) < 1:
                raise ValueError(f"widths needs at least two positive widths (levels 0..depth), got {widths}")
            depth = len(widths) - 1
        else:
            widths = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.detail_mode = detail_mode
        self.entry: nn.Module | None = None
        self.exit: nn.Module | None = None
        self.detail: nn.Sequential | None = None
        self.fuse: nn.Conv2d | None = None
        head_out = num_classes
        if detail and detail_mode == "features":
            self.detail = nn.Sequential(nn.Conv2d(in_channels, detail, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(detail))
            self.fuse = nn.Conv2d(detail, num_classes, 3, padding=1)
            head_out = detail
        elif detail:
            detail_in = in_channels + (num_classes if detail_mode == "refine" else 0)
            self.detail = nn.Sequential(nn.Conv2d(detail_in, detail, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(detail), nn.ReLU(inplace=True),
                                        nn.Conv2d(detail, num_classes, 3, padding=1))
        if entry_stride == 2 and entry == "shuffle":
            self.entry, self.exit = nn.PixelUnshuffle(2), nn.PixelShuffle(2)
            in_channels, head_out = in_channels * 4, head_out * 4
        elif entry_stride == 2:
            self.entry = nn.Sequential(nn.Conv2d(in_channels, base, 3, stride=2, padding=1, bias=False),
                                       nn.BatchNorm2d(base), nn.ReLU(inplace=True))
            self.exit = _upsample()
            in_channels = base
        self.encoders = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[depth - 1], widths[depth])
        self.decoders = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i], bilinear=bilinear) for i in range(depth)
        )
        self.head = nn.Conv2d(widths[0], head_out, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if self.fuse is not None:
            init_prior_head(self.fuse, split=head_split)
        else:
            init_prior_head(self.head, groups=head_out // num_classes, split=head_split)
        if self.detail is not None and self.fuse is None:
            nn.init.zeros_(self.detail[-1].weight)
            nn.init.zeros_(self.detail[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = x
        if self.entry is not None:
            x = self.entry(x)
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.bottleneck(self.pool(x))
        for i in reversed(range(self.depth)):
            x = self.decoders[i](x, skips[i])
        x = self.head(x)
        x = x if self.exit is None else self.exit(x)
        if self.detail is None:
            return x
        if self.fuse is not None:
            return self.fuse(torch.relu(x + self.detail(full)))
        if self.detail_mode == "refine":
            return x + self.detail(torch.cat([full, x], dim=1))
        return x + self.detail(full)


def unet(
    *, in_channels: int = 1, num_classes: int = 2, depth: int = 4, base: int = 32, bilinear: bool = True
) -> UNet:
    """U-Net teacher; ≈ 7.2 M parameters at depth 4, base 32 (H, W multiples of 2**depth)."""
    return UNet(in_channels=in_channels, num_classes=num_classes, depth=depth, base=base, bilinear=bilinear)


def unet_small(
    *, in_channels: int = 1, num_classes: int = 2, depth: int = 4, base: int = 6, bilinear: bool = True,
    entry_stride: int = 1, entry: str = "conv", detail: int = 0, detail_mode: str = "logits",
    widths: tuple[int, ...] | list[int] | None = None, head_split: float = 0.0,
) -> UNet:
    """Thin U-Net student: the teacher's design and depth (same input sizes, hook points at the same
    resolutions), base 6: ≈ 0.26 M parameters (base 8, depth 3: 0.11 M). ``entry_stride=2``: the U-Net runs at
    half resolution behind a stride-2 entry conv (hook points then at twice the teacher's strides); with
    ``entry="shuffle"`` behind a pixel unshuffle, with a pixel-shuffle output; ``detail=D`` adds a full-resolution
    branch of D channels to that, joined at the logits or (``detail_mode="features"``) before a last
    full-resolution conv; ``widths`` sets every level's width (see `UNet`); ``head_split`` starts half of the
    last stage's channels as foreground voters (`init_prior_head`)."""
    return UNet(in_channels=in_channels, num_classes=num_classes, depth=depth, base=base, bilinear=bilinear,
                entry_stride=entry_stride, entry=entry, detail=detail, detail_mode=detail_mode, widths=widths,
                head_split=head_split)


# features.* slices of MobileNetV2 that end at output strides 2, 4, 8, 16 (encoders) and 32 (bottleneck).
_MOBILENET_STAGES = ((0, 2), (2, 4), (4, 7), (7, 14))
_MOBILENET_BOTTLENECK = (14, 18)


class MobileUNet(nn.Module):
    """U-Net with a MobileNetV2 encoder (no final 1×1 conv) and a separable-conv decoder; H, W multiples of 32."""

    def __init__(self, *, in_channels: int = 1, num_classes: int = 2, width: float = 0.5):
        super().__init__()
        blocks = mobilenetv2_blocks(in_channels, width)
        self.encoders = nn.ModuleList(nn.Sequential(*blocks[a:b]) for a, b in _MOBILENET_STAGES)
        a, b = _MOBILENET_BOTTLENECK
        self.bottleneck = nn.Sequential(*blocks[a:b])
        skip_ch = [blocks[b - 1].out_channels for _, b in _MOBILENET_STAGES]
        deep_ch = skip_ch[1:] + [blocks[-1].out_channels]
        self.decoders = nn.ModuleList(
            UpBlock(deep_ch[i], skip_ch[i], skip_ch[i], separable=True) for i in range(len(skip_ch))
        )
        self.head = nn.Sequential(_upsample(), nn.Conv2d(skip_ch[0], num_classes, 1))
        init_weights(self)
        init_prior_head(self.head[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = self.bottleneck(x)
        for i in reversed(range(len(self.decoders))):
            x = self.decoders[i](x, skips[i])
        return self.head(x)


def mobileunet(*, in_channels: int = 1, num_classes: int = 2, width: float = 0.5) -> MobileUNet:
    """MobileNetV2-encoder U-Net student (≈ 0.50 M parameters at width 0.5, 1.9 M at 1.0; H, W multiples of 32)."""
    return MobileUNet(in_channels=in_channels, num_classes=num_classes, width=width)
