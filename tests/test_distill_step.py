"""One training step of a distill run (`DistillStep`) on a tiny in-memory data set: what it trains and what it computes."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from kdviewer.distill.losses import hinton_kd_loss, mixed_cross_entropy
from kdviewer.distill.recipe import Recipe, recipe_from_dict
from kdviewer.distill.trainer import training_step
from kdviewer.distill.trainer_checkpoint import save_checkpoint
from kdviewer.distill.trainer_models import build_net
from kdviewer.distill.trainer_step import DistillStep

torch.set_num_threads(1)
SIZE, BATCH = 32, 4
META = {"in_channels": 1, "num_classes": 2, "class_names": ["normal", "pneumonia"], "input_size": [SIZE, SIZE]}


class InMemory(torch.utils.data.Dataset):
    """Items {"image": (1, 32, 32) float32, "target": () int64}, as `distill.data` gives them."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, SIZE, SIZE, generator=g)
        self.targets = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "target": self.targets[i]}


def distill_recipe(tmp_path: Path, method: str, mixup: float = 0.0) -> Recipe:
    """resnet18 teacher (random weights, saved as a checkpoint) → mobilenetv2 width 0.35, batch 4."""
    spec = {"name": "resnet18", "kwargs": {}, "in_channels": 1, "num_classes": 2, "input_size": [SIZE, SIZE]}
    torch.manual_seed(1)
    teacher = save_checkpoint({"model": build_net(spec).state_dict(), "net": spec}, tmp_path / "teacher.pt")
    return recipe_from_dict({
        "name": "tiny", "task": "classify", "teacher": str(teacher), "device": "cpu", "seed": 0,
        "data": {"path": str(tmp_path), "input_size": [SIZE, SIZE], "channels": 1},
        "teacher_net": {"arch": "resnet18"}, "student_net": {"arch": "mobilenetv2", "width": 0.35},
        "distill": {"method": method, "temperature": 4.0, "alpha": 0.3, "batch_size": BATCH, "epochs": 1,
                    "schedule": "none", "mixup": mixup},
    })


def step_and_batch(tmp_path: Path, method: str, mixup: float = 0.0
                   ) -> tuple[DistillStep, dict[str, torch.Tensor], Recipe]:
    recipe = distill_recipe(tmp_path, method, mixup)
    items = InMemory(2 * BATCH)
    step = training_step(recipe, "distill", datasets=(items, items, META))
    batch = default_collate([{**items[i], "index": i} for i in range(BATCH)])
    return step, batch, recipe


def student_outputs(step: DistillStep, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The student's logits for `batch` as the step sees them (training mode, RNG seeded as before the step)."""
    twin = copy.deepcopy(step.model).train()
    torch.manual_seed(0)
    with torch.no_grad():
        return twin(batch["image"])


def test_hinton_step_trains_the_student_and_not_the_teacher(tmp_path: Path) -> None:
    step, batch, _ = step_and_batch(tmp_path, "hinton")
    assert step.teacher is not None
    student_before = copy.deepcopy(step.model.state_dict())
    teacher_before = copy.deepcopy(step.teacher.state_dict())
    loss = step(batch)
    assert loss > 0
    changed = [k for k, v in step.model.state_dict().items() if not torch.equal(v, student_before[k])]
    assert any(k.endswith("weight") for k in changed), "the student's weights did not change"
    for key, value in step.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key


def test_hinton_step_loss_is_the_hinton_formula(tmp_path: Path) -> None:
    step, batch, recipe = step_and_batch(tmp_path, "hinton")
    assert step.teacher is not None
    s_out = student_outputs(step, batch)
    with torch.no_grad():
        t_out = step.teacher(batch["image"])
    expected = hinton_kd_loss(s_out, t_out, batch["target"], temperature=recipe.distill.temperature,
                              alpha=recipe.distill.alpha)
    torch.testing.assert_close(torch.tensor(step_loss(step, batch)), expected, rtol=1e-5, atol=1e-6)


def test_step_without_kd_is_plain_cross_entropy(tmp_path: Path) -> None:
    step, batch, _ = step_and_batch(tmp_path, "none")
    assert step.teacher is None
    expected = F.cross_entropy(student_outputs(step, batch), batch["target"])
    torch.testing.assert_close(torch.tensor(step_loss(step, batch)), expected, rtol=1e-5, atol=1e-6)


def step_loss(step: DistillStep, batch: dict[str, torch.Tensor]) -> float:
    """The loss of one step, with the RNG (dropout) seeded as `student_outputs` seeds it."""
    torch.manual_seed(0)
    return step(batch)


def pixel_kd_case(seed: int):
    """(adapter, s_out, t_out, batch, hard, soft): random 2-class logits on 8×8, their Dice + CE and pixel KD at T = 2."""
    from kdviewer.distill.losses import pixel_kd_loss
    from kdviewer.distill.trainer_tasks import task_adapter

    adapter = task_adapter("segment", {"num_classes": 2}, 0.0)
    g = torch.Generator().manual_seed(seed)
    s_out, t_out = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g)
    batch = {"target": torch.randint(0, 2, (2, 8, 8), generator=g)}
    return adapter, s_out, t_out, batch, adapter.hard_loss(s_out, batch), pixel_kd_loss(s_out, t_out, temperature=2.0)


