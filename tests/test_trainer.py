"""The training loop: exact resume after SIGINT, teacher caching, KD methods, the frozen teacher, run folders."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from kdviewer.distill.recipe import load_recipe
from kdviewer.distill.trainer import TrainingInterrupted, distill_student, train_teacher
from kdviewer.distill.trainer_checkpoint import load_checkpoint
from kdviewer.distill.trainer_models import load_teacher

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
# PneumoniaMNIST, 16 images per split at 32x32, tiny MobileNetV2s: a few seconds per run.
TINY_CLASSIFY = ["data.max_items=16", "data.input_size=[32, 32]", "teacher_net.arch=mobilenetv2",
                 "teacher_net.width=0.25", "student_net.width=0.25", "train.batch_size=4", "distill.batch_size=4",
                 "train.epochs=2", "distill.epochs=2"]
TINY_SEGMENT = ["data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "teacher_net.base=4",
                "teacher_net.depth=2", "student_net.base=4", "student_net.depth=2", "train.batch_size=2",
                "distill.batch_size=2", "train.max_steps=1", "distill.max_steps=1"]


def recipe(name: str, *overrides: str):
    base = TINY_SEGMENT if name == "retina-vessels" else TINY_CLASSIFY
    return load_recipe(RECIPES / f"{name}.toml", [*base, *overrides])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    return train_teacher(recipe("pneumonia-cxr", "train.max_steps=2"), out, progress="none", export=False)


def test_run_folder_holds_recipe_events_metrics_revision(teacher_run: Path) -> None:
    for name in ("recipe.toml", "events.jsonl", "metrics.json", "run.json", "last.pt", "best.pt"):
        assert (teacher_run / name).is_file(), name
    events = [json.loads(line) for line in (teacher_run / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 2
    assert {"epoch", "step", "loss", "lr", "images_per_s"} <= set(events[1])
    run = json.loads((teacher_run / "run.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", run["revision"]) or run["revision"] == "unknown"
    resolved = load_recipe(teacher_run / "recipe.toml")  # the resolved copy runs from anywhere
    assert Path(resolved.data.path).is_absolute() and resolved.data_path().is_dir()


def test_resume_after_sigint_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    r = recipe("pneumonia-cxr")  # augmentation on: seeded per (seed, epoch, item)
    straight = train_teacher(r, tmp_path / "straight", progress="none", export=False)

    def interrupt_at_step_3(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 3:
            signal.raise_signal(signal.SIGINT)

    broken = tmp_path / "broken"
    with pytest.raises(TrainingInterrupted, match="resume"):
        train_teacher(r, broken, progress="none", export=False, listeners=(interrupt_at_step_3,))
    assert load_checkpoint(broken / "last.pt")["step"] == 3
    last_event = json.loads((broken / "events.jsonl").read_text().splitlines()[-1])
    assert last_event["event"] == "error" and last_event["resumable"] is True
    train_teacher(r, broken, resume=True, progress="none", export=False)
    a, b = weights(straight / "last.pt"), weights(broken / "last.pt")
    assert load_checkpoint(broken / "last.pt")["step"] == load_checkpoint(straight / "last.pt")["step"] == 8
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_val_interval_validates_every_nth_and_the_last_epoch(tmp_path: Path) -> None:
    """[train] val_interval = 2 over 5 epochs: validated after epochs 1, 3 and 4 (the last); the best checkpoint
    and metrics.json only from those; the other epochs' events say so, with the training loss."""
    r = recipe("pneumonia-cxr", "train.epochs=5", "train.val_interval=2")
    run = train_teacher(r, tmp_path / "run", progress="none", export=False)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4]
    assert [bool(e["val"]) for e in epochs] == [False, True, False, True, True]
    assert not any(e["best"] for e in epochs if not e["val"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 3, 4]
    assert load_checkpoint(run / "best.pt")["epoch"] in (1, 3, 4)
    with pytest.raises(Exception, match="val_interval"):
        recipe("pneumonia-cxr", "train.val_interval=0")


def test_teacher_is_frozen_and_in_eval_mode(teacher_run: Path) -> None:
    teacher = load_teacher(recipe("pneumonia-cxr", f"teacher={teacher_run}"), torch.device("cpu"))
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert teacher.id == "pneumonia-cxr-teacher"


def test_cached_teacher_outputs_give_the_live_result(teacher_run: Path, tmp_path: Path) -> None:
    common = (f"teacher={teacher_run}", "data.augment={}")
    live = distill_student(recipe("pneumonia-cxr", *common), tmp_path / "live", progress="none", export=False)
    cached = distill_student(recipe("pneumonia-cxr", *common, "distill.cache_teacher=true"), tmp_path / "cached",
                             progress="none", export=False)
    start = json.loads((cached / "events.jsonl").read_text().splitlines()[0])
    assert start["teacher_outputs"] == "cached"
    a, b = weights(live / "last.pt"), weights(cached / "last.pt")
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


def test_cache_refused_when_augmentation_is_on(teacher_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = distill_student(recipe("pneumonia-cxr", f"teacher={teacher_run}", "distill.cache_teacher=true",
                                 "distill.max_steps=1"), tmp_path / "s", progress="none", export=False)
    assert json.loads((run / "events.jsonl").read_text().splitlines()[0])["teacher_outputs"] == "live"
    assert "augmentation" in capsys.readouterr().err


def test_cache_refused_under_mixup(teacher_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mixup gives the teacher new inputs every step, even with the data set's augmentation off."""
    run = distill_student(recipe("pneumonia-cxr", f"teacher={teacher_run}", "data.augment={}", "distill.mixup=0.4",
                                 "distill.cache_teacher=true", "distill.max_steps=1"), tmp_path / "s",
                          progress="none", export=False)
    assert json.loads((run / "events.jsonl").read_text().splitlines()[0])["teacher_outputs"] == "live"
    assert "mixup" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["none", "hinton", "dkd", "fitnets", "attention"])
def test_every_classification_kd_method_trains(teacher_run: Path, tmp_path: Path, method: str) -> None:
    r = recipe("pneumonia-cxr", f"teacher={teacher_run}", f"distill.method={method}", "distill.max_steps=1")
    run = distill_student(r, tmp_path / method, progress="none", export=False)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 1 and (run / "best.pt").is_file()
    if method == "fitnets":
        assert ckpt["adapters"], "FitNets adapters are trained and checkpointed"
        assert not any(k.startswith("adapters") for k in ckpt["model"]), "adapters are not part of the student"
    assert json.loads((run / "run.json").read_text())["role"] == ("baseline" if method == "none" else "student")


@pytest.mark.parametrize("method", ["pixel", "cwd", "fitnets"])
def test_segmentation_kd_methods_train(tmp_path: Path, method: str) -> None:
    teacher = train_teacher(recipe("retina-vessels"), tmp_path / "t", progress="none", export=False)
    run = distill_student(recipe("retina-vessels", f"teacher={teacher}", f"distill.method={method}"),
                          tmp_path / "s", progress="none", export=False)
    assert "dice" in json.loads((run / "metrics.json").read_text())["best"]["val"]


def test_kd_rampup_follows_the_runs_fractional_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdviewer.distill import losses

    seen: list[tuple[float | None, float]] = []
    real = losses.sigmoid_rampup
    monkeypatch.setattr(losses, "sigmoid_rampup", lambda epoch, length: seen.append((epoch, length)) or real(epoch, length))
    teacher = train_teacher(recipe("retina-vessels"), tmp_path / "t", progress="none", export=False)
    student = recipe("retina-vessels", f"teacher={teacher}", "distill.method=pixel", "distill.max_steps=0",
                     "distill.epochs=2", "distill.kd_rampup_epochs=3", "data.repeat=1")
    distill_student(student, tmp_path / "s", progress="none", export=False)
    # 4 training items in batches of 2: two steps per epoch, at epochs 0, 0.5, 1, 1.5
    assert seen == [(0.0, 3.0), (0.5, 3.0), (1.0, 3.0), (1.5, 3.0)]


def test_a_segmenter_stuck_at_dice_0_is_warned_about_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real stall: a prior-initialised U-Net trained at a negligible learning rate predicts background
    everywhere; the 5th validation's epoch event carries the warning (and stderr says it), once in 6 epochs."""
    stuck = recipe("retina-vessels", "train.max_steps=0", "train.epochs=6", "train.lr=1e-9", "data.repeat=1")
    run = train_teacher(stuck, tmp_path / "t", progress="none", export=False)
    epochs = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "epoch"]
    assert [e["val"]["dice"] for e in epochs] == [0.0] * 6
    assert [bool(e.get("warning")) for e in epochs] == [False] * 4 + [True, False]
    assert "validation Dice has been 0 for the first 5 validations" in epochs[4]["warning"]
    assert capsys.readouterr().err.count("warning: validation Dice has been 0") == 1


def test_stall_warning_needs_dice_0_from_the_start_and_only_for_segmentation() -> None:
    from kdviewer.distill.trainer_tasks import STALL_EPOCHS, SegmentAdapter, TaskAdapter

    adapter = SegmentAdapter()
    zeros = [{"val": {"dice": 0.0}}] * STALL_EPOCHS
    assert adapter.stall_warning(zeros) and adapter.stall_warning(zeros[:-1]) is None
    assert adapter.stall_warning([{"val": {"dice": 0.01}}, *zeros[1:]]) is None   # it found something once
    assert adapter.stall_warning([*zeros, {"val": {"dice": 0.0}}]) is None        # said once, at the 5th
    assert TaskAdapter().stall_warning([{"val": {"dice": 0.0}}] * STALL_EPOCHS) is None       # other tasks: none


def test_channels_last_trains_the_same_net_in_nhwc(tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> Path:
        r = recipe("pneumonia-cxr", "teacher_net={arch = 'resnet18'}", "train.max_steps=2", *extra)
        return train_teacher(r, tmp_path / name, progress="none", export=name == "nhwc")

    plain, nhwc = run("plain", "train.channels_last=false"), run("nhwc", "train.channels_last=true")
    conv = "layer1.0.conv1.weight"  # 3x3, 64 -> 64: NCHW and NHWC strides differ
    assert weights(plain / "last.pt")[conv].is_contiguous()
    assert weights(nhwc / "last.pt")[conv].is_contiguous(memory_format=torch.channels_last)
    assert not weights(nhwc / "last.pt")[conv].is_contiguous()
    losses = [[json.loads(line)["loss"] for line in (run_dir / "events.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "step"] for run_dir in (plain, nhwc)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)  # the same net and data: only the layout differs
    assert list(nhwc.glob("*.onnx")), "the NHWC-trained net exports"


def test_run_trains_on_the_datasets_it_is_given(tmp_path: Path) -> None:
    from torch.utils.data import Subset

    from kdviewer.distill.data import build_datasets

    r = recipe("pneumonia-cxr")
    train, val, meta = build_datasets(r.data.table(), r.task, r.recipe_dir)
    run = train_teacher(r, tmp_path / "run", progress="none", export=False,
                        datasets=(Subset(train, range(8)), val, meta))
    # 8 items in batches of 4 for 2 epochs: 4 steps (the recipe's own 16 items would give 8)
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert json.loads((run / "meta.json").read_text())["class_names"] == meta["class_names"]


def test_refuses_to_overwrite_a_run(teacher_run: Path) -> None:
    from kdviewer.errors import KdviewerError

    with pytest.raises(KdviewerError, match="--resume"):
        train_teacher(recipe("pneumonia-cxr"), teacher_run, progress="none", export=False)


def test_teacher_given_as_a_checkpoint_file(teacher_run: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "teacher.pt"
    elsewhere.write_bytes((teacher_run / "best.pt").read_bytes())
    run = distill_student(recipe("pneumonia-cxr", f"teacher={elsewhere}", "distill.max_steps=1"), tmp_path / "s",
                          progress="none", export=False)
    assert json.loads((run / "run.json").read_text())["teacher"]["id"] == "pneumonia-cxr-teacher"


def test_a_run_folder_teacher_is_the_net_its_checkpoint_holds(teacher_run: Path, tmp_path: Path) -> None:
    """A student's run folder as the teacher (e.g. a second generation): its best.pt holds the student's net,
    not the recipe's teacher_net, and loads as that."""
    # the student's own recipe names a ResNet-18 teacher_net (unused: its teacher is the run folder's net)
    student = distill_student(recipe("pneumonia-cxr", f"teacher={teacher_run}", "distill.max_steps=1",
                                     "student_net.width=0.5", "teacher_net.arch=resnet18"), tmp_path / "s",
                              progress="none", export=False)
    r = recipe("pneumonia-cxr", f"teacher={student}")
    loaded = load_teacher(r, torch.device("cpu"))
    assert loaded.spec["name"] == "mobilenetv2" and loaded.spec["kwargs"]["width"] == 0.5
    for name, value in weights(student / "best.pt").items():
        assert torch.equal(loaded.model.state_dict()[name], value), name


def test_missing_teacher_is_named(tmp_path: Path) -> None:
    from kdviewer.distill.recipe import RecipeError

    with pytest.raises(RecipeError, match="teacher"):
        distill_student(recipe("pneumonia-cxr", f"teacher={tmp_path / 'nope'}"), tmp_path / "s", progress="none")


def test_resume_names_recipe_changes(teacher_run: Path) -> None:
    from kdviewer.distill.trainer_run import recipe_changes

    same = recipe("pneumonia-cxr", "train.max_steps=5", "train.epochs=9")
    assert recipe_changes(teacher_run / "recipe.toml", same) == []
    other = recipe("pneumonia-cxr", "train.lr=0.5", "data.augment={}")
    assert recipe_changes(teacher_run / "recipe.toml", other) == ["data.augment", "train.lr"]


class _SignalsItself(torch.utils.data.Dataset):
    """Item 1 sends SIGINT and SIGTERM to the process that loads it (a DataLoader worker)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        if i == 1:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        return i


def test_loader_workers_leave_stop_signals_to_the_trainer() -> None:
    """Ctrl+C or `timeout` signal the whole process group; a worker must not die of it (the trainer stops)."""
    from kdviewer.distill.trainer import leave_stop_signals_to_the_trainer

    loader = torch.utils.data.DataLoader(_SignalsItself(), batch_size=1, num_workers=1,
                                         worker_init_fn=leave_stop_signals_to_the_trainer)
    assert [int(b) for b in loader] == [0, 1, 2, 3]
    plain = torch.utils.data.DataLoader(_SignalsItself(), batch_size=1, num_workers=1)
    with pytest.raises((RuntimeError, OSError)):  # what the trainer's loader did before: the worker died
        list(plain)  # (seen as "worker ... killed by signal" or a connection reset, by timing)
