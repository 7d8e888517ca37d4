"""Training: `train_teacher` and `distill_student`, one loop for every task and KD method.

A run folder holds `recipe.toml` (resolved), `run.json` (code revision, stage), `events.jsonl`,
`metrics.json`, `last.pt` (every epoch, atomically, with optimizer, scheduler and RNG states, so
`resume=True` continues exactly), `best.pt` (best validation metric) and, after export, `<id>.onnx` +
`<id>.json` + `<id>.md`. With ``ema_epochs`` > 0 the stage keeps a moving average of the weights
(`trainer_ema`): validation scores it, best.pt holds it and last.pt holds it beside the trained weights.
SIGINT/SIGTERM finish the current step, write `last.pt` and raise `TrainingInterrupted`. Under `torchrun`
the student is wrapped in DDP; only rank 0 writes.

The data come from `distill.data.build_datasets` (the recipe's `[data]`), or from the caller as
`datasets=(train_ds, val_ds, meta)` in the same form. Each batch goes through one `DistillStep`
(`trainer_step`); `training_step` builds a run's step without running it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdviewer.distill.events import EventReporter, Throughput
from kdviewer.distill.losses import FeatureHooks, UnknownLayerError
from kdviewer.distill.recipe import Recipe, RecipeError, TrainConfig
from kdviewer.distill.trainer_checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from kdviewer.distill.trainer_ddp import (
    DistContext,
    any_rank,
    barrier,
    broadcast_object,
    close_distributed,
    epoch_indices,
    init_distributed,
    single_process,
)
from kdviewer.distill.trainer_ema import WeightAverage, ema_decay
from kdviewer.distill.trainer_kd import Distiller, feature_pairs
from kdviewer.distill.trainer_models import Teacher, build_net, load_teacher, net_spec
from kdviewer.distill.trainer_optim import build_optimizer, build_scheduler
from kdviewer.distill.trainer_precision import resolve_precision, schedule_for_device
from kdviewer.distill.trainer_run import recipe_changes, write_metrics, write_run_files
from kdviewer.distill.trainer_step import DistillStep
from kdviewer.distill.trainer_tasks import TaskAdapter, task_adapter
from kdviewer.errors import KdviewerError

Listener = Callable[[dict[str, Any]], None]
# (train_ds, val_ds, meta) as `distill.data.build_datasets` returns them: items {"image", "target", ...}.
Datasets = tuple[Dataset, Dataset, dict[str, Any]]


class TrainingInterrupted(KdviewerError):
    """SIGINT/SIGTERM stopped the run after a step; `last.pt` holds where to resume."""


@dataclasses.dataclass
class _State:
    epoch: int = 0            # the epoch being (or next to be) trained
    step: int = 0             # optimizer steps done in total
    step_in_epoch: int = 0    # steps done in `epoch`
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def train_teacher(recipe: Recipe, out: str | Path | None = None, *, resume: bool = False,
                  progress: str = "bar", export: bool = True, listeners: tuple[Listener, ...] = (),
                  datasets: Datasets | None = None) -> Path:
    """Train the recipe's teacher (`[teacher_net]`, `[train]`); returns the run folder.

    `datasets`: (train_ds, val_ds, meta) to train on instead of the recipe's `[data]` (None: build those);
    a resumed run must be given the same ones again.
    """
    return _run(recipe, "train", out, resume, progress, export, listeners, datasets)


def distill_student(recipe: Recipe, out: str | Path | None = None, *, resume: bool = False,
                    progress: str = "bar", export: bool = True, listeners: tuple[Listener, ...] = (),
                    datasets: Datasets | None = None) -> Path:
    """Train the recipe's student (`[student_net]`, `[distill]`) from its teacher; returns the run folder.

    `distill.method = "none"` trains the no-KD baseline student with the same data and budget.
    `datasets`: (train_ds, val_ds, meta) to train on instead of the recipe's `[data]` (None: build those);
    a resumed run must be given the same ones again.
    """
    return _run(recipe, "distill", out, resume, progress, export, listeners, datasets)


def training_step(recipe: Recipe, stage: str, *, datasets: Datasets | None = None) -> DistillStep:
    """The `DistillStep` a `train` or `distill` run of `recipe` would train with, built as the run builds it
    (seeded nets, teacher, adapters, optimizer, schedule, cache policy) in this process; nothing is written."""
    ctx = single_process(recipe.device)
    recipe, _ = schedule_for_device(recipe, stage, ctx.device)
    reporter = EventReporter(None, "none", enabled=False)
    # the run folder is only written by `_Loop.fit`, which is not called here
    return _Loop(recipe, stage, Path.cwd(), ctx, reporter, resume=False, datasets=datasets).step


def default_run_dir(recipe: Recipe, stage: str) -> Path:
    """runs/<name>-<stage>-<UTC time> under the current folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe.name}-{stage}-{stamp}"


