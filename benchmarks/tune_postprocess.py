"""Choose a segmentation model's post-processing (flip averaging, class-1 threshold, smallest kept component, lung
gate) on its TRAINING split, then report the choice on the validation split beside the card's current setting.

    python benchmarks/tune_postprocess.py MODEL --data DATA [--flips none,h,hv] [--thresholds 0.5,0.7]
                                          [--min-diameters 0,3,5] [--lung-gates 0,3,6] [--lung-min-areas 0,5] [--write]

The training split is the model's own (rebuilt from its card's recipe, as `kdviewer evaluate --split train`:
for simulated nodules, training's slices with fixed, validation-style nodules). Each image's probabilities are
computed once per flip setting (`runtime.segment.flip_averaged`: the test-time flips averaged); every
(threshold, min_diameter_mm, lung_gate_mm, lung_gate_min_cm2) choice is then scored with
the runtime's own post-processing (`runtime.segment.probabilities_to_labels` + `postprocess_labels`) and
`kdviewer evaluate`'s per-image Dice (mean over images whose truth or prediction is non-empty, inside the field
of view). The choice with the best training Dice wins (ties: the simpler one, listed first); the validation
numbers are printed, never used to choose. `--write` stores the choice in the model's card (`postprocess`, and the
limit line a lung gate implies, `runtime.segment.postprocess_limits`; the ONNX file and its sha256 are unchanged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdviewer.errors import KdviewerError  # noqa: E402
from kdviewer.imaging.metrics import dice  # noqa: E402
from kdviewer.imaging.resample import resize_2d  # noqa: E402
from kdviewer.runtime.evaluate import dataset_items  # noqa: E402
from kdviewer.runtime.registry import Model, resolve_model  # noqa: E402
from kdviewer.runtime.segment import (  # noqa: E402
    SlicePredictor,
    flip_views,
    postprocess_labels,
    postprocess_limits,
    probabilities_to_labels,
    reads_image,
)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def case_arrays(model: Model, data: str, split: str, threads: int, flips: str | None = None) -> list[tuple[Any, ...]]:
    """(probabilities, truth mask, spacing, field of view, image) of every item of the model's `split`, on the
    masks' grid (the image as the data holds it: HU for CT, what a lung gate reads); flips: the flipped views
    averaged ("" none, "h", "v", "hv"; None: the card's)."""
    _ds, _split, items = dataset_items(data, "segment", split, model=model)
    pred = SlicePredictor(model, threads, flips=flips)
    out = []
    for item in items:
        sample = item.load()
        img = item.load_slices(model.slices) if model.slices > 1 and item.slice_index is not None else sample.image
        probs = pred.probabilities([img], sample.spacing_mm)[0]
        hw = np.asarray(sample.mask).shape
        if probs.shape[1:] != hw:
            probs = np.moveaxis(resize_2d(np.moveaxis(probs, 0, -1), hw, order=1), -1, 0)
        fov = np.ones(hw, bool) if sample.fov is None else np.asarray(sample.fov, bool)
        out.append((probs, np.asarray(sample.mask) > 0, sample.spacing_mm, fov, sample.image))
    return out


def mean_dice(cases: list, postprocess: dict[str, Any]) -> tuple[float, int]:
    """`kdviewer evaluate`'s per-image Dice under `postprocess`, and how many images it averages."""
    scores = []
    for probs, truth, spacing, fov, image in cases:
        labels = probabilities_to_labels(probs[None], postprocess)[0]
        labels = postprocess_labels(labels, postprocess, probs.shape[0], spacing=spacing,
                                    image=image if reads_image(postprocess) else None)
        a, b = (labels > 0) & fov, truth & fov
        if a.any() or b.any():
            scores.append(dice(a, b))
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


KEPT = ("largest_component", "fill_holes", "fov_gate")  # the card's other steps stay as they are


def candidate(threshold: float, min_d: float, current: dict[str, Any], gate: float = 0.0,
              min_lung: float = 0.0, flips: str = "") -> dict[str, Any]:
    """The post-processing to try: flip averaging ("" none), argmax (0.5) or a class-1 threshold, the card's other
    steps, a size floor, a lung gate (`postprocess_labels`' lung_gate_mm; CT in HU only) and its smallest lung
    section (lung_gate_min_cm2, with a gate only)."""
    pp: dict[str, Any] = {"argmax": True} if threshold == 0.5 else {"threshold": threshold}
    pp.update({k: v for k, v in current.items() if k in KEPT})
    if flips:
        pp["flip_average"] = flips
    if min_d > 0:
        pp["min_diameter_mm"] = min_d
    if gate > 0:
        pp["lung_gate_mm"] = gate
        if min_lung > 0:
            pp["lung_gate_min_cm2"] = min_lung
    return pp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .onnx with its card, the card, or a registry id")
    parser.add_argument("--data", required=True, help="the model's training data (its recipe's data.path)")
    parser.add_argument("--flips", default=None,
                        help="flip averages to try, e.g. none,h,hv (default: the card's own only)")
    parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8", help="class-1 thresholds to try (0.5: argmax)")
    parser.add_argument("--min-diameters", default="0,2,3,4,5", help="smallest kept component, mm (0: off)")
    parser.add_argument("--lung-gates", default="0", help="lung gates to try, closing radius in mm (0: off; CT)")
    parser.add_argument("--lung-min-areas", default="0",
                        help="with a gate: smallest lung section a slice must show, cm² (0: off)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="store the choice in the model's card")
    args = parser.parse_args(argv)
    try:
        model = resolve_model(args.model)
        if model.task != "segment":
            raise KdviewerError(f"{model.id} is a {model.task} model: post-processing is tuned for segmentation")
        current = dict(model.postprocess)
        own = str(current.get("flip_average") or "")
        flip_list = [own] if args.flips is None else [f if f != "none" else "" for f in args.flips.split(",")]
        for f in flip_list:
            flip_views(model, f)  # an unknown flip setting: refused here, in one line
        grid = [(f, t, d, g, a) for f in flip_list for g in _floats(args.lung_gates)
                for a in (_floats(args.lung_min_areas) if g > 0 else [0.0])
                for d in _floats(args.min_diameters) for t in _floats(args.thresholds)]
        cases = {f: (case_arrays(model, args.data, "train", args.threads, f),
                     case_arrays(model, args.data, "val", args.threads, f)) for f in flip_list}
        if own not in cases:
            cases[own] = (case_arrays(model, args.data, "train", args.threads, own),
                          case_arrays(model, args.data, "val", args.threads, own))
    except (KdviewerError, ValueError, OSError) as exc:
        print(f"tune_postprocess: {exc}", file=sys.stderr)
        return 2
    rows = []
    for f, t, d, g, a in grid:
        pp = candidate(t, d, current, g, a, f)
        train, val = cases[f]
        (tr, n_tr), (va, n_va) = mean_dice(train, pp), mean_dice(val, pp)
        rows.append((f, t, d, g, a, tr, n_tr, va, n_va))
    best = max(rows, key=lambda r: (r[5], -grid.index(r[:5])))
    (cur_tr, _), (cur_va, _) = mean_dice(cases[own][0], current), mean_dice(cases[own][1], current)
    train, val = cases[best[0]]
    print(f"{model.id}: per-image Dice on {len(train)} training / {len(val)} validation images "
          f"(chosen on training only)")
    print(f"{'flips':>5} {'threshold':>9} {'min d (mm)':>10} {'gate (mm)':>9} {'lung (cm²)':>10} {'train Dice':>10} "
          f"{'(images)':>8} {'val Dice':>9} {'(images)':>8}")
    for f, t, d, g, a, tr, n_tr, va, n_va in rows:
        mark = "  <- chosen" if (f, t, d, g, a) == best[:5] else ""
        print(f"{f or 'none':>5} {t:9.2f} {d:10.1f} {g:9.1f} {a:10.1f} {tr:10.4f} {n_tr:8d} {va:9.4f} {n_va:8d}{mark}")
    print(f"card's current {json.dumps(current)}: train {cur_tr:.4f}, val {cur_va:.4f}")
    chosen = candidate(best[1], best[2], current, best[3], best[4], best[0])
    print(f"chosen {json.dumps(chosen)}: train {best[5]:.4f}, val {best[7]:.4f}")
    if args.write:
        card = json.loads(model.card_path.read_text(encoding="utf-8"))
        card["postprocess"] = chosen
        said = set(postprocess_limits(current))  # the old gate's limit line, if any, gives way to the new one's
        limits = [x for x in card.get("limits", []) if x not in said] + postprocess_limits(chosen)
        if limits != card.get("limits", []):
            card["limits"] = limits
        model.card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        print(f"written to {model.card_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
