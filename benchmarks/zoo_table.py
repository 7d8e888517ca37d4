"""Model-zoo table: one row per model of one task, every number measured in the same run (docs/MODEL_ZOO.md).

    .venv/bin/python benchmarks/zoo_table.py --data ../shared/datasets/breastmnist --split val \\
        teacher=runs/breast-teacher/breast-us-teacher.onnx kd=runs/breast-student/breast-us-student.onnx \\
        nokd=runs/breast-baseline/breast-us-baseline.onnx int8=runs/breast-student/breast-us-student-int8.onnx \\
        [--threads 2] [--rounds 7] [--layout auto] [--limit N] [--markdown]

Each LABEL=MODEL is an ``.onnx`` with its card ``.json`` beside it (or the card, or a registry id), loaded
with `kdviewer.runtime.resolve_model`, so the card is checked against the schema and the file against
the card's sha256. Per model:

- parameters (the card's ``architecture.parameters``), the teacher/model parameter ratio, the file size (MB);
- latency: median ms of batch-1 onnxruntime runs (kdviewer's `make_runner`, ``--threads`` intra-op threads)
  on a random input of the card's shape; ``--rounds`` rounds, each timing every model in turn (the order
  rotated every round) so load from other jobs hits all of them alike; speed-up = teacher median / its
  median. The teacher is the row labelled ``teacher``, else the row whose card id the others name as
  ``teacher``;
- the task's metrics from `kdviewer.runtime.evaluate` on DATA / ``--split`` (exactly what
  ``kdviewer evaluate MODEL DATA --split S`` reports; every model scores the same items): classification
  AUC, accuracy, balanced accuracy, macro F1; segmentation Dice, pixel AUC; restoration PSNR, SSIM and the
  degraded input's PSNR. Each model is evaluated once (deterministic); only the latency is repeated;
- with rows ``teacher``, ``kd`` and ``nokd``: the share of the teacher - no-KD gap on the primary metric
  (AUC, Dice, PSNR) that each other row closes, (row - nokd) / (teacher - nokd); "n/a" when the teacher
  is not above the no-KD student.

``--markdown`` prints only a GitHub table (and one line saying how it was measured), ready to paste.
Errors (a missing file, a bad card, data that does not fit) print one line and exit with code 2.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import load_average, median_iqr, print_table

# task -> [(result key, column title)]; the first is the primary metric (the KD gap is measured on it).
METRICS: dict[str, list[tuple[str, str]]] = {
    "classify": [("auc", "AUC"), ("accuracy", "accuracy"), ("balanced_accuracy", "bal. accuracy"),
                 ("f1", "macro F1")],
    "segment": [("dice", "Dice"), ("auc", "pixel AUC")],
    "restore": [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("psnr_input", "input PSNR (dB)")],
}
TARGET_S_PER_ROUND = 0.2  # each model runs about this long per round (at least one run): medians of many runs
MAX_RUNS_PER_ROUND = 200
WARM_UP_RUNS = 2


class ZooError(Exception):
    """A problem the user can fix (bad argument, file, card or data): one line, exit code 2."""


@dataclass
class Row:
    """One model of the table and what was measured of it."""

    label: str
    model: Any  # kdviewer.runtime.Model
    metrics: dict[str, Any] = field(default_factory=dict)
    eval_s: float = 0.0
    times_ms: list[float] = field(default_factory=list)


def task_group(task: str) -> str:
    """classify | segment | restore (denoise and super_resolve are scored alike)."""
    return task if task in ("classify", "segment") else "restore"


def parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    """[(label, model)] from LABEL=MODEL arguments; labels must be unique and non-empty."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        label, sep, model = pair.partition("=")
        if not sep or not label.strip() or not model.strip():
            raise ZooError(f"expected LABEL=MODEL (e.g. teacher=runs/x/model.onnx), got {pair!r}")
        if label in {lab for lab, _ in out}:
            raise ZooError(f"label {label!r} given twice")
        out.append((label.strip(), model.strip()))
    if not out:
        raise ZooError("no models given: pass LABEL=MODEL arguments")
    return out


