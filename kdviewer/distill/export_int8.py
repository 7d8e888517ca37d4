"""INT8 export: onnxruntime static quantisation (QDQ, per-channel 7-bit weights) calibrated on training images.

Weights are quantised with a reduced range (7 bits, onnxruntime's ``reduce_range``). On x86-64 CPUs with AVX2 but
without VNNI, onnxruntime's fused u8 x s8 kernels add pairs of products in 16 bits, which saturate with full-range
8-bit weights: measured here, a MobileNetV2 that read accuracy 0.937 where it was checked read 0.750 on such a
CPU with the default graph optimisation, and 0.939 once re-quantised with 7-bit weights (2 x 255 x 63 < 2^15,
so nothing can saturate). onnxruntime's quantisation documentation gives the same advice.

The INT8 model is kept (as `<id>-int8.onnx` with its own card) only if it is faster (batch-1 latency, medians
of alternating runs, with one thread and with two) and every checked validation metric (`one_point`: AUC and
accuracy, Dice, PSNR) is at most one point below the FP32 model's, both as the runtime runs it (full graph
optimisation: fused integer kernels) and in onnxruntime's reference form (basic optimisation: each QDQ pair
computed in float), so that the kernels of the machine that checks it cannot hide an error that another CPU
would show. All numbers go in the FP32 card either way. A graph onnxruntime cannot quantise leaves the FP32
export as it is, with a log line.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from kdviewer.distill.trainer_tasks import TaskAdapter
from kdviewer.modelcard import ModelCard, save_card, sha256_file

CALIBRATION_IMAGES = 64
QUANTIZATION = "static QDQ, per-channel, 7-bit weights (reduce_range), u8 activations, onnxruntime"


def metrics_fallen(scores: dict[str, dict[str, float]], one_point: dict[str, float]) -> list[str]:
    """The checked metrics (those in `one_point`) that fell by more than `one_point[m]` from ``scores["fp32"]``
    in any INT8 scoring (every other key of `scores`), or are not finite there, as "metric (scoring)"."""
    fallen = []
    for name, got in scores.items():
        if name == "fp32":
            continue
        for m, limit in one_point.items():
            if m in scores["fp32"] and not (np.isfinite(got.get(m, np.nan))
                                            and scores["fp32"][m] - got[m] <= limit):
                fallen.append(f"{m} ({name})")
    return fallen


def calibration_set(train_ds: Any) -> Any:
    """The training items as the model sees them at inference: a data set that trains on random patches
    (``data.patch_size``) gives its whole, un-augmented training images instead (the exported model's input is
    the whole image, and calibration must see the activations of that input); others are used as they are."""
    cfg = getattr(train_ds, "cfg", None)
    if cfg is None or not cfg.patch_size:
        return train_ds
    from kdviewer.distill.data import ItemDataset

    return ItemDataset(train_ds.items, cfg, train_ds.task, train=False)


def _calibration_reader(train_ds: Any) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    train_ds = calibration_set(train_ds)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            n = min(CALIBRATION_IMAGES, len(train_ds))
            self._it: Iterator[np.ndarray] = (train_ds[i]["image"][None].numpy() for i in range(n))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {"input": x}

    return Reader()


def _latencies_ms(sessions: dict[str, Any], image: np.ndarray, timer: Callable[[], float],
                  repeats: int = 20) -> dict[str, float]:
    """Median batch-1 latency of each session, in runs alternating between them (a shared machine's load falls
    on all alike)."""
    for s in sessions.values():
        s.run(None, {"input": image})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(repeats):
        for k, s in sessions.items():
            t = timer()
            s.run(None, {"input": image})
            times[k].append((timer() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def _prepare_for_quantisation(onnx_path: Path, prepared: Path) -> None:
    """onnxruntime's pre-processing (constant folding, shape inference) in a child process whose working
    folder is a temporary one: its symbolic shape inference writes scratch files (``sym_shape_infer_temp.onnx``,
    ``<uuid>.data``) into the working folder and leaves them there, and changing this process's own working
    folder would not be safe beside other threads (the viewer's). Symbolic inference gives up on some graphs
    (U-Net resizes): then it is skipped. Raises RuntimeError with the tool's last line when both fail."""
    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "onnxruntime.quantization.preprocess", "--input", str(onnx_path),
                               "--output", str(prepared), *extra], cwd=tmp, capture_output=True, text=True)

    with tempfile.TemporaryDirectory(prefix="kdviewer-int8-") as tmp:
        done = run()
        if done.returncode != 0:
            done = run("--skip_symbolic_shape", "True")
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "no detail").strip().splitlines()
        raise RuntimeError(f"onnxruntime's quantisation pre-processing failed: {lines[-1] if lines else 'no detail'}")


