"""The task adapters' hard losses: logit-adjusted cross-entropy for a shifted class prior."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdviewer.distill.trainer_tasks import class_log_prior, task_adapter
from kdviewer.errors import KdviewerError

META = {"class_names": ["normal", "pneumonia"], "counts": {"train_per_class": {"normal": 25, "pneumonia": 75}}}


def test_logit_adjusted_loss_adds_tau_log_prior_to_the_logits():
    logits = torch.tensor([[2.0, 0.5], [0.1, 1.0]])
    target = torch.tensor([0, 1])
    adapter = task_adapter("classify", META, logit_adjust=1.0)
    got = adapter.hard_loss(logits, {"target": target})
    # by hand: logits + [log 0.25, log 0.75]
    adjusted = logits + torch.tensor([math.log(0.25), math.log(0.75)])
    assert got.item() == pytest.approx(F.cross_entropy(adjusted, target).item(), abs=1e-6)
    assert got.item() != pytest.approx(F.cross_entropy(logits, target).item(), abs=1e-3)


def test_balanced_training_set_or_tau_zero_is_plain_cross_entropy():
    logits, target = torch.tensor([[2.0, 0.5]]), torch.tensor([1])
    plain = F.cross_entropy(logits, target).item()
    assert task_adapter("classify", META).hard_loss(logits, {"target": target}).item() == pytest.approx(plain)
    balanced = {"class_names": ["a", "b"], "counts": {"train_per_class": {"a": 10, "b": 10}}}
    got = task_adapter("classify", balanced, logit_adjust=1.0).hard_loss(logits, {"target": target}).item()
    assert got == pytest.approx(plain, abs=1e-6)


def test_logit_adjust_without_class_counts_is_refused():
    assert class_log_prior({}) is None
    with pytest.raises(KdviewerError, match="logit_adjust"):
        task_adapter("classify", {}, logit_adjust=1.0)