def role_of(recipe: Recipe, stage: str) -> str:
    """teacher (train), baseline (distill with method none) or student."""
    if stage == "train":
        return "teacher"
    return "baseline" if recipe.distill.method == "none" else "student"


def _run(recipe: Recipe, stage: str, out: str | Path | None, resume: bool, progress: str, export: bool,
         listeners: tuple[Listener, ...], datasets: Datasets | None) -> Path:
    ctx = init_distributed(recipe.device)
    try:
        run_dir = Path(broadcast_object(ctx, str(Path(out) if out else default_run_dir(recipe, stage)))).resolve()
        reporter = EventReporter(run_dir if ctx.is_main else None, progress, enabled=ctx.is_main)
        reporter.listeners.extend(listeners)
        # a recipe's float32 schedule where it asks for bfloat16 and this device lacks it (said once, in the log)
        recipe, schedule = schedule_for_device(recipe, stage, ctx.device)
        if schedule and ctx.is_main:
            reporter.log(schedule)
        try:
            _Loop(recipe, stage, run_dir, ctx, reporter, resume, datasets).fit()
            if export and ctx.is_main:
                from kdviewer.distill.export import export_run
                onnx_path, card_path = export_run(run_dir, which="best", int8=recipe.export.int8,
                                                  log=reporter.log)
                reporter.emit("export", onnx=str(onnx_path), card=str(card_path))
            barrier(ctx)
        except Exception as exc:
            reporter.emit("error", message=str(exc) or type(exc).__name__,
                          resumable=isinstance(exc, TrainingInterrupted))
            raise
        if ctx.is_main:
            best = json.loads((run_dir / "metrics.json").read_text())["best"]
            reporter.emit("done", run_dir=str(run_dir), best=best)
        return run_dir
    finally:
        close_distributed()


