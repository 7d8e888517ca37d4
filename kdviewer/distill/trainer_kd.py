"""The KD objective of a recipe: which teacher signals it needs and how it combines them with the labels.

`alpha` is the weight of the hard (label) loss wherever a method mixes two terms:

| method | loss |
|---|---|
| none | hard |
| hinton | a·CE + (1−a)·T²·KL (`hinton_kd_loss`); under mixup the CE is mixed, the teacher sees the mixed images |
| dkd | CE + DKD(α=dkd_alpha, β=dkd_beta, T) (Zhao et al.: the CE term keeps weight 1) |
| pixel, cwd | a·(Dice+CE) + (1−a)·r·pixel-KD / CWD at T; with `kd_weight` w: (Dice+CE) + w·r·KD (CWD's form); r = 1, or the sigmoid ramp-up over `kd_rampup_epochs` |
| restoration | a·D(s, y) + (1−a)·D(s, t), D = L1 or MSE (`loss`) (`restoration_kd_loss`), + feature_weight·FitNets if features are named |
| fitnets, attention | hard + feature_weight·(FitNets hints | attention transfer) |

FitNets adapters are trained with the student and are not part of the exported model.

`kd_rampup_epochs` exists for small foreground structures: a student whose head starts at a 1 % foreground prior
and meets the per-pixel KL from the first step (almost all of it on the teacher's confident background) is
held at all-background before the Dice term finds the structures (measured on the nodule recipe: foreground
probability on nodule pixels 0.010 → 0.008 over 54 steps with KD, 0.010 → 0.40 without). The ramp lets the
task loss start the student, then adds the teacher.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdviewer.distill import losses
from kdviewer.distill.nets import feature_layers
from kdviewer.distill.recipe import DistillConfig
from kdviewer.distill.trainer_tasks import TaskAdapter

FEATURE_METHODS = ("fitnets", "attention")
# Methods whose teacher signal is the output alone: those outputs can be cached per training item.
OUTPUT_ONLY_METHODS = ("hinton", "dkd", "pixel", "cwd", "restoration")


class Distiller(nn.Module):
    """The student's loss for one KD method; holds the trainable FitNets adapters (if any)."""

    def __init__(self, cfg: DistillConfig, adapter: TaskAdapter, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self.cfg = cfg
        self.task = adapter
        self.pairs = pairs
        self.adapters = nn.ModuleList()

    @property
    def teacher_layers(self) -> list[str]:
        return [t for t, _ in self.pairs]

    @property
    def student_layers(self) -> list[str]:
        return [s for _, s in self.pairs]

    @property
    def uses_teacher(self) -> bool:
        return self.cfg.method != "none"

    @property
    def output_only(self) -> bool:
        """True when the teacher's output is all the loss needs (then it may be cached)."""
        return self.cfg.method in OUTPUT_ONLY_METHODS and not self.pairs

    def build_adapters(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> None:
        """Create the 1×1 adapters from one batch of features (FitNets, or restoration with features)."""
        if self.cfg.method in ("fitnets", "restoration") and self.pairs:
            self.adapters = nn.ModuleList(
                losses.FitNetsAdapter(s.shape[1], t.shape[1]) for s, t in zip(s_feats, t_feats, strict=True))

    def loss(self, s_out: torch.Tensor, t_out: torch.Tensor | None, batch: dict[str, torch.Tensor],
             s_feats: list[torch.Tensor], t_feats: list[torch.Tensor], *, epoch: float | None = None
             ) -> torch.Tensor:
        """The student's training loss for one batch; `epoch` (fractional, None: unknown) sets the KD ramp-up."""
        cfg, method = self.cfg, self.cfg.method
        kw: dict[str, Any] = {"allow_sharpening": cfg.allow_sharpening}
        if method == "none":
            return self.task.hard_loss(s_out, batch)
        if method == "hinton":
            return losses.hinton_kd_loss(s_out, t_out, batch["target"], temperature=cfg.temperature,
                                         alpha=cfg.alpha, mix=batch.get("mix"), **kw)
        if method == "dkd":
            return self.task.hard_loss(s_out, batch) + losses.dkd_loss(
                s_out, t_out, batch["target"], alpha=cfg.dkd_alpha, beta=cfg.dkd_beta,
                temperature=cfg.temperature, **kw)
        if method in ("pixel", "cwd"):
            kd = losses.pixel_kd_loss if method == "pixel" else losses.cwd_loss
            soft = kd(s_out, t_out, temperature=cfg.temperature, **kw) * losses.sigmoid_rampup(
                epoch, cfg.kd_rampup_epochs)
            if cfg.kd_weight is not None:
                return self.task.hard_loss(s_out, batch) + cfg.kd_weight * soft
            return cfg.alpha * self.task.hard_loss(s_out, batch) + (1 - cfg.alpha) * soft
        if method == "restoration":
            loss = losses.restoration_kd_loss(s_out, t_out, batch["target"], alpha=cfg.alpha,
                                              loss=getattr(self.task, "loss", "l1"))
            if self.pairs:
                loss = loss + cfg.feature_weight * losses.fitnets_loss(s_feats, t_feats, self.adapters)
            return loss
        if method == "fitnets":
            feat = losses.fitnets_loss(s_feats, t_feats, self.adapters)
        else:
            feat = losses.attention_transfer_loss(s_feats, t_feats)
        return self.task.hard_loss(s_out, batch) + cfg.feature_weight * feat


def feature_pairs(cfg: DistillConfig, teacher_spec: dict[str, Any], student_spec: dict[str, Any]
                  ) -> list[tuple[str, str]]:
    """The (teacher layer, student layer) pairs: the recipe's, or the nets' suggested ones for feature methods."""
    if cfg.features:
        return [tuple(p) for p in cfg.features]  # type: ignore[misc]
    if cfg.method not in FEATURE_METHODS:
        return []
    t_names = feature_layers(teacher_spec["name"], **teacher_spec["kwargs"])
    s_names = feature_layers(student_spec["name"], **student_spec["kwargs"])
    k = min(len(t_names), len(s_names))
    return list(zip(t_names[-k:], s_names[-k:], strict=True))
