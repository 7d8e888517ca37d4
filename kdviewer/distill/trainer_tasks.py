"""Task adapters: what "the loss against the labels" and "the validation metrics" mean for each task.

One training loop serves every task; it asks the adapter for the hard (ground-truth) loss and, after
each epoch, for the validation metrics. `primary` names the metric that picks the best checkpoint
(higher is better for all of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from kdviewer.distill.losses import RESTORE_DISTANCES, cldice_loss, dice_ce_loss, mixed_cross_entropy
from kdviewer.errors import KdviewerError
from kdviewer.imaging.metrics import classification_metrics, dice, psnr, ssim

Predict = Callable[[torch.Tensor], torch.Tensor]
STALL_EPOCHS = 5  # segmentation: validations at Dice 0 in a row, from the start, before a warning


class TaskAdapter:
    """The per-task pieces of training: `hard_loss` and `evaluate`."""

    task = ""
    primary = ""

    def hard_loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss against the ground truth (scalar)."""
        raise NotImplementedError

    def evaluate(self, predict: Predict, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        """Validation metrics of `predict` (images (N, C, H, W) float32 -> outputs) over `batches`."""
        raise NotImplementedError

    def stall_warning(self, history: list[dict[str, Any]]) -> str | None:
        """A one-line warning when the validations so far (`history`: the trainer's entries, each with
        ``val``) show a known failure that training will not leave on its own; None otherwise."""
        return None


class ClassifyAdapter(TaskAdapter):
    """Cross-entropy; AUC (binary, or macro one-vs-rest), accuracy and balanced accuracy.

    With `logit_adjust` = tau > 0 the loss is the logit-adjusted cross-entropy of Menon et al. (ICLR 2021,
    "Long-tail learning via logit adjustment"): CE(y, s + tau * log prior). The net's own logits then estimate
    the class posterior under a *uniform* prior (tau = 1), so a test set whose class balance differs from the
    training set's (PneumoniaMNIST: 74 % pneumonia in training, 62.5 % in the official test split) is not
    scored at the training prior. Inference uses the raw logits; nothing changes in the exported model.
    """

    task, primary = "classify", "auc"

    def __init__(self, log_prior: torch.Tensor | None = None, logit_adjust: float = 0.0) -> None:
        self.offset = None if log_prior is None or not logit_adjust else logit_adjust * log_prior

    def hard_loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.offset is not None:
            output = output + self.offset.to(output.device, output.dtype)
        return mixed_cross_entropy(output, batch["target"], batch.get("mix"))

    def evaluate(self, predict: Predict, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        labels, probs = [], []
        for batch in batches:
            probs.append(torch.softmax(predict(batch["image"]).float(), dim=1).cpu().numpy())
            labels.append(np.asarray(batch["target"]).reshape(-1))
        proba = np.concatenate(probs)
        m = classification_metrics(np.concatenate(labels), proba[:, 1] if proba.shape[1] == 2 else proba)
        return {k: float(m[k]) for k in ("auc", "accuracy", "balanced_accuracy")}


class SegmentAdapter(TaskAdapter):
    """Dice + CE inside the field of view (+ `cldice` x soft clDice, for tubular structures); Dice of the
    foreground classes (pooled over the split)."""

    task, primary = "segment", "dice"

    def __init__(self, cldice: float = 0.0) -> None:
        self.cldice = cldice

    def hard_loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = dice_ce_loss(output, batch["target"], valid=batch.get("fov"))
        if self.cldice:
            loss = loss + self.cldice * cldice_loss(output, batch["target"], valid=batch.get("fov"))
        return loss

    def evaluate(self, predict: Predict, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        preds, targets, n_classes = [], [], 2
        for batch in batches:
            logits = predict(batch["image"])
            n_classes = int(logits.shape[1])
            pred = logits.argmax(dim=1).cpu().numpy()
            target = np.asarray(batch["target"])
            fov = batch.get("fov")
            keep = np.ones_like(target, dtype=bool) if fov is None else np.asarray(fov).astype(bool)
            preds.append(pred[keep])
            targets.append(target[keep])
        pred, target = np.concatenate(preds), np.concatenate(targets)
        scores = [dice(pred == c, target == c) for c in range(1, n_classes)]
        return {"dice": float(np.mean(scores))}

    def stall_warning(self, history: list[dict[str, Any]]) -> str | None:
        """When the first `STALL_EPOCHS` validations all scored Dice 0 (and only then, once): the net predicts
        background everywhere, a stall that thin segmenters with rare foreground (nodules, vessels) fell into on
        some seeds and never left (measured: 50 epochs at Dice 0)."""
        scores = [entry.get("val", {}).get("dice") for entry in history]
        if len(scores) != STALL_EPOCHS or any(score != 0 for score in scores):
            return None
        return (f"validation Dice has been 0 for the first {STALL_EPOCHS} validations: the net predicts background "
                "everywhere and seldom recovers; stop and try another seed (--set seed=N), a KD ramp-up "
                "(distill.kd_rampup_epochs), a head that starts half its inputs as foreground voters "
                "(student_net.head_split=0.25, unet_small) or a wider student")


class RestoreAdapter(TaskAdapter):
    """L1 (or, with ``loss="mse"``, squared error: PSNR's own objective) to the clean image; PSNR and SSIM
    (per image, averaged) on the data's value range."""

    primary = "psnr"

    def __init__(self, task: str, data_range: float = 1.0, loss: str = "l1") -> None:
        if loss not in RESTORE_DISTANCES:
            raise ValueError(f"restoration loss must be 'l1' or 'mse', not {loss!r}")
        self.task = task
        self.data_range = data_range
        self.loss = loss

    def hard_loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return RESTORE_DISTANCES[self.loss](output, batch["target"])

    def evaluate(self, predict: Predict, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        psnrs, ssims = [], []
        for batch in batches:
            out = predict(batch["image"]).float().cpu().numpy()
            ref = np.asarray(batch["target"], dtype=np.float32)
            for x, r in zip(out, ref, strict=True):  # (C, H, W): channels averaged
                psnrs.append(psnr(x, r, self.data_range))
                ssims.append(float(np.mean([ssim(xc, rc, self.data_range) for xc, rc in zip(x, r, strict=True)])))
        finite = [p for p in psnrs if np.isfinite(p)]
        return {"psnr": float(np.mean(finite)) if finite else float("inf"), "ssim": float(np.mean(ssims))}


def class_log_prior(meta: dict[str, Any]) -> torch.Tensor | None:
    """log of the training split's class frequencies (from `meta["counts"]["train_per_class"]`), or None."""
    per_class = (meta.get("counts") or {}).get("train_per_class")
    names = meta.get("class_names") or ()
    if not per_class or not names:
        return None
    counts = torch.tensor([float(per_class.get(n, 0)) for n in names])
    if counts.sum() <= 0 or (counts <= 0).any():
        return None
    return torch.log(counts / counts.sum())


def task_adapter(task: str, meta: dict[str, Any] | None = None, logit_adjust: float = 0.0,
                 loss: str = "l1", cldice: float = 0.0) -> TaskAdapter:
    """The adapter of a recipe task; restoration takes `meta["data_range"]` (default 1.0) and its `loss`
    ("l1" | "mse"); classification takes the logit-adjustment strength tau (0: plain cross-entropy);
    segmentation the weight of its soft-clDice term (0: Dice + CE only)."""
    if task == "classify":
        if not logit_adjust:
            return ClassifyAdapter()
        prior = class_log_prior(meta or {})
        if prior is None:
            raise KdviewerError("logit_adjust: needs the training class counts, which this data set does not give")
        return ClassifyAdapter(prior, logit_adjust)
    if task == "segment":
        return SegmentAdapter(cldice)
    return RestoreAdapter(task, float((meta or {}).get("data_range", 1.0)), loss)
