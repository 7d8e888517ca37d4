"""The network registry: build any teacher or student by name, as timm's ``create_model``.

>>> model = create_model("mobilenetv2", in_channels=1, num_classes=2, width=0.5)
>>> task_of("mobilenetv2"), feature_layers("mobilenetv2")
('classify', ['features.3', 'features.6', 'features.13', 'features.18'])

Outputs by task (inputs are (N, in_channels, H, W) float):
- classify: logits (N, num_classes).
- segment: logits (N, num_classes, H, W), H and W multiples of ``2**depth`` (32 for ``mobileunet``);
  binary segmentation uses 2 classes (background, foreground) and a softmax.
- denoise: the clean image (N, in_channels, H, W); the nets learn the residual inside.
- super_resolve: (N, in_channels, scale·H, scale·W). ``srgan_discriminator`` gives (N, 1) real/fake logits.
Restoration nets ignore ``num_classes`` (out channels = in channels).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from kdviewer.distill.nets.ensemble import ensemble
from kdviewer.distill.nets.mobilenetv2 import mobilenetv2
from kdviewer.distill.nets.resnet import resnet18, resnet34, resnet50
from kdviewer.distill.nets.restoration import denoise_small, dncnn, redcnn
from kdviewer.distill.nets.superres import espcn, fsrcnn, srgan_discriminator, srresnet
from kdviewer.distill.nets.unet import mobileunet, unet, unet_small
from kdviewer.errors import KdviewerError

__all__ = [
    "ArchitectureOptionError",
    "UnknownArchitectureError",
    "count_parameters",
    "create_model",
    "feature_layers",
    "list_models",
    "task_of",
]


class UnknownArchitectureError(KdviewerError):
    """A model name that is not in the registry; the message lists the known names."""


class ArchitectureOptionError(KdviewerError):
    """An option (keyword) that the named architecture does not take; the message lists the ones it does."""


@dataclass(frozen=True)
class _Spec:
    builder: Callable[..., nn.Module]
    task: str  # "classify" | "segment" | "denoise" | "super_resolve"
    features: Callable[[dict[str, Any]], list[str]]  # builder kwargs -> default hook points


def _fixed(*names: str) -> Callable[[dict[str, Any]], list[str]]:
    return lambda kw: list(names)


def _unet_features(default_depth: int) -> Callable[[dict[str, Any]], list[str]]:
    def names(kw: dict[str, Any]) -> list[str]:
        widths = kw.get("widths")
        depth = len(widths) - 1 if widths else int(kw.get("depth", default_depth))
        return [f"encoders.{i}" for i in range(depth)] + ["bottleneck"]

    return names


_RESNET_FEATURES = _fixed("layer1", "layer2", "layer3", "layer4")


def _no_features(kw: dict[str, Any]) -> list[str]:
    raise ArchitectureOptionError("an ensemble has no single feature map to match: distil it with an output "
                                  "method (hinton, dkd, pixel, cwd, restoration)")

_REGISTRY: dict[str, _Spec] = {
    "resnet18": _Spec(resnet18, "classify", _RESNET_FEATURES),
    "resnet34": _Spec(resnet34, "classify", _RESNET_FEATURES),
    "resnet50": _Spec(resnet50, "classify", _RESNET_FEATURES),
    "mobilenetv2": _Spec(
        mobilenetv2, "classify", _fixed("features.3", "features.6", "features.13", "features.18")
    ),
    "unet": _Spec(unet, "segment", _unet_features(4)),
    "unet_small": _Spec(unet_small, "segment", _unet_features(4)),
    # strides 2..16: the same resolutions as the last four of unet's (its bottleneck is at 1/32)
    "mobileunet": _Spec(
        mobileunet, "segment", _fixed("encoders.0", "encoders.1", "encoders.2", "encoders.3")
    ),
    "dncnn": _Spec(dncnn, "denoise", _fixed("body.4", "body.9", "body.14")),
    "redcnn": _Spec(redcnn, "denoise", _fixed("conv2", "conv4", "tconv2")),
    "denoise_small": _Spec(denoise_small, "denoise", _fixed("body.0", "body.1", "body.3")),
    "srresnet": _Spec(srresnet, "super_resolve", _fixed("blocks.7", "blocks.15")),
    "espcn": _Spec(espcn, "super_resolve", _fixed("body.1", "body.3")),
    "fsrcnn": _Spec(fsrcnn, "super_resolve", _fixed("shrink", "mapping")),
    "srgan_discriminator": _Spec(srgan_discriminator, "super_resolve", _fixed("body.3", "body.7")),
    # members = [{name, kwargs}, ...] of one task; its outputs averaged (a teacher made of trained teachers)
    "ensemble": _Spec(ensemble, "any", _no_features),
}


def list_models() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def _spec(name: str) -> _Spec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models())
        raise UnknownArchitectureError(f"unknown architecture {name!r}; known: {known}") from None


def task_of(name: str) -> str:
    """The task a named net solves: "classify", "segment", "denoise" or "super_resolve" ("any": an ensemble,
    whose members' task it is)."""
    return _spec(name).task


def feature_layers(name: str, **kw: Any) -> list[str]:
    """Good forward-hook points of a named net (module names, shallow to deep), for the given options.

    The lists are chosen so that pairing the *last* k names of a teacher's list with the last k of a
    student's (k = the shorter length) pairs maps of the same resolution for the default nets:
    resnet ``layer1..4`` ↔ mobilenetv2 ``features.3/.6/.13/.18``; unet ↔ unet_small (same depth);
    unet ``encoders.1..bottleneck`` ↔ mobileunet ``encoders.0..3``. Losses pool any remaining mismatch.
    """
    return _spec(name).features(kw)


def create_model(
    name: str,
    *,
    in_channels: int = 1,
    num_classes: int = 2,
    input_size: int | Sequence[int] | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a registered net (randomly initialised).

    ``input_size`` ((H, W) or an int) is passed only to the nets that use it (the classifiers' ``stem="auto"``
    picks the small-input stem for ≤ 64 px); ``num_classes`` only to classifiers and segmenters. Any other
    keyword must be an option of that net (``width``, ``depth``, ``base``, ``scale``, ...), else
    `ArchitectureOptionError` names it.
    """
    spec = _spec(name)
    params = inspect.signature(spec.builder).parameters
    unknown = sorted(k for k in kw if k not in params or k in ("in_channels", "num_classes", "input_size"))
    if unknown:
        accepted = ", ".join(p for p in params if p not in ("in_channels", "num_classes", "input_size"))
        raise ArchitectureOptionError(
            f"architecture {name!r} takes no option {', '.join(map(repr, unknown))}; its options: {accepted}"
        )
    if "num_classes" in params:
        kw["num_classes"] = num_classes
    if "input_size" in params:
        kw["input_size"] = input_size
    return spec.builder(in_channels=in_channels, **kw)


def count_parameters(model: nn.Module) -> int:
    """The number of parameters (all of them, trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
