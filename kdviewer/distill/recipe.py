"""Recipes: a TOML file that describes a training or distillation run completely (DESIGN.md "Recipes").

`load_recipe(path, overrides=["distill.temperature=2"])` reads, overrides, checks and returns a frozen
`Recipe`; `dump_recipe(recipe)` writes the resolved TOML that a run folder keeps.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from kdviewer.errors import KdviewerError
from kdviewer.modelcard import FLIP_AVERAGES as CARD_FLIP_AVERAGES

TASKS = ("classify", "segment", "denoise", "super_resolve")
KD_METHODS = ("none", "hinton", "dkd", "fitnets", "attention", "pixel", "cwd", "restoration")
# Which KD methods make sense for which task (feature methods work for every task).
METHODS_FOR_TASK = {
    "classify": ("none", "hinton", "dkd", "fitnets", "attention"),
    "segment": ("none", "pixel", "cwd", "fitnets", "attention"),
    "denoise": ("none", "restoration", "fitnets", "attention"),
    "super_resolve": ("none", "restoration", "fitnets", "attention"),
}
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "step", "none")
RESTORE_LOSSES = ("l1", "mse")
PRECISIONS = ("fp32", "bf16")  # kdviewer.distill.trainer_precision
STAGES = ("train", "distill")
WEIGHTS = ("float32", "float16")


class RecipeError(KdviewerError):
    """A recipe that cannot be run; the message names the file and the key."""

    def __init__(self, path: Path | str | None, key: str | None, reason: str) -> None:
        self.path, self.key, self.reason = path, key, reason
        where = ": ".join(str(p) for p in (path, key) if p)
        super().__init__(f"{where}: {reason}" if where else reason)


@dataclass(frozen=True)
class DataConfig:
    """[data]: where the images are and how they become tensors (checked in detail by `distill.data`)."""

    path: str
    layout: str = "auto"
    input_size: tuple[int, int] = (64, 64)      # (H, W) of the (high-res) image
    channels: int = 1
    val_fraction: float = 0.1
    seed: int = 0
    augment: dict[str, Any] = field(default_factory=dict)
    degrade: dict[str, Any] = field(default_factory=dict)
    normalize: str = "minmax"                   # minmax | zscore | window
    window: tuple[float, float] | None = None   # (center, width) HU
    slices: int = 1                             # 2.5-D: neighbouring slices as channels (volumes)
    patch_size: tuple[int, int] | None = None   # random training crops (segment, restoration)
    max_items: int | None = None                # at most N items per split (quick trials)
    stratify: bool = True
    block_size: int | None = None               # volume slices are split in blocks of this many
    simulate: dict[str, Any] = field(default_factory=dict)  # {kind = "nodules", ...}: see distill.data_config
    repeat: int = 1                             # training samples per item per epoch (fresh random patches)
    grey: str = "luma"                          # colour to one channel: luma | green
    clahe: float = 0.0                          # CLAHE clip limit before resizing (0: off)
    mask_resize: str = "nearest"                # training masks to input_size: nearest | soft (class shares)

    def table(self) -> dict[str, Any]:
        """The [data] table as `distill.data.build_datasets` reads it (unset options left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class NetConfig:
    """[teacher_net] / [student_net]: a name from `distill.nets` and its size options (None: the net's default)."""

    arch: str
    width: float | None = None          # mobilenetv2, mobileunet
    depth: int | None = None            # unet, unet_small, dncnn, denoise_small
    base: int | None = None             # unet, unet_small
    channels: int | None = None         # restoration and super-resolution nets
    num_blocks: int | None = None       # srresnet
    stem: str | None = None             # resnets, mobilenetv2: auto | small | imagenet
    batch_norm: bool | None = None      # dncnn, srresnet
    entry_stride: int | None = None     # unet_small: 2 runs the U-Net at half resolution
    entry: str | None = None            # unet_small with entry_stride 2: conv | shuffle (pixel (un)shuffle)
    detail: int | None = None           # unet_small with entry shuffle: channels of a full-resolution branch
    detail_mode: str | None = None      # unet_small with detail: logits | refine | features (`nets.unet.UNet`)
    widths: tuple[int, ...] | None = None  # unet_small: each level's width (overrides base and depth)
    head_split: float | None = None     # unet_small: half the last stage's channels start as foreground voters
    skip: str | None = None             # super-resolution nets: bicubic | learned | none
    subpixel: bool | None = None        # srresnet: ESPCN's output stage (no layer at the high resolution)
    dilations: tuple[int, ...] | None = None  # dncnn, denoise_small: one per middle block (IRCNN's wider view)
    shuffle: int | None = None          # dncnn, denoise_small: 2 runs on FFDNet's 2x2 sub-images

    def kwargs(self) -> dict[str, Any]:
        """The options to pass to `create_model`, only those set in the recipe."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "arch" and getattr(self, f.name) is not None}


@dataclass(frozen=True)
class TrainConfig:
    """[train]: the teacher's optimisation."""

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9               # sgd only
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    max_steps: int = 0                  # 0: no limit; N: stop after N optimizer steps (quick trials)
    num_workers: int = 0
    logit_adjust: float = 0.0           # classify: tau of logit-adjusted CE (Menon et al. 2021); 1.0 = balanced
    loss: str = "l1"                    # denoise, super_resolve: l1 | mse (PSNR's own objective)
    channels_last: bool = False         # NHWC tensors for the trained net and a torch teacher (classifiers: faster)
    # this stage's random training crops and samples per item instead of [data]'s: e.g. a costly teacher on
    # smaller crops, more optimiser steps in the same time (validation and export use whole images either way)
    patch_size: tuple[int, int] | None = None
    repeat: int | None = None
    # validate every N epochs (and after the last): whole-slice validation can cost more than an epoch of patches
    val_interval: int = 1
    # classify: mixup (Zhang et al. 2018), lam ~ Beta(a, a) per batch, 0 = off; with KD the teacher sees the same
    # mixed images, as in Beyer et al. 2022's "function matching" (the teacher's outputs off the training images)
    mixup: float = 0.0
    # an exponential moving average of the weights (Polyak averaging; the mean teacher, timm's ModelEma) with this
    # time constant in epochs, 0 = off: validation, best.pt and the export use the averaged weights
    ema_epochs: float = 0.0
    # segment: weight of a soft-clDice term (Shit et al. 2021: skeleton precision / sensitivity, for vessels and
    # other tubes) added to Dice + CE; 0 = off
    cldice: float = 0.0
    # fp32 | bf16: the trained net's forward under bfloat16 autocast where the device computes bfloat16 natively
    # (AVX512-BF16 / AMX CPUs, GPUs; float32 elsewhere, said once); weights, losses and validation stay float32
    precision: str = "fp32"


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """[distill]: the student's optimisation and the KD method (DESIGN.md "Knowledge distillation, done right")."""

    epochs: int = 40
    lr: float = 2e-3
    method: str = "hinton"
    temperature: float = 4.0
    alpha: float = 0.5                  # weight of the hard-label (task) loss
    dkd_alpha: float = 1.0              # DKD target-class weight
    dkd_beta: float = 8.0               # DKD non-target-class weight
    feature_weight: float = 1.0         # weight of the fitnets / attention / restoration feature term
    kd_weight: float | None = None      # pixel, cwd: task + kd_weight·KD (the task loss keeps weight 1; alpha unused)
    kd_rampup_epochs: float = 0.0       # pixel, cwd: the KD term's weight rises over these epochs (sigmoid ramp-up)
    features: tuple[tuple[str, str], ...] = ()   # (teacher layer, student layer) pairs
    cache_teacher: bool = False
    teacher_precision: str = "fp32"     # fp32 | bf16: a live torch teacher's forward (as `precision` is the student's)
    allow_sharpening: bool = False      # temperature < 1 sharpens the teacher: only when asked


NUMERIC_POSTPROCESS = ("threshold", "min_diameter_mm", "lung_gate_mm", "lung_gate_min_cm2")
BOOLEAN_POSTPROCESS = ("largest_component", "fill_holes", "fov_gate")
FLIP_AVERAGES = tuple(f for f in CARD_FLIP_AVERAGES if f)  # postprocess.flip_average, as a card takes it


@dataclass(frozen=True)
class ExportConfig:
    """[export]: ONNX settings, and the post-processing a segmentation model's card asks for.

    `postprocess` (task "segment" only), e.g. ``{threshold = 0.6, min_diameter_mm = 4}``: threshold
    (0 < t < 1: label 1 where p(1) >= t, two-class models, instead of argmax), lung_gate_mm (>= 0: keep only
    components that overlap the lungs of the input CT, closed by a disc this wide in radius), lung_gate_min_cm2
    (>= 0, with lung_gate_mm: a slice showing less lung than this has none for the gate), min_diameter_mm
    (>= 0: drop components smaller than a lesion that wide), largest_component, fill_holes, fov_gate (true /
    false; fov_gate: clear labels outside a photograph's field of view), flip_average ("h", "v" or "hv": average
    the class probabilities over the left-right / up-down flipped input, test-time augmentation);
    see `kdviewer.runtime.segment.postprocess_labels` and `flip_views`.
    """

    opset: int = 17
    int8: bool = False
    weights: str = "float32"            # float32 | float16 (fp16 initialisers, cast to fp32 in the graph)
    postprocess: dict[str, Any] = field(default_factory=dict)

    def check_postprocess(self, task: str, source: Path | None = None) -> None:
        """RecipeError naming ``export.postprocess[.<key>]`` for a key or value the card cannot carry."""
        if not self.postprocess:
            return
        if task != "segment":
            raise RecipeError(source, "export.postprocess", f"only applies to task 'segment', not '{task}'")
        for key, value in self.postprocess.items():
            name = f"export.postprocess.{key}"
            if key in BOOLEAN_POSTPROCESS:
                if not isinstance(value, bool):
                    raise RecipeError(source, name, f"should be true or false, got {_tname(value)}")
                continue
            if key == "flip_average":
                if not isinstance(value, str):
                    raise RecipeError(source, name, f"should be one of {', '.join(FLIP_AVERAGES)}, got {_tname(value)}")
                _one_of(value, FLIP_AVERAGES, name, source)
                continue
            if key not in NUMERIC_POSTPROCESS:
                known = [*NUMERIC_POSTPROCESS, *BOOLEAN_POSTPROCESS, "flip_average"]
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean 'export.postprocess.{close[0]}'?)" if close else ""
                raise RecipeError(source, name, f"unknown key{hint}; known: {', '.join(known)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RecipeError(source, name, f"should be a number, got {_tname(value)}")
            if key == "threshold" and not 0.0 < value < 1.0:
                raise RecipeError(source, name, f"should be between 0 and 1 (exclusive), got {value}")
            if key in ("min_diameter_mm", "lung_gate_mm") and value < 0:
                raise RecipeError(source, name, f"should be at least 0 mm, got {value}")
            if key == "lung_gate_min_cm2":
                if value < 0:
                    raise RecipeError(source, name, f"should be at least 0 cm², got {value}")
                if value > 0 and not self.postprocess.get("lung_gate_mm"):
                    raise RecipeError(source, name, "needs a lung gate: set export.postprocess.lung_gate_mm too")


@dataclass(frozen=True)
class Recipe:
    """A whole run; `source` is the file it came from (relative data paths resolve against it)."""

    name: str
    task: str
    data: DataConfig
    teacher_net: NetConfig
    student_net: NetConfig
    teacher: str = ""
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda
    modalities: tuple[str, ...] = ()    # DICOM modalities the model is meant for (written to the card)
    limits: tuple[str, ...] = ()        # plain-words limits of the data and training, copied to every card
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # [without_bf16.train] / [without_bf16.distill]: the stage's keys that change where the stage asks for bfloat16
    # and the device computes it in float32 (no AVX512-BF16 / AMX: ~1.7x slower steps), e.g. fewer epochs so that
    # the run keeps its time budget there; applied by `kdviewer.distill.trainer_precision.schedule_for_device`
    without_bf16: dict[str, Any] = field(default_factory=dict)
    source: Path | None = field(default=None, compare=False)

    @property
    def recipe_dir(self) -> Path:
        """The folder relative paths in the recipe are taken from."""
        return self.source.parent if self.source else Path.cwd()

    def data_path(self) -> Path:
        """[data].path resolved against the recipe's folder."""
        return (self.recipe_dir / self.data.path).resolve()

    def stage(self, stage: str) -> TrainConfig:
        """The optimisation settings of "train" (teacher) or "distill" (student)."""
        return self.train if stage == "train" else self.distill

    def stage_data(self, stage: str) -> dict[str, Any]:
        """The [data] table a stage trains on: [data] with the stage's own patch_size / repeat where it sets them."""
        cfg = self.stage(stage)
        own = {"patch_size": list(cfg.patch_size) if cfg.patch_size else None, "repeat": cfg.repeat}
        return self.data.table() | {k: v for k, v in own.items() if v is not None}


_TABLES = {"data": DataConfig, "teacher_net": NetConfig, "student_net": NetConfig,
           "train": TrainConfig, "distill": DistillConfig, "export": ExportConfig}
_REQUIRED = ("name", "task", "data.path", "teacher_net.arch", "student_net.arch")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file, apply `key=value` overrides (values parsed as TOML), check and return it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, None, "no such recipe file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(path, None, f"not valid TOML: {exc}") from None
    for item in overrides:
        _apply_override(raw, item, path)
    _keep_overrides(raw, overrides)
    return recipe_from_dict(raw, path)


def stage_precisions(recipe: Recipe, stage: str) -> tuple[str, ...]:
    """The precisions a stage asks for: its net's, and (distill) its live teacher's forward."""
    if stage == "train":
        return (recipe.train.precision,)
    return (recipe.distill.precision, recipe.distill.teacher_precision)


def apply_without_bf16(recipe: Recipe, stage: str) -> Recipe:
    """`recipe` with `[without_bf16.<stage>]`'s keys in place of the stage's own (that entry then dropped), as
    the stage runs where bfloat16 is not native; unchanged where the table has no entry for the stage."""
    table = recipe.without_bf16.get(stage)
    if not table:
        return recipe
    cfg = recipe.stage(stage)
    cls = type(cfg)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"without_bf16.{stage}"
    _check_unknown(table, fields, prefix + ".", recipe.source)
    for key in ("precision", "teacher_precision"):
        if key in table:
            raise RecipeError(recipe.source, f"{prefix}.{key}", "is decided by the device; this table changes the "
                              "schedule that runs in float32 (epochs, batch_size, ...)")
    values = {k: _coerce(v, _hint(cls, k), f"{prefix}.{k}", recipe.source) for k, v in table.items()}
    rest = {k: v for k, v in recipe.without_bf16.items() if k != stage}
    return dataclasses.replace(recipe, without_bf16=rest, **{stage: dataclasses.replace(cfg, **values)})


def _keep_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """A key set on the command line (`train.epochs=45`) wins over `[without_bf16]`'s value for it."""
    fallback = raw.get("without_bf16")
    if not isinstance(fallback, dict):
        return
    for item in overrides:
        parts = item.partition("=")[0].strip().split(".")
        if len(parts) == 2 and parts[0] in STAGES and isinstance(fallback.get(parts[0]), dict):
            fallback[parts[0]].pop(parts[1], None)


def recipe_from_dict(raw: dict[str, Any], source: Path | None = None) -> Recipe:
    """Check a parsed recipe (unknown keys, types, choices) and build the frozen `Recipe`."""
    for key in _REQUIRED:
        table, _, name = key.rpartition(".")
        section = raw.get(table, {}) if table else raw
        if not isinstance(section, dict) or name not in section:
            raise RecipeError(source, key, "missing required key")
    top = {f.name: f for f in dataclasses.fields(Recipe) if f.name != "source"}
    _check_unknown(raw, top, "", source)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _TABLES:
            if not isinstance(value, dict):
                raise RecipeError(source, name, f"should be a table, got {_tname(value)}")
            values[name] = _build(_TABLES[name], value, name, source)
        else:
            values[name] = _coerce(value, _hint(Recipe, name), name, source)
    recipe = Recipe(**values, source=source.resolve() if source else None)
    _check_choices(recipe, source)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as TOML: top-level keys first, then the tables (None options left out)."""
    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                    if f.name != "source" and getattr(obj, f.name) is not None}
        if isinstance(obj, (tuple, list)):
            return [plain(v) for v in obj]
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        return obj

    data = plain(recipe)
    ordered = {k: v for k, v in data.items() if k not in _TABLES}
    ordered.update({k: data[k] for k in _TABLES})
    return tomli_w.dumps(ordered)


def _apply_override(raw: dict[str, Any], item: str, path: Path | None) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(path, item, "an override is written key=value (dotted for tables: distill.alpha=0.3)")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word or path: take it as a string
    parts = key.split(".")
    section = raw
    for part in parts[:-1]:
        section = section.setdefault(part, {})
        if not isinstance(section, dict):
            raise RecipeError(path, key, f"'{part}' is not a table")
    section[parts[-1]] = value


def _build(cls: type, table: dict[str, Any], prefix: str, source: Path | None) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_unknown(table, fields, prefix + ".", source)
    kwargs = {name: _coerce(value, _hint(cls, name), f"{prefix}.{name}", source)
              for name, value in table.items()}
    return cls(**kwargs)


def _check_unknown(table: dict[str, Any], fields: dict[str, Any], prefix: str, source: Path | None) -> None:
    for name in table:
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise RecipeError(source, prefix + name, f"unknown key{hint}")


def _hint(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _tname(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _coerce(value: Any, hint: Any, key: str, source: Path | None) -> Any:
    """Check `value` against a type hint; ints become floats and arrays tuples where the hint says so."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        for option in options:
            try:
                return _coerce(value, option, key, source)
            except RecipeError:
                continue
        raise RecipeError(source, key, f"wrong type: {_tname(value)}")
    if hint is type(None):
        if value is None:
            return None
        raise RecipeError(source, key, "wrong type")
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise RecipeError(source, key, f"should be an array, got {_tname(value)}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, source) for v in value)
        if len(value) != len(args):
            raise RecipeError(source, key, f"should be an array of {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(source, key, f"should be a table, got {_tname(value)}")
        return dict(value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise RecipeError(source, key, f"should be a number, got {_tname(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise RecipeError(source, key, f"should be an integer, got {_tname(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(source, key, f"should be true or false, got {_tname(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise RecipeError(source, key, f"should be a string, got {_tname(value)}")
    raise RecipeError(source, key, f"unsupported type {hint}")  # a recipe field with no rule above


def _one_of(value: str, choices: tuple[str, ...], key: str, source: Path | None) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(source, key, f"'{value}' is not one of {', '.join(choices)}{hint}")


def _non_negative(cfg: Any, keys: tuple[str, ...], section: str, source: Path | None) -> None:
    """Refuse a negative or non-finite value of any of `keys` in `cfg` (the recipe's `section`)."""
    for key in keys:
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value >= 0):
            raise RecipeError(source, f"{section}.{key}", "should be at least 0")


def _check_choices(recipe: Recipe, source: Path | None) -> None:
    _one_of(recipe.task, TASKS, "task", source)
    _one_of(recipe.device, ("auto", "cpu", "cuda"), "device", source)
    for stage in ("train", "distill"):
        cfg = recipe.stage(stage)
        if cfg.patch_size is not None and (recipe.task == "classify" or min(cfg.patch_size) < 1):
            raise RecipeError(source, f"{stage}.patch_size", "takes positive sizes, for segment and restoration tasks")
        if cfg.repeat is not None and cfg.repeat < 1:
            raise RecipeError(source, f"{stage}.repeat", "must be >= 1 (samples per training item per epoch)")
        _one_of(cfg.optimizer, OPTIMIZERS, f"{stage}.optimizer", source)
        _one_of(cfg.schedule, SCHEDULES, f"{stage}.schedule", source)
        _one_of(cfg.loss, RESTORE_LOSSES, f"{stage}.loss", source)
        if cfg.loss != "l1" and recipe.task not in ("denoise", "super_resolve"):
            raise RecipeError(source, f"{stage}.loss", f"applies to denoise and super_resolve, not {recipe.task}")
        for key in ("epochs", "batch_size", "val_interval"):
            if getattr(cfg, key) < 1:
                raise RecipeError(source, f"{stage}.{key}", "should be at least 1")
        if cfg.lr <= 0:
            raise RecipeError(source, f"{stage}.lr", "should be positive")
        if cfg.num_workers < 0:
            raise RecipeError(source, f"{stage}.num_workers", "is the number of loader processes (>= 0; 0 = none)")
        _non_negative(cfg, ("weight_decay", "warmup_epochs", "max_steps"), stage, source)
        if cfg.mixup < 0 or (cfg.mixup > 0 and recipe.task != "classify"):
            raise RecipeError(source, f"{stage}.mixup", "is the Beta(a, a) parameter (>= 0) of mixup, for classify only")
        if not (math.isfinite(cfg.cldice) and cfg.cldice >= 0) or (cfg.cldice > 0 and recipe.task != "segment"):
            raise RecipeError(source, f"{stage}.cldice", "is the weight (>= 0) of the soft-clDice term, for segment only")
        _one_of(cfg.precision, PRECISIONS, f"{stage}.precision", source)
        if not (math.isfinite(cfg.ema_epochs) and cfg.ema_epochs >= 0):
            raise RecipeError(source, f"{stage}.ema_epochs", "is the weight average's time constant in epochs "
                              "(> 0), or 0 for none")
    kd = recipe.distill
    _one_of(kd.method, KD_METHODS, "distill.method", source)
    _one_of(kd.teacher_precision, PRECISIONS, "distill.teacher_precision", source)
    if kd.method not in METHODS_FOR_TASK[recipe.task]:
        raise RecipeError(source, "distill.method", f"'{kd.method}' does not apply to task '{recipe.task}' "
                          f"(use one of {', '.join(METHODS_FOR_TASK[recipe.task])})")
    if kd.mixup > 0 and kd.method == "dkd":
        raise RecipeError(source, "distill.mixup", "DKD splits the teacher at the one true class, which a mixed "
                          "image does not have; use method 'hinton' with mixup")
    if kd.temperature <= 0:
        raise RecipeError(source, "distill.temperature", "should be positive")
    if kd.temperature < 1 and not kd.allow_sharpening:
        raise RecipeError(source, "distill.temperature", "a temperature below 1 sharpens the teacher instead of "
                          "softening it; set distill.allow_sharpening = true if that is what you want")
    if not 0.0 <= kd.alpha <= 1.0:
        raise RecipeError(source, "distill.alpha", "should be between 0 and 1")
    _non_negative(kd, ("kd_rampup_epochs", "dkd_alpha", "dkd_beta", "feature_weight"), "distill", source)
    if kd.kd_rampup_epochs > 0 and kd.method not in ("pixel", "cwd", "none"):  # none: the recipe's no-KD twin
        raise RecipeError(source, "distill.kd_rampup_epochs", f"applies to methods pixel and cwd, not '{kd.method}'")
    _one_of(recipe.export.weights, WEIGHTS, "export.weights", source)
    recipe.export.check_postprocess(recipe.task, source)
    _check_without_bf16(recipe, source)
    if recipe.data.channels not in (1, 3):
        raise RecipeError(source, "data.channels", "should be 1 or 3")
    if not 0.0 < recipe.data.val_fraction < 1.0:
        raise RecipeError(source, "data.val_fraction", "should be between 0 and 1")
    _check_architectures(recipe, source)


def _check_without_bf16(recipe: Recipe, source: Path | None) -> None:
    """[without_bf16] holds `train` / `distill` tables whose keys, in place of the stage's, make a valid recipe."""
    applied = recipe
    for stage, table in recipe.without_bf16.items():
        if stage not in STAGES:
            raise RecipeError(source, f"without_bf16.{stage}", f"unknown table; known: {', '.join(STAGES)}")
        if not isinstance(table, dict):
            raise RecipeError(source, f"without_bf16.{stage}", f"should be a table, got {_tname(table)}")
        applied = apply_without_bf16(applied, stage)
    if applied is not recipe:
        try:
            _check_choices(dataclasses.replace(applied, without_bf16={}), source)
        except RecipeError as exc:  # name the table's key where the value came from there
            stage, _, name = (exc.key or "").partition(".")
            key = f"without_bf16.{exc.key}" if name in recipe.without_bf16.get(stage, {}) else exc.key
            raise RecipeError(source, key, exc.reason) from None


def _check_architectures(recipe: Recipe, source: Path | None) -> None:
    try:
        from kdviewer.distill.nets import list_models
    except ImportError:  # the registry is not importable (torch missing): create_model will say so later
        return
    known = list_models()
    for key in ("teacher_net", "student_net"):
        arch = getattr(recipe, key).arch
        if arch not in known:
            close = difflib.get_close_matches(arch, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RecipeError(source, f"{key}.arch", f"unknown architecture '{arch}'{hint}; "
                              f"known: {', '.join(known)}")
