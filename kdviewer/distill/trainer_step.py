"""One optimizer step of a training run: forward, teacher outputs (live or cached), loss, backward, step.

`train_teacher` and `distill_student` call a `DistillStep` once per batch; a script or a test can build
the run's own step with `kdviewer.distill.trainer.training_step` and call it on any batch.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from kdviewer.distill.losses import FeatureHooks
from kdviewer.distill.trainer_ddp import DistContext, average_gradients
from kdviewer.distill.trainer_kd import Distiller
from kdviewer.distill.trainer_precision import autocast, to_float
from kdviewer.distill.trainer_tasks import TaskAdapter


class DistillStep:
    """The per-batch training step of one run (teacher training, baseline or KD student).

    `model` is the net being trained, `wrapped` the module the forward goes through (the model itself, or its
    DDP wrapper); its forward runs in `precision` and a live teacher's in `teacher_precision` ("bf16": under
    bfloat16 autocast, outputs and hooked features cast back to float32 before any loss). `teacher` (a frozen
    module) and `distiller` are None when training a teacher; a baseline student has a distiller of method "none"
    and no teacher. `cache` maps a training item's index to the teacher's output for it (output-only KD methods,
    inputs identical every epoch); None computes it live.
    """

    def __init__(self, model: nn.Module, wrapped: nn.Module, teacher: nn.Module | None, distiller: Distiller | None,
                 adapter: TaskAdapter, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, cache: dict[int, torch.Tensor] | None,
                 ctx: DistContext, *, channels_last: bool = False, mixup: float = 0.0,
                 precision: str = "fp32", teacher_precision: str = "fp32") -> None:
        if distiller is not None and distiller.uses_teacher and teacher is None:
            raise ValueError(f"distill method {distiller.cfg.method!r} needs a teacher")
        self.model, self.wrapped, self.teacher, self.distiller = model, wrapped, teacher, distiller
        self.adapter, self.optimizer, self.scheduler, self.cache, self.ctx = (
            adapter, optimizer, scheduler, cache, ctx)
        self.channels_last = channels_last
        # the forwards' precisions as resolved for the device (trainer_precision.resolve_precision)
        self.precision, self.teacher_precision = precision, teacher_precision
        if mixup > 0 and cache is not None:
            raise ValueError("mixup changes the teacher's inputs every step: its outputs cannot be cached")
        self.mixup = torch.distributions.Beta(mixup, mixup) if mixup > 0 else None

    def __call__(self, batch: dict[str, Any], *, epoch: float | None = None) -> float:
        """Train on one collated batch and return its loss (before the update).

        epoch: where training is (fractional epochs), for a KD term that ramps up; None: not known (full weight).

        batch: "image" (N, C, H, W) float32, "target" as the task's adapter reads it, "index" (N,) int64
        (the items' indices in the training split) when teacher outputs are cached per item, and "teacher"
        (the teacher's outputs) when the data set supplies them. With `mixup` the images are mixed here (one
        lam ~ Beta(a, a) and one permutation per batch, torch's generator) and "mix" = (lam, perm) is added for the
        losses; the teacher sees the mixed images.
        """
        dev = self.ctx.device
        batch = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        if self.channels_last and batch["image"].dim() == 4:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        if self.mixup is not None:
            lam = float(self.mixup.sample())
            perm = torch.randperm(batch["image"].shape[0]).to(dev)
            batch["image"] = lam * batch["image"] + (1.0 - lam) * batch["image"][perm]
            batch["mix"] = (lam, perm)
        images = batch["image"]
        kd = self.distiller
        dev_cast = autocast(self.precision, dev)
        if kd is None:
            with dev_cast:
                out = self.wrapped(images)
            loss = self.adapter.hard_loss(to_float(out), batch)
        else:
            s_hooks = FeatureHooks(self.model, kd.student_layers) if kd.pairs else contextlib.nullcontext()
            with s_hooks as sh, dev_cast:
                s_out = self.wrapped(images)
            s_out = to_float(s_out)
            s_feats = [to_float(sh.outputs[n]) for n in kd.student_layers] if kd.pairs else []
            t_out, t_feats = self.teacher_outputs(batch) if kd.uses_teacher else (None, [])
            loss = kd.loss(s_out, t_out, batch, s_feats, t_feats, epoch=epoch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if kd is not None:
            average_gradients(self.ctx, kd.parameters())  # FitNets adapters: not in DDP's care
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    @torch.no_grad()
    def teacher_outputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's output for `batch` (from the cache where it holds them) and the features the
        distiller pairs with the student's (an empty list for output-only methods)."""
        assert self.teacher is not None and self.distiller is not None
        teacher, names = self.teacher, self.distiller.teacher_layers
        if "teacher" in batch:  # cut from the teacher's whole-slice output by the data set (pooled denoising)
            return batch["teacher"], []
        with autocast(self.teacher_precision, self.ctx.device):
            out, feats = self._teacher_forward(batch, teacher, names)
        return to_float(out), to_float(feats)

    def _teacher_forward(self, batch: dict[str, Any], teacher: nn.Module,
                         names: list[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.cache is not None:
            idx = [int(i) for i in batch["index"]]
            missing = [j for j, i in enumerate(idx) if i not in self.cache]
            if missing:
                out = teacher(batch["image"][missing])
                for j, o in zip(missing, out, strict=True):
                    self.cache[idx[j]] = o.detach().float().cpu()
            return torch.stack([self.cache[i] for i in idx]).to(self.ctx.device), []
        if not names:
            return teacher(batch["image"]), []
        with FeatureHooks(teacher, names) as th:
            out = teacher(batch["image"])
        return out, [th.outputs[n] for n in names]
