"""An ensemble of nets as one net: the members see the same input and their outputs are averaged.

For classifiers and segmenters the outputs are logits, so the ensemble's logit is the members' mean logit: its
softmax at any temperature T is the normalised geometric mean of the members' softmaxes at T, one of the two
ways Hinton et al. (2015, "Distilling the knowledge in a neural network", section 1) combine an ensemble's
predictions into the soft targets of one distilled model. Restoration members give images, averaged as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


class Ensemble(nn.Module):
    """The mean output of `members` (same input, same output shape)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for member in self.members[1:]:
            out = out + member(x)
        return out / len(self.members)


def ensemble(in_channels: int = 1, num_classes: int = 2, input_size: Any = None,
             members: Sequence[Mapping[str, Any]] = ()) -> Ensemble:
    """An `Ensemble` of `members`, each ``{"name": arch, "kwargs": {...}}`` built by `create_model` with the
    ensemble's in_channels, num_classes and input_size."""
    from kdviewer.distill.nets import create_model as build
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members: members = [{name, kwargs}, ...]")
    nets = []
    for m in members:
        if not isinstance(m, Mapping) or "name" not in m or m["name"] == "ensemble":
            raise ValueError(f"an ensemble member is {{name, kwargs}} of a plain net, got {m!r}")
        nets.append(build(str(m["name"]), in_channels=in_channels, num_classes=num_classes, input_size=input_size,
                          **dict(m.get("kwargs") or {})))
    return Ensemble(nets)
