"""What a model's input grid alone costs a segmentation task: the Dice of perfect predictions made on that grid.

    python benchmarks/grid_ceiling.py DATA [--sizes 512x512,576x576,384x384] [--split NAME] [--limit N]

Each item's true mask, one-hot per label, is taken to the model's grid as an image is (`resize_2d`, linear,
anti-aliased when shrinking), brought back to the mask's grid as the runtime brings a model's probabilities back
(`runtime.segment.to_grid`) and labelled by argmax (for two labels: p(1) >= 0.5), then scored against the mask
with `kdviewer evaluate`'s Dice (mean over the foreground labels; inside the field of view where the data has
one; masks without foreground are skipped). Each grid's "nearest" row takes the mask to the grid by nearest
neighbour instead: the labels a recipe trains on with `data.mask_resize = "nearest"`, learnt perfectly (the
"soft" class shares are the plain row's map). The native grid is the baseline row (Dice 1 by construction). A model
on that grid cannot score above its row; nothing here runs a model or times anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdviewer.errors import KdviewerError  # noqa: E402
from kdviewer.imaging.metrics import dice  # noqa: E402
from kdviewer.imaging.resample import class_shares, resize_2d  # noqa: E402
from kdviewer.runtime.evaluate import dataset_items  # noqa: E402
from kdviewer.runtime.segment import to_grid  # noqa: E402


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        h, _, w = part.strip().lower().partition("x")
        if not (h.isdigit() and (w or h).isdigit() and int(h) > 0 and int(w or h) > 0):
            raise ValueError(f"--sizes: {part.strip()!r} is not a grid like 512x512 (or 512)")
        out.append((int(h), int(w or h)))
    return out


def round_trip_dice(mask: np.ndarray, fov: np.ndarray | None, hw: tuple[int, int] | None,
                    nearest: bool = False) -> float:
    """Mean foreground Dice of `mask` after a perfect one-hot map went to grid `hw` and back (None: native).
    `nearest`: the map on the grid is the mask resized by nearest neighbour instead (the labels a recipe with
    `data.mask_resize = "nearest"` trains on), i.e. what a net that learnt those labels perfectly scores."""
    mask = np.asarray(mask).astype(np.int64)
    labels = int(mask.max()) + 1
    if hw is None or tuple(mask.shape) == hw:
        back = mask
    else:
        if nearest:
            mask_small = resize_2d(mask, hw, order=0)
            small = np.stack([(mask_small == k).astype(np.float32) for k in range(max(labels, 2))])
        else:
            small = class_shares(mask, hw, labels)
        back = np.argmax(to_grid(small, mask.shape), axis=0)
    inside = np.ones(mask.shape, bool) if fov is None else np.asarray(fov, bool)
    scores = [dice(back[inside] == k, mask[inside] == k) for k in range(1, max(labels, 2))]
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a segmentation data set kdviewer reads (DRIVE, image + mask pairs, volumes)")
    parser.add_argument("--sizes", default="512x512,576x576,384x384", help="model grids, HxW, comma-separated")
    parser.add_argument("--split", default=None, help="the data's split to read (default: its only or first one)")
    parser.add_argument("--limit", type=int, default=None, help="the first N items only")
    args = parser.parse_args(argv)
    try:
        sizes = _sizes(args.sizes)
        _ds, split, items = dataset_items(args.data, "segment", args.split, limit=args.limit)
        rows: dict[str, list[float]] = {"native (baseline)": []}
        for h, w in sizes:
            rows.update({f"{h}x{w}": [], f"{h}x{w} nearest": []})
        for item in items:
            sample = item.load()
            if sample.mask is None:
                continue
            mask = np.asarray(sample.mask)
            masks = mask if mask.ndim == 3 else mask[None]
            fovs = [None] * len(masks) if sample.fov is None else np.asarray(sample.fov).reshape(masks.shape)
            for m, f in zip(masks, fovs, strict=True):
                if not m.any():
                    continue  # as evaluate: an empty truth is not scored here (its round trip stays empty)
                rows["native (baseline)"].append(round_trip_dice(m, f, None))
                for (h, w) in sizes:
                    rows[f"{h}x{w}"].append(round_trip_dice(m, f, (h, w)))
                    rows[f"{h}x{w} nearest"].append(round_trip_dice(m, f, (h, w), nearest=True))
    except (KdviewerError, ValueError, OSError) as exc:
        print(f"grid_ceiling: {exc}", file=sys.stderr)
        return 2
    if not rows["native (baseline)"]:
        print(f"grid_ceiling: no item of split {split!r} has a mask with foreground", file=sys.stderr)
        return 2
    print(f"{args.data}, split {split!r}: Dice of perfect maps through each grid ({len(rows['native (baseline)'])} masks)")
    print(f"{'grid':>18s} {'mean Dice':>10s} {'min':>7s}")
    for name, values in rows.items():
        print(f"{name:>18s} {np.mean(values):10.4f} {np.min(values):7.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