def load_rows(pairs: list[tuple[str, str]]) -> list[Row]:
    """Load every model with the runtime's own loader (card schema and sha256 checked); one task for all."""
    from kdviewer.runtime import resolve_model

    rows = []
    for label, name in pairs:
        p = Path(name)
        if p.suffix.lower() in (".onnx", ".json") and not p.exists():
            raise ZooError(f"{label}: no such file {p}")
        rows.append(Row(label, resolve_model(name)))
    groups = {task_group(r.model.task) for r in rows}
    if len(groups) > 1:
        raise ZooError("the models are of different tasks: "
                       + ", ".join(f"{r.label} {r.model.task}" for r in rows))
    return rows


def find_teacher(rows: list[Row]) -> Row | None:
    """The row labelled "teacher", else the first row whose card id another row's card names as its teacher."""
    for r in rows:
        if r.label == "teacher":
            return r
    named = [r.model.card.teacher for r in rows if r.model.card.teacher]
    for teacher_id in named:
        for r in rows:
            if r.model.id == teacher_id:
                return r
    return None


def evaluate_rows(rows: list[Row], data: str, split: str | None, layout: str, threads: int,
                  limit: int | None) -> tuple[str, str, int]:
    """Score every model on the same items, as `evaluate_model` does; returns (data path, split, items)."""
    from kdviewer.runtime.evaluate import dataset_items, evaluate_items, result_head, summarise_records
    from kdviewer.study.datasets import DatasetLayoutError

    try:
        ds, name, items = dataset_items(data, rows[0].model.task, split, layout=layout, limit=limit)
    except DatasetLayoutError as exc:
        if split is not None and f"no split {split!r}" in str(exc):
            raise ZooError(f"{exc} (the recipe made its own validation split of this data; kdviewer evaluate "
                           "scores only a split the data itself holds)") from exc
        raise
    for r in rows:
        print(f"evaluating {r.label} ({r.model.id}) on {len(items)} items ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        records = list(evaluate_items(r.model, items, threads))
        r.metrics = {**result_head(r.model, ds, name), **summarise_records(r.model, records)}
        r.eval_s = time.perf_counter() - t0
    return str(ds.path), name, len(items)


def measure_latency(rows: list[Row], threads: int, rounds: int) -> None:
    """Fill each row's times_ms: after warm-up, `rounds` rounds timing every model in turn (order rotated)."""
    from kdviewer.runtime.session import make_runner

    rng = np.random.default_rng(0)
    runners = []
    for r in rows:
        (h, w), c = r.model.input_hw, r.model.channels
        x = rng.standard_normal((1, c, h, w)).astype(np.float32)
        run = make_runner(r.model, threads)
        warm = []
        for _ in range(WARM_UP_RUNS + 2):  # the fastest of the last runs sets how many runs a round gets
            t0 = time.perf_counter()
            run(x)
            warm.append(time.perf_counter() - t0)
        one = max(min(warm[WARM_UP_RUNS:]), 1e-6)
        runners.append((r, run, x, int(min(MAX_RUNS_PER_ROUND, max(1, math.ceil(TARGET_S_PER_ROUND / one))))))
    for k in range(rounds):
        for r, run, x, n in runners[k % len(runners):] + runners[:k % len(runners)]:
            for _ in range(n):
                t0 = time.perf_counter()
                run(x)
                r.times_ms.append((time.perf_counter() - t0) * 1000.0)


def _num(v: Any, digits: int = 4) -> str:
    return "nan" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def gap_closed(rows: list[Row], teacher: Row | None, key: str) -> dict[str, str]:
    """label -> share of the teacher - no-KD gap closed on `key`, for every row but the teacher and no-KD."""
    by_label = {r.label: r for r in rows}
    if teacher is None or "kd" not in by_label or "nokd" not in by_label:
        return {}
    t, base = teacher.metrics.get(key), by_label["nokd"].metrics.get(key)
    out = {}
    for r in rows:
        if r is teacher or r.label == "nokd":
            continue
        v = r.metrics.get(key)
        if None in (t, base, v) or not all(math.isfinite(float(z)) for z in (t, base, v)) or not t > base:
            out[r.label] = "n/a"
        else:
            out[r.label] = f"{100.0 * (v - base) / (t - base):.0f}%"
    return out


def table(rows: list[Row], teacher: Row | None, markdown: bool) -> tuple[list[str], list[list[str]]]:
    """Headers and cells; `markdown` drops the IQR and the run counts (for the docs)."""
    group = task_group(rows[0].model.task)
    metrics = METRICS[group]
    gaps = gap_closed(rows, teacher, metrics[0][0])
    t_params = teacher.model.card.architecture.get("parameters") if teacher else None
    t_ms = median_iqr(teacher.times_ms)[0] if teacher else None
    headers = ["model", "id", "architecture", "weights", "parameters", "teacher/model params", "file (MB)",
               "latency (ms)", "speed-up", *[title for _, title in metrics]]
    if gaps:
        headers.append(f"KD gap closed ({metrics[0][1]})")
    cells = []
    for r in rows:
        card = r.model.card
        params = card.architecture.get("parameters")
        ms, iqr = median_iqr(r.times_ms)
        latency = f"{ms:.2f}" if markdown else f"{ms:.2f} (IQR {iqr:.2f}, n={len(r.times_ms)})"
        row = [r.label, r.model.id, str(card.architecture.get("name", "?")), str(card.file.get("weights", "float32")),
               f"{params / 1e6:.2f} M" if params else "?",
               f"{t_params / params:.1f}×" if t_params and params else "",
               f"{r.model.onnx_path.stat().st_size / 1e6:.2f}",
               latency, f"{t_ms / ms:.1f}×" if t_ms else "",
               *[_num(r.metrics.get(key), 2 if key.startswith("psnr") else 4) for key, _ in metrics]]
        if gaps:
            row.append(gaps.get(r.label, "—"))
        cells.append(row)
    return headers, cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL",
                        help="an .onnx with its card beside it (or the card, or a registry id); labels teacher, "
                             "kd and nokd give the speed-up reference and the KD gap")
    parser.add_argument("--data", required=True, help="labelled data set (any layout kdviewer reads)")
    parser.add_argument("--split", help="the split to score (needed when DATA holds several)")
    parser.add_argument("--layout", default="auto", help="force a layout instead of detecting it")
    parser.add_argument("--limit", type=int, help="score only the first N items (quick checks; not for the docs)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="latency rounds over all models (default 7)")
    parser.add_argument("--markdown", action="store_true", help="print only a GitHub table, ready to paste")
    args = parser.parse_args(argv)

    from kdviewer.errors import KdviewerError

    try:
        if args.threads < 1 or args.rounds < 1:
            raise ZooError("--threads and --rounds must be at least 1")
        if args.limit is not None and args.limit < 1:
            raise ZooError("--limit must be at least 1")
        rows = load_rows(parse_pairs(args.models))
        teacher = find_teacher(rows)
        t0 = time.perf_counter()
        data, split, n = evaluate_rows(rows, args.data, args.split, args.layout, args.threads, args.limit)
        eval_s = time.perf_counter() - t0
        print(f"timing {len(rows)} models, {args.rounds} rounds ...", file=sys.stderr, flush=True)
        measure_latency(rows, args.threads, args.rounds)
    except (ZooError, KdviewerError, OSError) as exc:
        print(f"zoo_table: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2

    import onnxruntime

    headers, cells = table(rows, teacher, args.markdown)
    measured = (f"{rows[0].model.task} on {data} split {split!r} ({n} items"
                + (f", first {args.limit} only" if args.limit else "") + "); latency: median of batch-1 "
                f"onnxruntime runs on the card's input shape, {args.threads} threads, {args.rounds} rounds "
                f"alternating between the models; speed-up and parameter ratio against "
                f"{teacher.label + ' (' + teacher.model.id + ')' if teacher else 'no teacher (none given)'}; "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                f"onnxruntime {onnxruntime.__version__}, load {load_average()}.")
    if args.markdown:
        print_table(headers, cells)
        print(f"\n*Measured in one run: {measured}*")
        return 0
    print(f"# Model-zoo table ({time.strftime('%Y-%m-%d %H:%M')})\n\n{measured}\n")
    print_table(headers, cells)
    print(f"\nEvaluation: {eval_s:.1f} s for all models ("
          + ", ".join(f"{r.label} {r.eval_s:.1f} s" for r in rows) + "); each model evaluated once.")
    if teacher is None:
        print("No teacher among the rows (label one `teacher`): no speed-up, ratio or KD gap.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