class _Indexed(torch.utils.data.Dataset):
    """Adds the item index to each sample (the key of the teacher-output cache)."""

    def __init__(self, ds: torch.utils.data.Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.ds[i], "index": i}


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.raised: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A DataLoader worker's init: ignore SIGINT and SIGTERM, which the main process turns into a clean stop.

    Ctrl+C in a terminal and `timeout` signal the whole process group, the loader's workers too; PyTorch's worker
    handler dies on a SIGTERM not sent by its parent, and SIGINT raises KeyboardInterrupt there, so the main
    process saw "worker killed by signal" and stopped with an internal error and no resumable checkpoint. The main
    process still ends its workers when it stops (it shuts the loader down, or they exit with their parent).
    """
    del worker_id
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _Loop:
    """One run: its data, nets, optimiser, state and the epoch loop."""

    def __init__(self, recipe: Recipe, stage: str, run_dir: Path, ctx: DistContext, reporter: EventReporter,
                 resume: bool, datasets: Datasets | None = None) -> None:
        self.recipe, self.stage, self.run_dir, self.ctx, self.reporter = recipe, stage, run_dir, ctx, reporter
        self.cfg: TrainConfig = recipe.stage(stage)
        self.resume = resume
        seed_everything(recipe.seed)
        if datasets is None:
            from kdviewer.distill.data import build_datasets

            datasets = build_datasets(recipe.stage_data(stage), recipe.task, recipe.recipe_dir)
        self.train_ds, self.val_ds, self.meta = datasets
        self.adapter: TaskAdapter = task_adapter(recipe.task, self.meta, self.cfg.logit_adjust, self.cfg.loss,
                                                  self.cfg.cldice)
        net_cfg = recipe.teacher_net if stage == "train" else recipe.student_net
        self.spec = net_spec(net_cfg, recipe, self.meta)
        self.model = build_net(self.spec, "teacher_net" if stage == "train" else "student_net",
                               recipe.source).to(ctx.device)
        if self.cfg.channels_last:  # oneDNN's NHWC convolutions: ResNet / MobileNetV2 steps 1.3-1.4x faster here
            self.model.to(memory_format=torch.channels_last)
        self.teacher: Teacher | None = None
        self.distiller: Distiller | None = None
        if stage == "distill":
            self.distiller = Distiller(recipe.distill, self.adapter, [])
            if recipe.distill.method != "none":
                self.teacher = load_teacher(recipe, ctx.device)
                if self.cfg.channels_last:  # a torch teacher's forward gains too (an ONNX one has no tensors)
                    self.teacher.model.to(memory_format=torch.channels_last)
                self.distiller.pairs = feature_pairs(recipe.distill, self.teacher.spec, self.spec)
                try:
                    self._init_adapters()
                except UnknownLayerError as exc:
                    raise RecipeError(recipe.source, "distill.features", str(exc)) from None
        self.teacher_outputs = "live"
        self.cache: dict[int, torch.Tensor] | None = self._cache_policy()
        self.wrapped: nn.Module = self.model
        if ctx.distributed:
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
        n_per_rank = math.ceil(len(self.train_ds) / ctx.world_size)  # type: ignore[arg-type]
        self.batch_size = min(self.cfg.batch_size, n_per_rank)
        self.drop_last = n_per_rank > self.batch_size
        self.steps_per_epoch = n_per_rank // self.batch_size if self.drop_last else 1
        # Polyak averaging of the weights (`ema_epochs`): validated, kept as best.pt and exported instead of the net
        self.ema = (WeightAverage(self.model, ema_decay(self.cfg.ema_epochs, self.steps_per_epoch))
                    if self.cfg.ema_epochs > 0 else None)
        self.params = list(self.model.parameters()) + (list(self.distiller.parameters()) if self.distiller else [])
        self.optimizer = build_optimizer(self.cfg, self.params)
        self.scheduler = build_scheduler(self.cfg, self.optimizer, self.steps_per_epoch)
        # bfloat16 autocast where asked and native on this device, else float32 (said once, in the log)
        self.precision = self._precision(self.cfg.precision, f"{stage}.precision")
        teacher_precision = "fp32"
        if self.teacher is not None and recipe.distill.teacher_precision != "fp32":
            if self.teacher.path.suffix == ".onnx":  # onnxruntime computes it (float32); autocast cannot reach it
                self.reporter.log(f'distill.teacher_precision = "{recipe.distill.teacher_precision}": applies to a '
                                  "torch teacher; this ONNX teacher runs in onnxruntime, in float32")
            else:
                teacher_precision = self._precision(recipe.distill.teacher_precision, "distill.teacher_precision")
        self.step = DistillStep(self.model, self.wrapped, self.teacher.model if self.teacher else None,
                                self.distiller, self.adapter, self.optimizer, self.scheduler, self.cache, ctx,
                                channels_last=self.cfg.channels_last, mixup=self.cfg.mixup,
                                precision=self.precision, teacher_precision=teacher_precision)
        self.state = _State()

    # --- setup -------------------------------------------------------------------------------------------

    def _precision(self, requested: str, key: str) -> str:
        """The precision `requested` by recipe `key` as this device runs it; a fallback is logged once."""
        effective, why = resolve_precision(requested, self.ctx.device)
        if why and self.ctx.is_main:
            self.reporter.log(f'{key} = "{requested}": {why}; computing in float32')
        return effective

    def _init_adapters(self) -> None:
        """Run one batch through both nets to size the FitNets adapters (before the optimizer exists)."""
        assert self.distiller is not None and self.teacher is not None
        if not self.distiller.pairs:
            return
        batch = next(iter(DataLoader(self.train_ds, batch_size=2)))
        images = batch["image"].to(self.ctx.device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            was = self.model.training
            self.model.eval()
            with FeatureHooks(self.model, self.distiller.student_layers) as sh:
                self.model(images)
            with FeatureHooks(self.teacher.model, self.distiller.teacher_layers) as th:
                self.teacher.model(images)
            self.model.train(was)
        self.distiller.build_adapters([sh.outputs[n] for n in self.distiller.student_layers],
                                      [th.outputs[n] for n in self.distiller.teacher_layers])
        self.distiller.to(self.ctx.device)

    def _fit_linear_skip(self) -> int:
        """Super-resolution nets with ``skip = "learned"`` start from the least-squares linear upsampler of the
        training split (one pass over its samples; every rank computes the same), then train as a whole.
        Returns the number of low-res pixels fitted on (0: no such skip)."""
        skip = getattr(getattr(self.model, "skip", None), "linear", None)
        if skip is None:
            return 0
        from kdviewer.distill.nets.superres import fit_linear_upsampler

        loader = DataLoader(self.train_ds, batch_size=self.cfg.batch_size)
        with torch.random.fork_rng(devices=[]):
            return fit_linear_upsampler(skip, ((b["image"], b["target"]) for b in loader))

    def _cache_policy(self) -> dict[int, torch.Tensor] | None:
        """A teacher-output cache when asked and valid, else None (live); sets `teacher_outputs`.

        "cached": the same inputs every epoch, so the teacher's output per training item (returned dict).
        "pooled": denoising from a fixed pool of noisy realisations (`degrade.realizations` > 0), or
        super-resolution with flips as the only augmentation: the teacher's output on each whole (noisy or
        low-res) slice, flipped and cut like each draw (`ItemDataset.attach_pool_teacher`)."""
        if self.distiller is None or self.teacher is None or not self.recipe.distill.cache_teacher:
            return None
        from kdviewer.distill.augment import AugmentConfig

        data = self.recipe.data
        augment_on = (AugmentConfig.from_dict(data.augment) != AugmentConfig() or data.patch_size is not None
                      or self.cfg.mixup > 0)
        random_degrade = self.recipe.task in ("denoise", "super_resolve")
        if not self.distiller.output_only:
            self.reporter.log("cache_teacher: feature methods need the teacher's features every step: computing live")
            return None
        # the data set's own parsed [data] (a caller's own data set without a pool stays live)
        pooled = bool(getattr(self.train_ds, "can_pool_teacher", False))
        if pooled and self.cfg.num_workers == 0:
            self.train_ds.attach_pool_teacher(self._pool_teacher())  # type: ignore[attr-defined]
            self.teacher_outputs = "pooled"
            return None
        if augment_on or random_degrade:
            why = ("the pool's teacher outputs live in this process: set num_workers = 0" if pooled
                   else "augmentation (random crops, mixup) is on" if augment_on
                   else "inputs are degraded afresh each epoch")
            self.reporter.log(f"cache_teacher: {why}, so cached outputs would be stale: computing live")
            return None
        self.teacher_outputs = "cached"
        return {}

    def _pool_teacher(self) -> Callable[[np.ndarray], np.ndarray]:
        """The teacher as a numpy function of a stack of whole noisy slices, one at a time (eval, no grad)."""
        assert self.teacher is not None
        model, dev, nhwc = self.teacher.model, self.ctx.device, self.cfg.channels_last

        @torch.no_grad()
        def run(images: np.ndarray) -> np.ndarray:
            outs = []
            for image in images:
                x = torch.from_numpy(np.ascontiguousarray(image[None])).to(dev)
                if nhwc:
                    x = x.contiguous(memory_format=torch.channels_last)
                outs.append(model(x).float().cpu().numpy()[0])
            return np.stack(outs)

        return run

    # --- the loop ----------------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train to the end (epochs or max_steps), validating, checkpointing and reporting on the way."""
        ctx, cfg = self.ctx, self.cfg
        if self.resume:
            self._restore()
            fitted = 0
        else:
            fitted = self._fit_linear_skip()
            if ctx.is_main:
                self._write_run_files()
        st = self.state
        total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        self.reporter.emit("start", stage=self.stage, run_dir=str(self.run_dir), epochs=cfg.epochs,
                           steps_per_epoch=self.steps_per_epoch, total_steps=total_steps,
                           world_size=ctx.world_size, device=str(ctx.device),
                           resumed_at_step=st.step if self.resume else None,
                           teacher_outputs=self.teacher_outputs, precision=self.precision,
                           **({"linear_skip_fit_pixels": fitted} if fitted else {}))
        t_start, step_at_start = time.perf_counter(), st.step
        with _StopFlag() as stop:
            while st.epoch < cfg.epochs and not (cfg.max_steps and st.step >= cfg.max_steps):
                losses = list(self._train_epoch(stop, total_steps))
                if any_rank(ctx, stop.raised is not None):
                    self._save_last()
                    raise TrainingInterrupted(f"interrupted at step {st.step}: resume with --resume "
                                              f"--out {self.run_dir}")
                finished_epoch = st.step_in_epoch >= self.steps_per_epoch
                if not losses and not finished_epoch:  # never loop without progress
                    raise KdviewerError(f"epoch {st.epoch} gave no training batch (step {st.step_in_epoch} of "
                                        f"{self.steps_per_epoch}); is the training split empty?")
                entry = {"epoch": st.epoch, "step": st.step, "train_loss": sum(losses) / max(len(losses), 1),
                         "val": {}}
                is_best = False
                if self._validates(finished_epoch):
                    entry["val"] = self._validate()
                    st.history.append(entry)
                    is_best = self._update_best(entry)  # writes metrics.json, this entry included
                if finished_epoch:
                    st.epoch, st.step_in_epoch = st.epoch + 1, 0
                self._save_last()
                done_steps = max(st.step - step_at_start, 1)
                eta = (time.perf_counter() - t_start) / done_steps * max(total_steps - st.step, 0)
                warning = self.adapter.stall_warning(st.history) if entry["val"] else None
                self.reporter.emit("epoch", epoch=entry["epoch"], train_loss=entry["train_loss"], val=entry["val"],
                                   best=is_best, eta_s=round(eta, 1), **({"warning": warning} if warning else {}))
                if warning:
                    self.reporter.log(f"warning: {warning}")
                barrier(ctx)

    def _validates(self, finished_epoch: bool) -> bool:
        """Whether this epoch ends with a validation: every `val_interval`-th epoch, the last one, and a run's
        end at max_steps (val_interval 1: every epoch)."""
        cfg, st = self.cfg, self.state
        last = st.epoch + 1 >= cfg.epochs or bool(cfg.max_steps and st.step >= cfg.max_steps)
        return not finished_epoch or last or (st.epoch + 1) % cfg.val_interval == 0

    def _train_epoch(self, stop: _StopFlag, total_steps: int) -> Iterator[float]:
        ctx, cfg, st = self.ctx, self.cfg, self.state
        indices = epoch_indices(len(self.train_ds), st.epoch, self.recipe.seed, ctx)  # type: ignore[arg-type]
        indices = indices[st.step_in_epoch * self.batch_size:]
        loader = DataLoader(_Indexed(self.train_ds), batch_size=self.batch_size, sampler=indices,
                            drop_last=self.drop_last, num_workers=cfg.num_workers,
                            worker_init_fn=leave_stop_signals_to_the_trainer,  # unused without workers
                            generator=torch.Generator().manual_seed(self.recipe.seed + st.epoch))
        if hasattr(self.train_ds, "set_epoch"):
            self.train_ds.set_epoch(st.epoch)  # augmentations seeded by (seed, epoch, index)
        self.model.train()
        speed = Throughput()
        for batch in loader:
            if st.step_in_epoch >= self.steps_per_epoch:
                break
            loss = self.step(batch, epoch=st.epoch + st.step_in_epoch / self.steps_per_epoch)
            if self.ema is not None:
                self.ema.update(self.model)
            st.step += 1
            st.step_in_epoch += 1
            self.reporter.emit("step", epoch=st.epoch, step=st.step, loss=loss,
                               lr=self.optimizer.param_groups[0]["lr"],
                               images_per_s=round(speed.tick(len(batch["image"]) * ctx.world_size), 1),
                               total_steps=total_steps)
            yield loss
            if any_rank(ctx, stop.raised is not None):
                stop.raised = stop.raised or signal.SIGTERM  # another rank was signalled: stop here too
                return
            if cfg.max_steps and st.step >= cfg.max_steps:
                return

    # --- validation, checkpoints ----------------------------------------------------------------------

    @property
    def kept_model(self) -> nn.Module:
        """The weights a validation scores and best.pt keeps: the weight average when the stage has one."""
        return self.ema.module if self.ema is not None else self.model

    def _validate(self) -> dict[str, float]:
        """Metrics of the kept model on the validation split (rank 0; RNG states left untouched)."""
        if not self.ctx.is_main:
            return {}
        saved = rng_state()
        self.model.eval()
        loader = DataLoader(self.val_ds, batch_size=max(self.batch_size, 8), shuffle=False)
        model = self.kept_model

        def predict(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(images.to(self.ctx.device))

        try:
            return self.adapter.evaluate(predict, loader)
        finally:
            self.model.train()
            set_rng_state(saved)

    def _update_best(self, entry: dict[str, Any]) -> bool:
        if not self.ctx.is_main:
            return False
        key = self.adapter.primary
        value = entry["val"].get(key, float("nan"))
        best = self.state.best
        better = best is None or (not math.isnan(value) and (math.isnan(best["value"]) or value > best["value"]))
        if better:
            self.state.best = {"epoch": entry["epoch"], "step": entry["step"], "metric": key, "value": value,
                               "val": entry["val"]}
            save_checkpoint(self._model_payload(entry), self.run_dir / "best.pt")
            self.reporter.emit("checkpoint", path=str(self.run_dir / "best.pt"))
        self._write_metrics()
        return better

    def _model_payload(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.kept_model.state_dict(), "net": self.spec, "task": self.recipe.task,
                "stage": self.stage, "id": f"{self.recipe.name}-{role_of(self.recipe, self.stage)}",
                "epoch": entry["epoch"], "step": entry["step"], "val": entry["val"]}

    def _save_last(self) -> None:
        if not self.ctx.is_main:
            return
        st = self.state
        payload = {
            "model": self.model.state_dict(), "net": self.spec, "task": self.recipe.task, "stage": self.stage,
            "adapters": self.distiller.state_dict() if self.distiller else {},
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "epoch": st.epoch, "step": st.step, "step_in_epoch": st.step_in_epoch,
            "best": st.best, "history": st.history, "rng": rng_state(),
        }  # the teacher-output cache is not saved: a resumed run recomputes the same outputs
        save_checkpoint(payload, self.run_dir / "last.pt")
        self.reporter.emit("checkpoint", path=str(self.run_dir / "last.pt"))

    def _restore(self) -> None:
        ckpt = load_checkpoint(self.run_dir / "last.pt")
        changed = recipe_changes(self.run_dir / "recipe.toml", self.recipe)
        if changed:
            self.reporter.log(f"resume: the recipe differs from the run's recipe.toml in {', '.join(changed)}; "
                              "the result will not match an uninterrupted run")
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            if ckpt.get("ema"):
                self.ema.load_state_dict(ckpt["ema"])
            else:  # the run began without a weight average: start one from the restored weights
                self.ema = WeightAverage(self.model, self.ema.decay)
        if self.distiller is not None and ckpt.get("adapters"):
            self.distiller.load_state_dict(ckpt["adapters"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = _State(ckpt["epoch"], ckpt["step"], ckpt["step_in_epoch"], ckpt.get("best"),
                            list(ckpt.get("history") or []))
        set_rng_state(ckpt["rng"])

    def _write_run_files(self) -> None:
        teacher = {"id": self.teacher.id, "path": str(self.teacher.path)} if self.teacher else None
        write_run_files(self.run_dir, self.recipe, self.stage, role_of(self.recipe, self.stage), self.meta,
                        world_size=self.ctx.world_size, teacher=teacher,
                        teacher_outputs=self.teacher_outputs, precision=self.precision)

    def _write_metrics(self) -> None:
        best = self.state.best or {}
        write_metrics(self.run_dir, self.adapter.primary, {"epoch": best.get("epoch"), "val": best.get("val", {})},
                      self.state.history)