def quantize_and_compare(card: ModelCard, onnx_path: Path, train_ds: Any, val_ds: Any, adapter: TaskAdapter,
                         one_point: dict[str, float], log: Callable[[str], None], *,
                         session: Callable[..., Any], timer: Callable[[], float]) -> Path | None:
    """Quantise `onnx_path`, compare metric and speed with FP32, keep it if the metric holds; returns its path."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    onnx_path = Path(onnx_path).resolve()  # pre-processing runs in another working folder
    int8_path = onnx_path.with_name(onnx_path.stem + "-int8.onnx")
    prepared = onnx_path.with_name(onnx_path.stem + "-prep.onnx")
    try:
        _prepare_for_quantisation(onnx_path, prepared)  # fold constants, infer shapes: as onnxruntime advises
        quantize_static(str(prepared), str(int8_path), _calibration_reader(train_ds), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises bare Exceptions; the FP32 export stands
        int8_path.unlink(missing_ok=True)
        log(f"int8: not made ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
            "the FP32 model is exported")
        return None
    finally:
        prepared.unlink(missing_ok=True)
    loader = DataLoader(val_ds, batch_size=8, shuffle=False)
    sessions = {"fp32": session(onnx_path), "int8": session(int8_path),
                "int8_reference": session(int8_path, optimization="basic")}

    def predictor(sess: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda images: torch.from_numpy(sess.run(None, {"input": images.numpy()})[0])

    metric = adapter.primary
    scores = {k: adapter.evaluate(predictor(s), loader) for k, s in sessions.items()}
    image = val_ds[0]["image"][None].numpy()
    latency = _latencies_ms({k: sessions[k] for k in ("fp32", "int8")}, image, timer)
    latency2 = _latencies_ms({"fp32": session(onnx_path, threads=2), "int8": session(int8_path, threads=2)},
                             image, timer)
    faster = latency["int8"] < latency["fp32"] and latency2["int8"] < latency2["fp32"]
    fallen = metrics_fallen(scores, one_point)
    kept = faster and not fallen
    report = {"metric": metric, "fp32": scores["fp32"][metric], "int8": scores["int8"][metric], "kept": kept,
              "faster": faster, "latency_ms_fp32": latency["fp32"], "latency_ms_int8": latency["int8"], "threads": 1,
              "latency_ms_2_threads": latency2,
              "file": int8_path.name if kept else None, "quantization": QUANTIZATION,
              "checked": sorted(k for k in scores["fp32"] if k in one_point), "fallen": fallen,
              "validation": scores}
    why = ", ".join([*([] if faster else ["slower"]), *(f"{f} fell by more than 1 point" for f in fallen)])
    log(f"int8: {metric} {scores['fp32'][metric]:.4f} -> {scores['int8'][metric]:.4f} "
        f"(reference QDQ {scores['int8_reference'][metric]:.4f}), batch-1 latency "
        f"{latency['fp32']:.2f} -> {latency['int8']:.2f} ms "
        f"(2 threads {latency2['fp32']:.2f} -> {latency2['int8']:.2f}): {'kept' if kept else 'dropped (' + why + ')'}")
    save_card(dataclasses.replace(card, export={**card.export, "int8": report}), onnx_path.with_suffix(".json"))
    if not kept:  # nor an INT8 model (and card) of an earlier export beside it
        int8_path.unlink(missing_ok=True)
        for suffix in (".json", ".md"):
            int8_path.with_suffix(suffix).unlink(missing_ok=True)
        return None
    int8_card = dataclasses.replace(
        card, id=card.id + "-int8",
        file={"name": int8_path.name, "sha256": sha256_file(int8_path), "bytes": int8_path.stat().st_size,
              "weights": "int8"},
        metrics={"validation": {**card.metrics.get("validation", {}), **scores["int8"]}},
        export={**card.export, "int8": report, "quantization": QUANTIZATION},
        limits=(*card.limits, "INT8: " + ", ".join(f"{m} {scores['int8'][m]:.4f} against {scores['fp32'][m]:.4f}"
                                                   for m in report["checked"]) + " in FP32"))
    save_card(int8_card, int8_path.with_suffix(".json"))
    from kdviewer.distill.export import markdown_card

    int8_path.with_suffix(".md").write_text(markdown_card(int8_card), encoding="utf-8")
    return int8_path
