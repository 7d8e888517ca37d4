"""The weight average (`ema_epochs`): its update rule, and a run that validates, keeps, resumes and exports it."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.distill.trainer import TrainingInterrupted, train_teacher
from kdviewer.distill.trainer_checkpoint import load_checkpoint
from kdviewer.distill.trainer_ema import WeightAverage, ema_decay

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
# PneumoniaMNIST, 16 images at 32x32, a tiny MobileNetV2 (BatchNorm: running statistics are averaged too)
TINY = ["data.max_items=16", "data.input_size=[32, 32]", "teacher_net.arch=mobilenetv2", "teacher_net.width=0.25",
        "train.batch_size=4", "train.epochs=3"]


def tiny(*overrides: str):
    return load_recipe(RECIPES / "pneumonia-cxr.toml", [*TINY, *overrides])


def test_decay_from_a_time_constant_in_epochs() -> None:
    assert ema_decay(2.0, 50) == pytest.approx(math.exp(-1 / 100))
    assert ema_decay(0.5, 4) == pytest.approx(math.exp(-0.5))
    for bad in ((0.0, 10), (-1.0, 10), (1.0, 0)):
        with pytest.raises(ValueError):
            ema_decay(*bad)


def test_update_moves_floats_by_the_warmed_up_decay_and_copies_counters() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    avg = WeightAverage(net, decay=0.9)
    assert not avg.module.training and not any(p.requires_grad for p in avg.module.parameters())
    before = {k: v.clone() for k, v in avg.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net(torch.randn(8, 3))  # train mode: running statistics and the batch counter move
    assert avg.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the first update mostly copies
    avg.update(net)
    now = net.state_dict()
    for key, value in avg.module.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.1 * before[key] + 0.9 * now[key])
        else:
            assert torch.equal(value, now[key]), key  # num_batches_tracked
    for _ in range(200):
        avg.update(net)
    assert avg.current_decay() == 0.9 and avg.updates == 201
    with pytest.raises(ValueError):
        WeightAverage(net, decay=1.0)


def test_the_run_keeps_validates_and_exports_the_average(tmp_path: Path) -> None:
    """Two runs of the same recipe stopped after 2 and 3 steps: the trained weights follow the same path as
    without an average, the average of step 3 is the rule applied to step 2's average and step 3's weights,
    best.pt (validated at the end) holds the average, and the export is made from it."""
    tau = 0.5  # epochs of 4 steps: decay exp(-1/2)
    runs = {k: train_teacher(tiny(f"train.max_steps={k}", f"train.ema_epochs={tau}", "export.int8=false"), tmp_path / f"s{k}",
                             progress="none", export=k == 3) for k in (2, 3)}
    plain = train_teacher(tiny("train.max_steps=3"), tmp_path / "plain", progress="none", export=False)
    last2, last3 = load_checkpoint(runs[2] / "last.pt"), load_checkpoint(runs[3] / "last.pt")
    raw_plain = load_checkpoint(plain / "last.pt")["model"]
    for key, value in last3["model"].items():
        assert torch.equal(value, raw_plain[key]), key  # the average does not change the training itself
    assert last2["ema"]["updates"] == 2 and last3["ema"]["updates"] == 3
    d = min(math.exp(-1 / (tau * 4)), 3 / 12)  # the third update: n = 2
    moved = 0
    for key, avg3 in last3["ema"]["model"].items():
        if avg3.is_floating_point():
            torch.testing.assert_close(avg3, d * last2["ema"]["model"][key] + (1 - d) * last3["model"][key])
            moved += not torch.equal(avg3, last3["model"][key])
    assert moved > 10  # the average is not the trained weights
    best = load_checkpoint(runs[3] / "best.pt")
    for key, value in best["model"].items():
        assert torch.equal(value, last3["ema"]["model"][key]), key

    import onnxruntime as ort  # the exported ONNX gives the average's logits

    from kdviewer.distill.trainer_models import build_net

    onnx_file = next(runs[3].glob("*.onnx"))
    card = json.loads(onnx_file.with_suffix(".json").read_text())
    assert card["training"]["options"] == {"ema_epochs": tau}  # the card says the weights are an average
    assert "Training options: {'ema_epochs': 0.5}" in onnx_file.with_suffix(".md").read_text()

    net = build_net(best["net"])
    net.load_state_dict(best["model"])
    net.eval()
    x = torch.rand(2, 1, 32, 32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), net(x).detach(), atol=1e-4, rtol=1e-4)


def test_resume_continues_the_average_exactly(tmp_path: Path) -> None:
    r = tiny("train.ema_epochs=1", "train.epochs=2")
    straight = train_teacher(r, tmp_path / "straight", progress="none", export=False)

    def interrupt_at_step_3(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 3:
            signal.raise_signal(signal.SIGINT)

    broken = tmp_path / "broken"
    with pytest.raises(TrainingInterrupted):
        train_teacher(r, broken, progress="none", export=False, listeners=(interrupt_at_step_3,))
    train_teacher(r, broken, resume=True, progress="none", export=False)
    a, b = load_checkpoint(straight / "last.pt")["ema"], load_checkpoint(broken / "last.pt")["ema"]
    assert a["updates"] == b["updates"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_bad_time_constant_is_named(value: str) -> None:
    with pytest.raises(RecipeError, match="train.ema_epochs"):
        tiny(f"train.ema_epochs={value}")
