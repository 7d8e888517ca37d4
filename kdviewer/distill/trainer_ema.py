"""An exponential moving average of a net's weights (Polyak averaging), for `[train]` / `[distill]` ``ema_epochs``.

After every optimiser step each floating-point entry of the averaged copy's state (weights and BatchNorm running
statistics) moves towards the trained net's: ``avg = d * avg + (1 - d) * current``; integer entries (BatchNorm's
batch counter) are copied. As in the mean teacher (Tarvainen & Valpola 2017) and timm's ModelEma, the decay starts
low and rises, ``d = min(decay, (1 + n) / (10 + n))`` after n updates, so early averages are not dominated by the
random initial weights. The recipe gives the time constant in epochs (``tau``); the decay per step is
``exp(-1 / (tau * steps_per_epoch))``, so the same recipe value means the same span of training whatever the
data set's size or batch.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def ema_decay(tau_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay of an average whose time constant is `tau_epochs` epochs of `steps_per_epoch` steps."""
    if tau_epochs <= 0 or steps_per_epoch < 1:
        raise ValueError("the time constant (epochs) and the steps per epoch must be positive")
    return math.exp(-1.0 / (tau_epochs * steps_per_epoch))


class WeightAverage:
    """The averaged copy of `model` (`module`, in eval mode, no gradients), updated by `update(model)`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses (the warm-up rule of the module docstring)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards `model`'s current state (same architecture)."""
        d = self.current_decay()
        current = model.state_dict()
        for key, avg in self.module.state_dict().items():
            value = current[key].detach()
            if avg.is_floating_point():
                avg.lerp_(value.to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count (for `last.pt`)."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave (a resumed run)."""
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