def test_pixel_kd_with_kd_weight_keeps_the_task_loss_whole() -> None:
    """kd_weight w: (Dice + CE) + w·pixel-KD; without it: a·(Dice + CE) + (1 − a)·pixel-KD."""
    from kdviewer.distill.recipe import DistillConfig
    from kdviewer.distill.trainer_kd import Distiller

    adapter, s_out, t_out, batch, hard, soft = pixel_kd_case(0)
    weighted = Distiller(DistillConfig(method="pixel", temperature=2.0, kd_weight=0.7), adapter, [])
    mixed = Distiller(DistillConfig(method="pixel", temperature=2.0, alpha=0.4), adapter, [])
    torch.testing.assert_close(weighted.loss(s_out, t_out, batch, [], []), hard + 0.7 * soft)
    torch.testing.assert_close(mixed.loss(s_out, t_out, batch, [], []), 0.4 * hard + 0.6 * soft)


def test_kd_rampup_scales_only_the_kd_term_from_near_zero_to_full() -> None:
    """kd_rampup_epochs R: (Dice + CE) + w·exp(−5(1 − e/R)²)·pixel-KD at epoch e < R, the full term from R on."""
    import math

    from kdviewer.distill.losses import sigmoid_rampup
    from kdviewer.distill.recipe import DistillConfig
    from kdviewer.distill.trainer_kd import Distiller

    assert sigmoid_rampup(0.0, 4.0) == math.exp(-5.0)
    assert sigmoid_rampup(2.0, 4.0) == math.exp(-1.25)
    assert sigmoid_rampup(4.0, 4.0) == sigmoid_rampup(9.0, 4.0) == sigmoid_rampup(None, 4.0) == 1.0
    assert sigmoid_rampup(0.0, 0.0) == 1.0
    adapter, s_out, t_out, batch, hard, soft = pixel_kd_case(1)
    ramped = Distiller(DistillConfig(method="pixel", temperature=2.0, kd_weight=0.5, kd_rampup_epochs=4.0),
                       adapter, [])
    for epoch, factor in ((0.0, math.exp(-5.0)), (1.0, math.exp(-5.0 * 0.75**2)), (4.0, 1.0), (None, 1.0)):
        torch.testing.assert_close(ramped.loss(s_out, t_out, batch, [], [], epoch=epoch),
                                   hard + 0.5 * factor * soft)


class Recording(torch.nn.Module):
    """Wraps a net and keeps the inputs of its forward calls."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.net(x)


def test_mixup_step_feeds_teacher_and_student_the_same_mixed_images(tmp_path: Path) -> None:
    """Function matching (Beyer et al. 2022): one lam ~ Beta(a, a) and one permutation per batch; teacher and
    student see lam·x + (1 − lam)·x[perm], and the hard term is the mixed CE inside Hinton's loss."""
    step, batch, recipe = step_and_batch(tmp_path, "hinton", mixup=1.0)
    assert step.teacher is not None
    student, teacher = Recording(step.model), Recording(step.teacher)
    step.wrapped, step.teacher = student, teacher
    twin = copy.deepcopy(step.model).train()
    torch.manual_seed(3)  # the draws the step makes, then the student's dropout, as in the step
    lam = float(torch.distributions.Beta(1.0, 1.0).sample())
    perm = torch.randperm(BATCH)
    assert 0.0 < lam < 1.0 and not torch.equal(perm, torch.arange(BATCH))
    mixed = lam * batch["image"] + (1.0 - lam) * batch["image"][perm]
    with torch.no_grad():
        s_out, t_out = twin(mixed), teacher.net(mixed)
    torch.manual_seed(3)
    loss = step(batch)
    torch.testing.assert_close(student.inputs[0], mixed)
    torch.testing.assert_close(teacher.inputs[0], mixed)
    y, a = batch["target"], recipe.distill.alpha
    expected = a * mixed_cross_entropy(s_out, y, (lam, perm)) + (1 - a) * hinton_kd_loss(s_out, t_out, y, alpha=0.0)
    torch.testing.assert_close(torch.tensor(loss), expected, rtol=1e-5, atol=1e-6)
    unmixed = hinton_kd_loss(s_out, t_out, y, alpha=a)
    assert abs(float(unmixed) - loss) > 1e-4, "the hard term ignored the permuted labels"


def test_mixed_cross_entropy_weighs_both_labels() -> None:
    g = torch.Generator().manual_seed(0)
    s, y = torch.randn(6, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    perm = torch.tensor([1, 2, 0, 4, 5, 3])
    got = mixed_cross_entropy(s, y, (0.3, perm))
    torch.testing.assert_close(got, 0.3 * F.cross_entropy(s, y) + 0.7 * F.cross_entropy(s, y[perm]))
    torch.testing.assert_close(mixed_cross_entropy(s, y, None), F.cross_entropy(s, y))
    torch.testing.assert_close(mixed_cross_entropy(s, y, (1.0, perm)), F.cross_entropy(s, y))


def test_mixup_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    import pytest

    from kdviewer.distill.recipe import RecipeError

    base = distill_recipe(tmp_path, "hinton")
    raw = {"name": "tiny", "task": "classify", "teacher": str(base.teacher), "device": "cpu",
           "data": {"path": str(tmp_path), "input_size": [SIZE, SIZE], "channels": 1},
           "teacher_net": {"arch": "resnet18"}, "student_net": {"arch": "mobilenetv2"}}
    with pytest.raises(RecipeError, match="DKD"):
        recipe_from_dict({**raw, "distill": {"method": "dkd", "mixup": 0.4}})
    with pytest.raises(RecipeError, match="mixup"):
        recipe_from_dict({**raw, "train": {"mixup": -1.0}})
    with pytest.raises(RecipeError, match="classify only"):
        recipe_from_dict({**raw, "task": "segment", "teacher_net": {"arch": "unet"}, "student_net": {"arch": "unet"},
                          "train": {"mixup": 0.4}})
