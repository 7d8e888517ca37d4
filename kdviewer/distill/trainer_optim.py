"""Optimisers and learning-rate schedules of a recipe stage (stepped once per optimizer step)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from kdviewer.distill.recipe import TrainConfig


def build_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """adamw | adam | sgd (momentum, Nesterov) with the stage's lr and weight decay."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The multiplier of the base lr after `step` optimizer steps: linear warm-up, then cosine | step | none.

    cosine decays to 0 at `total_steps`; step multiplies by 0.1 at 50 % and again at 75 % of the steps.
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))
    return 1.0


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LambdaLR:
    """A per-step schedule over the stage's full length (`epochs` × steps per epoch; max_steps only stops early)."""
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, cfg.schedule))
