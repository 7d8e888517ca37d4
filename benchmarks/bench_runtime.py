"""Runtime benchmark (issue 4): model latency against its teacher, whole-volume CT segmentation, a fundus.

    .venv/bin/python benchmarks/bench_runtime.py [--include-untrained] [--threads 2] [--repeats 15]

1. Every model of the registry (``models/`` and the user's folder, or ``--models-dir``): median latency of
   one onnxruntime run on its card's input shape (batch 1) with ``--threads`` threads, its teacher's (the
   card's ``teacher`` id; for a no-KD baseline, the registry's teacher of the same recipe) measured in the same
   rounds, the ratio teacher/student, parameters and file size.
2. The 119×512×512 IRCAD CT through `segment_volume` with a liver student, each run in a fresh interpreter:
   wall time (goal ≤ 10 s) and peak RSS above the loaded volume; baseline in the same run: a bare
   onnxruntime loop over the same slices with the preprocessing done inline in numpy.
3. A 565×584 fundus (DRIVE training image 21) through `segment_volume` with a vessel student, warm
   session: latency (goal ≤ 150 ms) against a bare onnxruntime call with inline numpy preprocessing.

``--include-untrained`` adds, per recipe in resources/recipes, an untrained teacher and student built with
`kdviewer.distill.nets` and exported with torch.onnx (in a child process, so torch never shares this one),
with minimal cards in a temporary folder: their numbers are latencies only, their outputs mean nothing.
Prints tables with goals and PASS/MISS; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _common import (
    REPO,
    SHARED_DATASETS,
    load_average,
    median_iqr,
    print_table,
    run_fresh_timed_peak,
    run_python,
)

CT_DIR = SHARED_DATASETS / "ircadb-liver17" / "dicom"
CT_SHAPE_YX = (512, 512)  # its in-plane size; the bare loop block-averages it to the model input
FUNDUS_DRIVE = SHARED_DATASETS / "drive" / "training" / "images" / "21_training.tif"
FUNDUS_SAMPLE = REPO / "resources" / "samples" / "fundus" / "retina.jpg"
FUNDUS_HW = (584, 565)  # DRIVE's (rows, columns)
RECIPES_DIR = REPO / "resources" / "recipes"
STAND_IN = "untrained stand-in (latency only)"

GOAL_VOLUME_S = 10.0
GOAL_FUNDUS_MS = 150.0
CHUNK_SLICES = 4  # segment_volume's default; the bare loop uses the same batch


# -- untrained stand-ins (run in a child: imports torch) ---------------------------------------------------

def _label_names(recipe, cfg) -> tuple[str, ...]:
    """The class / mask names the exporter would put in the card (the data set's), or two placeholders."""
    from kdviewer.distill.data import SIMULATED_CLASSES
    from kdviewer.study.datasets import open_dataset

    if recipe.task not in ("classify", "segment"):
        return ()
    if cfg.simulate:
        return tuple(SIMULATED_CLASSES)
    try:
        ds = open_dataset(cfg.path, cfg.layout, recipe.task)
        names = ds.class_names if recipe.task == "classify" else ds.mask_names
    except Exception:  # noqa: BLE001 - a missing data set only costs the real label names
        names = ()
    return tuple(names) or ("background", "foreground")


def build_stand_ins(out_dir: str) -> dict:
    """Export an untrained teacher and student per recipe into `out_dir` with minimal valid cards.

    The nets, input size, channels and preprocessing are the recipe's, exactly as `net_spec` and the
    exporter make them (TorchScript exporter, the recipe's opset, dynamic batch). Returns the versions used.
    """
    import warnings

    import onnx
    import torch

    from kdviewer.distill.data_config import DataConfig
    from kdviewer.distill.export import fp16_initializers_with_cast
    from kdviewer.distill.nets import count_parameters
    from kdviewer.distill.recipe import load_recipe
    from kdviewer.distill.trainer_models import build_net, net_spec
    from kdviewer.modelcard import ModelCard, save_card, sha256_file

    torch.manual_seed(0)
    torch.set_num_threads(2)
    out = Path(out_dir)
    for path in sorted(RECIPES_DIR.glob("*.toml")):
        recipe = load_recipe(path)
        cfg = DataConfig.from_dict(recipe.data.table(), recipe.task, recipe.recipe_dir)
        names = _label_names(recipe, cfg)
        meta = {"in_channels": cfg.in_channels, "class_names": list(names),
                "input_size": list(cfg.model_input_size), "scale": cfg.scale}
        for role, net in (("teacher", recipe.teacher_net), ("student", recipe.student_net)):
            spec = net_spec(net, recipe, meta)
            model = build_net(spec).eval()
            model_id = f"{recipe.name}-{role}-untrained"
            onnx_path = out / f"{model_id}.onnx"
            x = torch.randn(1, spec["in_channels"], *spec["input_size"])
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(onnx_path), opset_version=recipe.export.opset,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
            if recipe.export.weights == "float16":
                proto = onnx.load(str(onnx_path))
                fp16_initializers_with_cast(proto)
                onnx.save(proto, str(onnx_path))
            output: dict = {"kind": "logits", "labels": list(names)} if names else {"kind": "image"}
            if recipe.task == "super_resolve":
                output["scale"] = cfg.scale
            card = ModelCard(
                id=model_id, task=recipe.task, role=role,
                teacher=f"{recipe.name}-teacher-untrained" if role == "student" else None,
                architecture={"name": spec["name"], **spec["kwargs"], "parameters": count_parameters(model)},
                file={"name": onnx_path.name, "sha256": sha256_file(onnx_path),
                      "bytes": onnx_path.stat().st_size, "weights": recipe.export.weights},
                input={"shape": [None, spec["in_channels"], *spec["input_size"]],
                       "modalities": list(recipe.modalities), "spacing_mm": None,
                       "preprocess": cfg.preprocess, "slices": recipe.data.slices},
                output=output, postprocess={"argmax": True} if recipe.task == "segment" else {},
                training={"recipe": recipe.name, "note": STAND_IN}, limits=(STAND_IN,))
            save_card(card, onnx_path.with_suffix(".json"))
    return {"torch": torch.__version__, "onnx": onnx.__version__}


STAND_INS_CHILD = """
import json, sys
sys.path.insert(0, "benchmarks")
from bench_runtime import build_stand_ins
print("@@RESULT " + json.dumps(build_stand_ins(sys.argv[1])), flush=True)
"""


# -- 1: latency of every model, its teacher in the same rounds ------------------------------------------

def measure_latency(models: list, threads: int, repeats: int, budget_s: float) -> dict[str, list[float]]:
    """{model id: [ms per run]}: batch-1 runs of every model in round-robin (so a student and its teacher see
    the same load), after two warm-up runs each; stops after `repeats` rounds, or after `budget_s` seconds
    once 5 rounds are done."""
    from kdviewer.runtime.session import make_runner

    rng = np.random.default_rng(0)
    runners = {}
    for m in models:
        c, (h, w) = m.channels, m.input_hw
        x = rng.standard_normal((1, c, h, w)).astype(np.float32)
        run = make_runner(m, threads)
        for _ in range(2):
            run(x)
        runners[m.id] = (run, x)
    times: dict[str, list[float]] = {m.id: [] for m in models}
    t_start = time.perf_counter()
    for r in range(repeats):
        if r >= 5 and time.perf_counter() - t_start > budget_s:
            break
        for model_id, (run, x) in runners.items():
            t0 = time.perf_counter()
            run(x)
            times[model_id].append((time.perf_counter() - t0) * 1000.0)
    return times


def _recipe_name(model) -> str | None:
    """The name of the recipe a model was trained with (from its card's recipe text), None if unreadable."""
    try:
        return tomllib.loads(str(model.card.training.get("recipe") or "")).get("name")
    except (tomllib.TOMLDecodeError, AttributeError):
        return None


def teacher_of(model, scan) -> str | None:
    """The teacher to time a model against: the one its card names (KD students), else, for a no-KD
    baseline, the registry's teacher trained with the same recipe (the teacher its twin learnt from)."""
    if model.card.teacher or model.role != "baseline":
        return model.card.teacher
    name = _recipe_name(model)
    found = [m.id for m in scan.models if m.role == "teacher" and name and _recipe_name(m) == name]
    return found[0] if len(found) == 1 else None


def latency_rows(scan, times: dict[str, list[float]]) -> list[list[str]]:
    """One row per model: its numbers, then its teacher's and the ratio when it has one (`teacher_of`)."""
    rows = []
    for m in scan.models:
        mid, iqr = median_iqr(times[m.id])
        params = m.card.architecture.get("parameters")
        size = m.onnx_path.stat().st_size
        weights = m.card.file.get("weights", "float32")
        teacher, ratio = "", ""
        teacher_id = teacher_of(m, scan)
        if teacher_id:
            if teacher_id in times:
                t_mid, t_iqr = median_iqr(times[teacher_id])
                teacher = f"{teacher_id}: {t_mid:.1f} ms (IQR {t_iqr:.1f})"
                ratio = f"{t_mid / mid:.1f}×"
            else:
                teacher = f"{teacher_id}: not in the registry"
        shape = "×".join(str(d) for d in (1, m.channels, *m.input_hw))
        rows.append([m.id, STAND_IN if is_stand_in(m) else m.origin, f"{m.task} {m.role}",
                     m.card.architecture["name"], shape, f"{params / 1e6:.2f} M" if params else "?",
                     f"{size / 2**20:.2f} MiB" + ("" if weights == "float32" else f" ({weights})"),
                     f"{mid:.1f} ms (IQR {iqr:.1f}, n={len(times[m.id])})", teacher, ratio])
    return rows


def plain_layout_note(models: list, threads: int) -> str:
    """Which models the runtime runs without onnxruntime's NCHWc rewrite on this machine (it times both plans
    of a small model at load and keeps the faster: `kdviewer.runtime.session.load_session`)."""
    from kdviewer.runtime.session import layout_of

    plain = [m.id for m in models if layout_of(m, threads) == "plain"]
    return ("\nConvolution layout chosen at load: every model blocked (onnxruntime's NCHWc rewrite)." if not plain
            else "\nConvolution layout chosen at load: plain (no NCHWc rewrite, faster here) for "
            + ", ".join(plain) + "; blocked for the rest.")


# -- 2: whole-volume segmentation, each run in a fresh interpreter -----------------------------------------

# What both children report besides time and memory (an expression evaluated in the child).
VOLUME_REPORT = ('{"shape": list(volume.shape), "nbytes": volume.array.nbytes, '
                 '"foreground": int((labels > 0).sum())}')

# argv: CT folder, card path, threads, chunk. Setup (untimed): imports, the volume loaded, the card read.
KDVIEWER_VOLUME = dict(
    setup="""
        import sys
        from kdviewer.runtime import load_model, segment_volume
        from kdviewer.study import load_volume
        volume = load_volume(sys.argv[1])
        model = load_model(sys.argv[2])
    """,
    timed="""
        result = segment_volume(model, volume, threads=int(sys.argv[3]), chunk_slices=int(sys.argv[4]))
        labels = result.labels.array
    """,
    report=VOLUME_REPORT,
)

# The least a script must do for the same result: an onnxruntime session with the same options, and per
# chunk of slices the card's preprocessing inline (block mean to the model size, HU window to [0, 1]),
# argmax, labels repeated back to 512², in a preallocated uint8 volume.
BARE_VOLUME = dict(
    setup="""
        import json, sys
        from pathlib import Path
        import numpy as np
        import onnxruntime as ort
        from kdviewer.study import load_volume
        volume = load_volume(sys.argv[1])
        card = json.loads(Path(sys.argv[2]).read_text())
        onnx_path = str(Path(sys.argv[2]).parent / card["file"]["name"])
    """,
    timed="""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(sys.argv[3]), 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        center, width = card["input"]["preprocess"]["window"]
        _, _, h, w = card["input"]["shape"]
        arr = volume.array
        nz, ny, nx = arr.shape
        fy, fx = ny // h, nx // w
        chunk = int(sys.argv[4])
        labels = np.empty(arr.shape, np.uint8)
        for z in range(0, nz, chunk):
            x = arr[z:z + chunk].reshape(-1, h, fy, w, fx).mean(axis=(2, 4), dtype=np.float32)
            x = np.clip((x - np.float32(center - width / 2)) / np.float32(width), 0, 1)[:, None]
            lab = session.run(None, {name: x})[0].argmax(axis=1).astype(np.uint8)
            labels[z:z + chunk] = lab.repeat(fy, axis=1).repeat(fx, axis=2)
    """,
    report=VOLUME_REPORT,
)


def bare_volume_supported(model, shape_yx: tuple[int, int]) -> str | None:
    """Why the bare loop cannot mirror this card (None: it can): it does a HU window, integer downsampling."""
    h, w = model.input_hw
    prep = model.preprocess
    if prep.get("normalize") != "window" or model.slices != 1 or model.channels != 1 or model.spacing_mm:
        return "the bare loop mirrors only 1-channel 2-D cards with a HU window and no spacing"
    if shape_yx[0] % h or shape_yx[1] % w or shape_yx[0] // h != shape_yx[1] // w:
        return f"the bare loop needs an integer downsampling factor from {shape_yx} to {(h, w)}"
    return None


def measure_volume(model, threads: int, repeats: int) -> dict[str, list[dict]]:
    """{"kdviewer"|"bare": [child results]}, alternating which goes first."""
    runs: dict[str, list[dict]] = {"kdviewer": [], "bare": []}
    pair = [("kdviewer", KDVIEWER_VOLUME), ("bare", BARE_VOLUME)]
    for r in range(repeats):
        for who, child in pair if r % 2 == 0 else reversed(pair):
            runs[who].append(run_fresh_timed_peak(child["setup"], child["timed"], str(CT_DIR),
                                                  str(model.card_path), str(threads), str(CHUNK_SLICES),
                                                  report=child["report"]))
    return runs


# -- 3: one fundus, warm session --------------------------------------------------------------------------

def load_fundus() -> tuple[np.ndarray, str]:
    """(584, 565, 3) uint8 RGB: DRIVE training image 21, else the sample retina.jpg resized to it."""
    from kdviewer.imaging.resample import resize_2d
    from kdviewer.study import load_volume

    if FUNDUS_DRIVE.is_file():
        return load_volume(FUNDUS_DRIVE).array[0], "DRIVE 21_training.tif"
    rgb = resize_2d(load_volume(FUNDUS_SAMPLE).array[0], FUNDUS_HW, order=1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "retina.jpg resized"


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of `n_out` pixels in a nearest resize from `n_in` pixels (centres aligned)."""
    return ((np.arange(n_out) + 0.5) * n_in / n_out).astype(int)


def _bare_session(model, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model.onnx_path), opts, providers=["CPUExecutionProvider"])


def measure_fundus(model, rgb: np.ndarray, threads: int, repeats: int) -> dict[str, list[float]]:
    """{"kdviewer"|"bare"|"run only": [ms]}: segment_volume on the (H, W, 3) image against a bare onnxruntime
    call with the card's preprocessing inline (luminance, nearest resize, normalisation, argmax, resize back);
    "run only" is the session.run of the bare call alone. Sessions warm; the three alternate."""
    from kdviewer.runtime import segment_volume

    session = _bare_session(model, threads)
    name = session.get_inputs()[0].name
    prep = model.preprocess
    h, w = model.input_hw
    ny, nx = rgb.shape[:2]
    rows_in, cols_in = _nearest_index(ny, h), _nearest_index(nx, w)
    rows_out, cols_out = _nearest_index(h, ny), _nearest_index(w, nx)
    luma = np.array([0.299, 0.587, 0.114], np.float32)

    def bare() -> tuple[np.ndarray, np.ndarray]:
        x = (rgb[rows_in][:, cols_in].astype(np.float32) @ luma)
        mode = prep.get("normalize")
        if mode == "zscore":
            x = (x - x.mean()) / max(float(x.std()), 1e-8)
        elif mode == "minmax":
            x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
        elif mode == "window":
            c, wd = prep["window"]
            x = np.clip((x - (c - wd / 2)) / wd, 0, 1)
        x = np.ascontiguousarray(x[None, None], dtype=np.float32)
        lab = session.run(None, {name: x})[0][0].argmax(axis=0).astype(np.uint8)
        return lab[rows_out][:, cols_out], x

    x = bare()[1]
    segment_volume(model, rgb, threads=threads)  # warm-up: session made and cached, first-call costs paid
    times: dict[str, list[float]] = {"kdviewer": [], "bare": [], "run only": []}
    steps = {"kdviewer": lambda: segment_volume(model, rgb, threads=threads), "bare": bare,
             "run only": lambda: session.run(None, {name: x})}
    order = list(steps)
    for r in range(repeats):
        for who in order[r % 3:] + order[:r % 3]:
            t0 = time.perf_counter()
            steps[who]()
            times[who].append((time.perf_counter() - t0) * 1000.0)
    return times


# -- choosing models and reporting -----------------------------------------------------------------------

def is_stand_in(model) -> bool:
    """True for the untrained models `build_stand_ins` made (their card says so in its limits)."""
    return STAND_IN in model.card.limits


def pick_segmenter(scan, word: str):
    """The segmentation student for `word` ("liver", "vessel"): a label or id naming it; shipped and user
    models before stand-ins, students before teachers. None when there is none."""
    found = [m for m in scan.models if m.task == "segment"
             and (any(word in label.lower() for label in m.labels) or word in m.id.lower())]
    found.sort(key=lambda m: (is_stand_in(m), m.role != "student"))
    return found[0] if found else None


def _ms(samples: list[float]) -> str:
    mid, iqr = median_iqr(samples)
    return f"{mid:.0f} ms (IQR {iqr:.0f})"


def _s(samples: list[float]) -> str:
    mid, iqr = median_iqr(samples)
    return f"{mid:.2f} s (IQR {iqr:.2f})"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _label(model) -> str:
    return f"{model.id} ({STAND_IN if is_stand_in(model) else model.origin})"


def versions(extra: dict) -> str:
    import onnxruntime
    import skimage

    found = {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
             "scikit-image": skimage.__version__, **extra}
    return ", ".join(f"{k} {v}" for k, v in found.items())


NOTES = """
How each figure is measured:
  1  kdviewer's make_runner (the cached get_session, --threads intra-op threads, graph optimisation on) on
     one random (1, C, H, W) float32 input of the card's shape; two warm-up runs each, then all models in
     round-robin so each student and its teacher share the same load. Ratio = teacher median / student median.
     Parameters from the card (torch count, BN statistics excluded); size of the .onnx file.
  2  each run in a fresh interpreter: setup (imports, load_volume, card read) untimed; timed: segment_volume
     (session creation included: the first run of a model in the viewer) vs the bare loop (session creation,
     chunks of 4 slices, 2x2 block mean to 256², HU window, argmax, labels repeated back to 512²). Peak RSS:
     the kernel's VmHWM reset after the setup, minus RSS after the setup (so the volume itself is excluded).
  3  warm sessions, the same (584, 565, 3) uint8 RGB in memory: segment_volume (Volume wrap, luminance,
     anti-aliased resize to the card's 512², z-score, run, softmax, argmax, nearest back to 584×565, mL) vs a
     bare call (nearest-index resize, luminance, z-score, run, argmax, nearest back); "run only": onnxruntime.
"""


def print_volume(scan, args: argparse.Namespace) -> None:
    """Part 2: run `measure_volume` with the liver student and print its table."""
    print(f"\n## 2. Whole-volume segmentation: IRCAD CT {CT_DIR.relative_to(SHARED_DATASETS.parent)}, "
          f"{args.volume_repeats} fresh-process runs each\n")
    liver = pick_segmenter(scan, "liver")
    why_not = bare_volume_supported(liver, CT_SHAPE_YX) if liver else "no liver segmentation model"
    if liver is None or why_not:
        print(f"skipped: {why_not}")
        return
    vol = measure_volume(liver, args.threads, args.volume_repeats)
    kd, bare = (median_iqr([x["seconds"] for x in vol[w]])[0] for w in ("kdviewer", "bare"))
    first = vol["kdviewer"][0]
    nz, volume_mib = first["shape"][0], first["nbytes"] / 2**20
    kd_mem, bare_mem = (median_iqr([(x["rss_peak"] - x["rss_floor"]) / 2**20 for x in vol[w]])[0]
                        for w in ("kdviewer", "bare"))
    print(f"model {_label(liver)}, input {liver.input_hw}, volume {tuple(first['shape'])} int16 "
          f"{volume_mib:.0f} MiB; foreground voxels kdviewer {first['foreground']:,}, "
          f"bare {vol['bare'][0]['foreground']:,}\n")
    print_table(["benchmark", "kdviewer", "bare onnxruntime (same run)", "kdviewer/bare", "goal", "result"], [
        ["wall time, session creation included", _s([x["seconds"] for x in vol["kdviewer"]]),
         _s([x["seconds"] for x in vol["bare"]]), f"{kd / bare:.2f}×", f"≤ {GOAL_VOLUME_S:.0f} s",
         _verdict(kd <= GOAL_VOLUME_S)],
        ["per slice", f"{kd / nz * 1000:.0f} ms", f"{bare / nz * 1000:.0f} ms", "", "(info)", ""],
        ["peak RSS above the loaded volume", f"{kd_mem:.0f} MiB ({kd_mem / volume_mib:.2f}× volume)",
         f"{bare_mem:.0f} MiB ({bare_mem / volume_mib:.2f}× volume)", f"{kd_mem / bare_mem:.2f}×",
         "(info)", ""],
    ])


def print_fundus(scan, args: argparse.Namespace) -> None:
    """Part 3: run `measure_fundus` with the vessel student and print its table."""
    print(f"\n## 3. Fundus 565×584, warm session, median over {args.repeats} runs\n")
    vessel = pick_segmenter(scan, "vessel")
    if vessel is None:
        print("skipped: no vessel segmentation model")
        return
    rgb, source = load_fundus()
    fundus = measure_fundus(vessel, rgb, args.threads, args.repeats)
    kd, bare = median_iqr(fundus["kdviewer"])[0], median_iqr(fundus["bare"])[0]
    print(f"model {_label(vessel)}, input {vessel.input_hw} (whole image resized, as the card says), "
          f"image {source} {rgb.shape} {rgb.dtype}\n")
    print_table(["benchmark", "kdviewer", "bare onnxruntime (same run)", "kdviewer/bare", "goal", "result"], [
        ["segment_volume on one fundus", _ms(fundus["kdviewer"]), _ms(fundus["bare"]), f"{kd / bare:.2f}×",
         f"≤ {GOAL_FUNDUS_MS:.0f} ms", _verdict(kd <= GOAL_FUNDUS_MS)],
        ["  session.run alone", "", _ms(fundus["run only"]), "", "(info)", ""],
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", action="append", type=Path,
                        help="model folder to scan (repeatable; default: the repository's models/ and the "
                             "user's)")
    parser.add_argument("--include-untrained", action="store_true",
                        help="add an untrained teacher and student per recipe (latency only)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=15, help="rounds of part 1 and runs of part 3")
    parser.add_argument("--latency-budget-s", type=float, default=90.0,
                        help="stop part 1's rounds after this long (at least 5 rounds)")
    parser.add_argument("--volume-repeats", type=int, default=3,
                        help="fresh-process runs of part 2, each side")
    args = parser.parse_args(argv)

    from kdviewer.runtime import scan_models
    from kdviewer.runtime.registry import model_dirs

    print(f"kdviewer runtime benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, onnxruntime threads {args.threads}")
    print(f"Load average before: {load_average()}.")
    dirs = [(d, "given") for d in args.models_dir] if args.models_dir else model_dirs()
    with tempfile.TemporaryDirectory(prefix="kdviewer-bench-runtime-") as tmp:
        extra = {}
        if args.include_untrained:
            t0 = time.perf_counter()
            extra = run_python(STAND_INS_CHILD, tmp)
            extra.pop("spawned_at")
            print(f"Built untrained stand-ins from {len(list(RECIPES_DIR.glob('*.toml')))} recipes in "
                  f"{time.perf_counter() - t0:.0f} s (a child process; torch never loaded here).")
            dirs = [*dirs, (Path(tmp), "stand-in")]
        print(versions(extra))
        scan = scan_models(dirs)
        print("Model folders: " + "; ".join(f"{d} ({o})" for d, o in dirs) + f"; {len(scan.models)} models, "
              f"{len(scan.refused)} refused" + "".join(f"\n  refused {p}: {why}" for p, why in scan.refused))
        if not scan.models:
            print("No models: ship some in models/ or run with --include-untrained.")
            return 1

        print(f"\n## 1. Latency per model: batch 1, {args.threads} threads, median over the rounds\n")
        times = measure_latency(list(scan.models), args.threads, args.repeats, args.latency_budget_s)
        print_table(["model", "kind", "task", "architecture", "input", "parameters", "file", "latency",
                     "teacher (same rounds)", "teacher/student"], latency_rows(scan, times))
        print(plain_layout_note(scan.models, args.threads))

        print_volume(scan, args)
        print_fundus(scan, args)
    print(f"\nLoad average after: {load_average()} (on {os.cpu_count()} CPUs; above that, other work "
          "shares them).")
    print(NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
