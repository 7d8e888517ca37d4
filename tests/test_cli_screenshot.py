"""`kdviewer screenshot`: the viewer's rendering offscreen, to a PNG; one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gui_helpers import IRCAD_DICOM, IRCAD_MASK, PACSMAN_BIDS
from PySide6.QtGui import QImage

from kdviewer.cli import main
from kdviewer.gui.image_export import qimage_to_rgba
from kdviewer.gui.render import render_view
from kdviewer.imaging.window import PRESETS
from kdviewer.study.open import load_volume


def read_png(path) -> np.ndarray:
    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not a readable PNG"
    return qimage_to_rgba(image)


def test_screenshot_writes_what_render_view_draws(qapp, tmp_path):
    out = tmp_path / "axial.png"
    assert main(["screenshot", str(IRCAD_DICOM), "--out", str(out), "--slice", "60", "--window", "liver",
                 "--no-labels"]) == 0
    expected = render_view(load_volume(IRCAD_DICOM), "axial", 60, PRESETS["liver"])
    np.testing.assert_array_equal(read_png(out), expected)


def test_screenshot_with_overlay_size_and_labels(qapp, tmp_path):
    out = tmp_path / "coronal.png"
    assert main(["screenshot", str(IRCAD_DICOM), "--out", str(out), "--view", "coronal", "--window", "40,400",
                 "--overlay", str(IRCAD_MASK), "--size", "640x480"]) == 0
    image = read_png(out)
    assert image.shape == (480, 640, 4)
    red = (image[..., 0].astype(int) - image[..., 1].astype(int)) > 60
    assert red.sum() > 1000  # the liver, coloured
    top_middle = image[:30, 300:340, :3]
    assert (top_middle.max(axis=2) > 150).any()  # the "S" letter on the top edge


@pytest.mark.parametrize(("extra", "message"), [
    (["--window", "sunny"], "neither a preset"),
    (["--slice", "500"], "outside 0..118"),
    (["--series", "3"], "there are 1 series"),
    (["--overlay", str(PACSMAN_BIDS)], "another grid"),
    (["--size", "big"], "expected WxH"),
])
def test_bad_options_give_one_line_and_exit_2(qapp, tmp_path, capsys, extra, message):
    out = tmp_path / "x.png"
    assert main(["screenshot", str(IRCAD_DICOM), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("kdviewer screenshot: error:")
    assert not out.exists()


def test_missing_path_in_a_fresh_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kdviewer", "screenshot", str(tmp_path / "nothing"),
                           "--out", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
