"""benchmarks/grid_ceiling.py: a perfect map through a coarser grid loses thin structures, not large ones;
the native grid is exact; masks without foreground are skipped; bad data is one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import grid_ceiling  # noqa: E402


def _disc(hw: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return ((yy - hw[0] / 2) ** 2 + (xx - hw[1] / 2) ** 2 <= radius**2).astype(np.uint8)


def test_thin_lines_lose_at_half_resolution_large_regions_do_not() -> None:
    line = np.zeros((96, 96), np.uint8)
    line[:, 47] = 1  # a 1-pixel vessel
    assert grid_ceiling.round_trip_dice(line, None, None) == 1.0
    assert grid_ceiling.round_trip_dice(line, None, (48, 48)) < 0.9
    assert grid_ceiling.round_trip_dice(_disc((96, 96), 30), None, (48, 48)) > 0.97


def test_nearest_neighbour_labels_break_a_slanted_2px_vessel_that_class_shares_keep() -> None:
    line = np.zeros((584, 565), np.uint8)
    rows = np.arange(584)
    line[rows, (rows * 0.9).astype(int)] = 1  # DRIVE's grid, a 2-px vessel at a slant
    line[rows, (rows * 0.9).astype(int) + 1] = 1
    shares = grid_ceiling.round_trip_dice(line, None, (512, 512))
    nearest = grid_ceiling.round_trip_dice(line, None, (512, 512), nearest=True)
    assert shares > 0.99 and nearest < 0.9


def test_field_of_view_limits_the_score_and_labels_are_averaged() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:30] = 1
    mask[40:44, 40:44] = 2
    two = grid_ceiling.round_trip_dice(mask, None, (16, 16))
    only_large = grid_ceiling.round_trip_dice(np.where(mask == 2, 0, mask), None, (16, 16))
    assert two < only_large  # the small label's loss pulls the mean down
    with_line = np.where(mask == 2, 0, mask)
    with_line[:, 50] = 1  # a 1-pixel line, lost on the coarse grid ...
    fov = np.zeros((64, 64), bool)
    fov[:, :40] = True  # ... but outside the field of view, so not scored
    assert grid_ceiling.round_trip_dice(with_line, None, (16, 16)) < only_large - 0.01
    assert grid_ceiling.round_trip_dice(with_line, fov, (16, 16)) == grid_ceiling.round_trip_dice(
        np.where(mask == 2, 0, mask), fov, (16, 16))


def test_main_on_an_image_mask_folder_and_bad_data(tmp_path: Path, capsys) -> None:
    # image + mask pairs, as BUSI names them: case0.png beside case0_mask.png
    for i, radius in enumerate((6, 20, 0)):
        Image.fromarray((np.random.default_rng(i).random((64, 64)) * 255).astype(np.uint8)).save(
            tmp_path / f"case{i}.png")
        Image.fromarray(_disc((64, 64), radius) * 255 if radius else np.zeros((64, 64), np.uint8)).save(
            tmp_path / f"case{i}_mask.png")
    assert grid_ceiling.main([str(tmp_path), "--sizes", "32x32,16"]) == 0
    out = capsys.readouterr().out
    assert "(2 masks)" in out  # the empty mask is skipped
    rows = {line.split()[0]: float(line.split()[-2]) for line in out.splitlines()[2:]}
    assert rows["native"] == 1.0 and rows["16x16"] < rows["32x32"] < 1.0
    assert grid_ceiling.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grid_ceiling: ") and len(err.strip().splitlines()) == 1
