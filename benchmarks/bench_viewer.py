"""Viewer benchmark (issue 2): load time, time to first slice, scroll rate, peak memory, in one run.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_viewer.py [--repeats 5]

Every figure is a median over `--repeats` runs, each in a fresh interpreter (so no run profits from
another's imports, caches or heap), with its baseline measured in the same run: bare SimpleITK for
loading and memory, a bare pyqtgraph ImageItem for scrolling. The page cache is warm: every file is
read once before timing (a cold cache would need root to drop and would disturb the shared machine).
Prints a table with the goals of issue 2 and PASS/MISS; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime

from _common import SHARED_DATASETS, median_iqr, print_table, run_fresh, run_python, warm_page_cache

DATASETS = {
    "ircadb-liver17": SHARED_DATASETS / "ircadb-liver17" / "dicom",
    "tcia-lung-ct": SHARED_DATASETS / "tcia-lung-ct" / "dicom",
}
OVERLAY_DATASET = "ircadb-liver17"
OVERLAY_MASK = SHARED_DATASETS / "ircadb-liver17" / "liver_mask.nii.gz"

GOAL_LOAD_RATIO = 1.3  # kdviewer load time / SimpleITK load time
GOAL_FIRST_SLICE_S = 0.5
GOAL_SCROLL_PER_S = 60.0
GOAL_MEMORY_RATIO = 2.0  # peak RSS above the import floor / volume bytes

# -- children: each string runs as `python -c CODE DIR` in a fresh interpreter --------------------------

# Full load and its peak memory, timed after the imports (run_fresh adds the timing and RSS).
KDVIEWER_LOAD = dict(
    setup="""
        import sys
        import numpy
        from kdviewer.study import load_series, open_path
    """,
    timed="""
        volume = load_series(open_path(sys.argv[1]).series[0])
    """,
    report='{"shape": list(volume.shape), "dtype": str(volume.array.dtype), "nbytes": volume.array.nbytes, '
           '"sum": int(volume.array.sum(dtype=numpy.int64))}',
)
SITK_LOAD = dict(
    setup="""
        import sys
        import numpy
        import SimpleITK as sitk
    """,
    timed="""
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(sys.argv[1]))
        array = sitk.GetArrayFromImage(reader.Execute())
    """,
    report='{"shape": list(array.shape), "dtype": str(array.dtype), "nbytes": array.nbytes, '
           '"sum": int(array.sum(dtype=numpy.int64))}',
)

# Python start alone: the floor under every "from process start" time.
PYTHON_START = 'import time; print("@@RESULT {\\"end\\": %r}" % time.monotonic())'

# Data part of the first slice: imports, scan of the folder, decode of the middle slice.
FIRST_SLICE_DATA = """
import time
_main = time.monotonic()
import json, sys
from kdviewer.study import open_path, read_slice
_imported = time.monotonic()
ref = open_path(sys.argv[1]).series[0]
plane = read_slice(ref, ref.shape[0] // 2)
print("@@RESULT " + json.dumps({"main": _main, "imported": _imported, "end": time.monotonic(),
                                "shape": list(plane.shape)}), flush=True)
"""

# Baseline for the gui path: the least a Qt viewer must do. Imports (PySide6, pyqtgraph, pydicom), one
# file of the folder decoded by pydicom (no scan: the file is picked by name), an ImageItem, grab().
FIRST_SLICE_BARE = """
import time
_main = time.monotonic()
import json, sys
from pathlib import Path
import pydicom
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
files = sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_file())
plane = pydicom.dcmread(files[len(files) // 2]).pixel_array
view = pg.GraphicsView(background="k")
box = pg.ViewBox(lockAspect=True, invertY=True)
view.setCentralItem(box)
image = pg.ImageItem(plane, axisOrder="row-major", levels=(0, 1500))
box.addItem(image)
view.resize(600, 600)
view.show()
view.grab()
print("@@RESULT " + json.dumps({"main": _main, "end": time.monotonic()}), flush=True)
"""

# The gui path: MainWindow (offscreen) opens the folder; the loader's first_slice signal arrives
# after the window's own slot has put the preview in the views; grab() paints the axial view.
FIRST_SLICE_GUI = """
import time
_main = time.monotonic()
import json, os, sys, tempfile
from pathlib import Path
from PySide6.QtCore import QObject, QTimer, Slot
from kdviewer.gui.app import make_application
from kdviewer.gui.main_window import MainWindow
from kdviewer.gui.settings import file_settings
t = {"main": _main, "imported": time.monotonic()}
app = make_application()
errors = []
window = MainWindow(settings=file_settings(Path(tempfile.mkdtemp()) / "settings.ini"),
                    show_error=lambda parent, title, message: errors.append(message))
window.show()
t["window_shown"] = time.monotonic()


class Probe(QObject):
    @Slot(object)
    def scanned(self, result):
        t["scanned"] = time.monotonic()

    @Slot(object, object)
    def first_slice(self, ref, array):
        t["first_slice_signal"] = time.monotonic()
        view = window.grid.views["axial"]
        picture = view.grab()
        t["end"] = time.monotonic()
        import numpy as np
        import pyqtgraph as pg
        rgb = pg.functions.ndarray_from_qimage(picture.toImage())[..., :3]
        t["lit_fraction"] = float((rgb.max(axis=-1) > 16).mean())  # not a black frame
        t["preview_shape"] = list(window.state.volume.shape)  # (1, y, x): drawn before the full volume
        t["image_shape"] = list(view.image.image.shape)
        app.quit()


probe = Probe()
window.open_path(sys.argv[1])
window.loader.scanned.connect(probe.scanned)
window.loader.first_slice.connect(probe.first_slice)
window.load_failed.connect(lambda message: app.quit())
QTimer.singleShot(120_000, app.quit)
app.exec()
t["errors"] = errors
print("@@RESULT " + json.dumps(t), flush=True)
os._exit(0)  # the loader thread may still be decoding the volume: not part of this measurement
"""

# Scroll rate: kdviewer's SliceView (real widget, ViewerState, overlay through its LUT) against a bare
# pyqtgraph ImageItem with fixed levels, 600 x 600 view, from slice 0 to the last, one grab() per frame.
SCROLL = """
import json, sys, time
import pyqtgraph as pg
from kdviewer.gui.app import make_application
from kdviewer.gui.overlay import LABEL_LUT, label_array
from kdviewer.gui.slice_view import SliceView
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.imaging.window import window_bounds
from kdviewer.study import load_volume

SIZE = (600, 600)
app = make_application()
ct = load_volume(sys.argv[1])
mask = load_volume(sys.argv[2])
order = sys.argv[3].split(",")


def kdviewer_rate(overlay):
    state = ViewerState()
    view = SliceView(state, "axial")
    view.resize(*SIZE)
    view.show()
    state.set_volume(ct)
    if overlay:
        state.set_overlay(mask)
    state.set_slice("axial", 0)
    view.grab()
    app.processEvents()
    n = state.slice_count("axial")
    t0 = time.perf_counter()
    for _ in range(n - 1):
        view.on_scroll(1)  # the wheel's and the keys' path
        view.grab()
        app.processEvents()
    rate = (n - 1) / (time.perf_counter() - t0)
    if state.slice_index("axial") != n - 1 or view.labels.isVisible() != overlay:
        raise RuntimeError("the slice view did not scroll through the volume as expected")
    view.close()
    view.deleteLater()
    app.processEvents()
    return rate, state.window


def bare_rate(overlay, window):
    view = pg.GraphicsView(background="k")
    box = pg.ViewBox(lockAspect=True, invertY=True)
    view.setCentralItem(box)
    image = pg.ImageItem(axisOrder="row-major")
    labels = pg.ImageItem(axisOrder="row-major")
    labels.setZValue(1)
    labels.setOpacity(0.5)
    box.addItem(image)
    box.addItem(labels)
    view.resize(*SIZE)
    view.show()
    grey, lab = ct.array, label_array(mask.array)
    levels = window_bounds(*window)

    def show(i):
        image.setImage(grey[i], autoLevels=False, levels=levels)
        if overlay:
            labels.setImage(lab[i], autoLevels=False, levels=(0, 255), lut=LABEL_LUT)

    show(0)
    box.autoRange(padding=0)
    view.grab()
    app.processEvents()
    n = grey.shape[0]
    t0 = time.perf_counter()
    for i in range(1, n):
        show(i)
        view.grab()
        app.processEvents()
    rate = (n - 1) / (time.perf_counter() - t0)
    view.close()
    view.deleteLater()
    app.processEvents()
    return rate


window = kdviewer_rate(False)[1]  # untimed warm-up: the same window for the baseline, first-use costs paid
rates = {}
for name in order:
    who, overlay = name.split("-")
    overlay = overlay == "overlay"
    rates[name] = kdviewer_rate(overlay)[0] if who == "kdviewer" else bare_rate(overlay, window)
print("@@RESULT " + json.dumps({"rates": rates, "slices": int(ct.shape[0])}), flush=True)
"""
SCROLL_CASES = ("kdviewer-overlay", "bare-overlay", "kdviewer-grey", "bare-grey")


NOTES = """
How each row is measured (medians over the repeats; ratios are ratios of medians):
  1  each child imports its library first (untimed), then times open_path + load_series of the series
     against SimpleITK GetGDCMSeriesFileNames + ImageSeriesReader.Execute + GetArrayFromImage.
  2  wall time from spawning `python -c` (imports included) until MainWindow, opening the folder offscreen,
     has drawn the loader's first_slice (the middle slice, before the volume is decoded) and the axial view
     was grab()bed. Bare baseline: import PySide6 + pyqtgraph + pydicom, dcmread the middle file by name
     (no scan), an ImageItem, grab(). Data only: import kdviewer.study, open_path, read_slice(middle).
  3  SliceView (ViewerState, window as levels, liver_mask.nii.gz through LABEL_LUT at opacity 0.5), 600x600,
     on_scroll(1) from the first slice to the last with grab() + processEvents() per frame; baseline: a
     bare pyqtgraph ImageItem (+ LUT label ImageItem) with fixed levels, same frames, same loop.
  4  from the children of row 1: peak RSS of the process (ru_maxrss) minus RSS after the imports, divided
     by the bytes of kdviewer's int16 volume.
"""


# -- measuring ---------------------------------------------------------------------------------------------

def measure_loads(repeats: int) -> dict:
    """{(dataset, "kdviewer"|"sitk"): [child results]}; the two libraries alternate in order."""
    runs: dict = {}
    for r in range(repeats):
        for name, folder in DATASETS.items():
            pair = [("kdviewer", KDVIEWER_LOAD), ("sitk", SITK_LOAD)]
            for who, child in pair if r % 2 == 0 else reversed(pair):
                runs.setdefault((name, who), []).append(run_fresh(child["setup"], child["timed"], str(folder),
                                                                  report=child["report"]))
    return runs


def measure_first_slice(repeats: int) -> dict:
    """{(dataset, "gui"|"bare"|"data"): [child results, times in s after the spawn]}; "python": start alone."""
    runs: dict = {}
    for _ in range(repeats):
        start = run_python(PYTHON_START)
        runs.setdefault("python", []).append({"end": start["end"] - start["spawned_at"]})
        for name, folder in DATASETS.items():
            for who, code in (("gui", FIRST_SLICE_GUI), ("bare", FIRST_SLICE_BARE), ("data", FIRST_SLICE_DATA)):
                result = run_python(code, str(folder))
                if who == "gui" and ("end" not in result or result["errors"]):
                    raise RuntimeError(f"{name}: no first slice was painted ({result.get('errors')})")
                spawned = result.pop("spawned_at")
                runs.setdefault((name, who), []).append(
                    {k: (v - spawned if isinstance(v, float) and k != "lit_fraction" else v)
                     for k, v in result.items()})
    return runs


def measure_scroll(repeats: int) -> dict:
    """{case: [slices/s]} on the overlay dataset; the order of the cases rotates between repeats."""
    rates: dict = {}
    for r in range(repeats):
        order = SCROLL_CASES[r % 4:] + SCROLL_CASES[:r % 4]
        result = run_python(SCROLL, str(DATASETS[OVERLAY_DATASET]), str(OVERLAY_MASK), ",".join(order))
        for case, rate in result["rates"].items():
            rates.setdefault(case, []).append(rate)
    return rates


# -- reporting ---------------------------------------------------------------------------------------------

def _fmt_s(samples: list[float]) -> str:
    """Median and IQR of times in seconds, in ms below 1 s."""
    mid, iqr = median_iqr(samples)
    return f"{mid * 1000:.0f} ms (IQR {iqr * 1000:.0f})" if mid < 1 else f"{mid:.2f} s (IQR {iqr:.2f})"


def _fmt_rate(samples: list[float]) -> str:
    """Median and IQR of rates in slices per second."""
    mid, iqr = median_iqr(samples)
    return f"{mid:.0f}/s (IQR {iqr:.0f})"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _med(samples: list[float]) -> float:
    return median_iqr(samples)[0]


def table_rows(loads: dict, first: dict, scroll: dict) -> list[list[str]]:
    """The table: one row per benchmark and data set, with its baseline, ratio, goal and verdict."""
    rows = []
    for name in DATASETS:
        kd = [x["seconds"] for x in loads[(name, "kdviewer")]]
        it = [x["seconds"] for x in loads[(name, "sitk")]]
        ratio = _med(kd) / _med(it)
        rows.append(["1 full load (open_path + load_series)", name, _fmt_s(kd), "SimpleITK " + _fmt_s(it),
                     f"{ratio:.2f}×", f"≤ {GOAL_LOAD_RATIO}× SimpleITK", _verdict(ratio <= GOAL_LOAD_RATIO)])
    for name in DATASETS:
        gui = [x["end"] for x in first[(name, "gui")]]
        bare = [x["end"] for x in first[(name, "bare")]]
        rows.append(["2 first slice on screen: start → painted (gui)", name, _fmt_s(gui),
                     "bare pydicom+pyqtgraph " + _fmt_s(bare), f"{_med(gui) / _med(bare):.2f}×",
                     f"≤ {GOAL_FIRST_SLICE_S} s",
                     _verdict(_med(gui) <= GOAL_FIRST_SLICE_S)])
        data = first[(name, "data")]
        rows.append(["2   data only: start → scan + read_slice", name, _fmt_s([x["end"] for x in data]),
                     "", "", "(info)", ""])
        rows.append(["2   data only: scan + read_slice after imports", name,
                     _fmt_s([x["end"] - x["imported"] for x in data]), "", "", "(info)", ""])
    for layer, goal in (("overlay", True), ("grey", False)):
        kd, bare = scroll[f"kdviewer-{layer}"], scroll[f"bare-{layer}"]
        what = "grey + RGBA label overlay" if goal else "grey only"
        rows.append([f"3 scroll 512², {what}, grab()/frame", OVERLAY_DATASET, _fmt_rate(kd),
                     "bare ImageItem " + _fmt_rate(bare), f"{_med(kd) / _med(bare):.2f}×",
                     f"≥ {GOAL_SCROLL_PER_S:.0f}/s" if goal else "(info)",
                     _verdict(_med(kd) >= GOAL_SCROLL_PER_S) if goal else ""])
    for name in DATASETS:
        volume_bytes = loads[(name, "kdviewer")][0]["nbytes"]
        kd, it = (_med([x["rss_peak"] - x["rss_floor"] for x in loads[(name, who)]]) for who in ("kdviewer", "sitk"))
        sitk_dtype = loads[(name, "sitk")][0]["dtype"]
        rows.append(["4 peak RSS above imports / volume bytes", name,
                     f"{kd / volume_bytes:.2f}× ({kd / 2**20:.0f} MiB)",
                     f"SimpleITK {it / volume_bytes:.2f}× ({it / 2**20:.0f} MiB, {sitk_dtype})",
                     f"{kd / it:.2f}×", f"≤ {GOAL_MEMORY_RATIO}× volume", _verdict(kd / volume_bytes <= GOAL_MEMORY_RATIO)])
    return rows


def print_breakdown(loads: dict, first: dict) -> None:
    """Where the first-slice time goes (medians, seconds after the process was spawned)."""
    print(f"\nFirst slice (gui), medians in ms after the process was spawned (python start alone: "
          f"{_med([x['end'] for x in first['python']]) * 1000:.0f} ms):")
    steps = ("imported", "window_shown", "scanned", "first_slice_signal", "end")
    for name in DATASETS:
        runs = first[(name, "gui")]
        parts = "  ".join(f"{s if s != 'end' else 'painted'} {_med([x[s] for x in runs]) * 1000:.0f}"
                          for s in steps)
        lit = min(x["lit_fraction"] for x in runs)
        data = first[(name, "data")]
        print(f"  {name}: {parts}  (first frame: preview {runs[0]['preview_shape']}, image "
              f"{runs[0]['image_shape']}, {lit:.0%} of the view lit); data only: imported "
              f"{_med([x['imported'] for x in data]) * 1000:.0f}  slice read {_med([x['end'] for x in data]) * 1000:.0f}")
    print("\nVolumes (volume bytes = kdviewer's array):")
    for name in DATASETS:
        kd, it = loads[(name, "kdviewer")][0], loads[(name, "sitk")][0]
        print(f"  {name}: kdviewer {tuple(kd['shape'])} {kd['dtype']} {kd['nbytes'] / 2**20:.0f} MiB; "
              f"SimpleITK {tuple(it['shape'])} {it['dtype']} {it['nbytes'] / 2**20:.0f} MiB; import floor "
              f"kdviewer {_med([x['rss_floor'] for x in loads[(name, 'kdviewer')]]) / 2**20:.0f} MiB, "
              f"SimpleITK {_med([x['rss_floor'] for x in loads[(name, 'sitk')]]) / 2**20:.0f} MiB; same voxel "
              f"sum: {'yes' if kd['sum'] == it['sum'] else 'NO'}")


def versions() -> str:
    """Versions of the libraries measured, as the children import them."""
    code = ("import json, PySide6, pyqtgraph, SimpleITK, pydicom, numpy; print('@@RESULT ' + json.dumps({"
            "'PySide6': PySide6.__version__, 'pyqtgraph': pyqtgraph.__version__, "
            "'SimpleITK': SimpleITK.Version_VersionString(), 'pydicom': pydicom.__version__, "
            "'numpy': numpy.__version__}))")
    found = run_python(code)
    found.pop("spawned_at")
    return ", ".join(f"{k} {v}" for k, v in found.items())


def _load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median reported)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for folder in [*DATASETS.values(), OVERLAY_MASK.parent]:
        warm_page_cache(folder)
    print(f"kdviewer viewer benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, QT_QPA_PLATFORM="
          f"{os.environ['QT_QPA_PLATFORM']}")
    print(f"{versions()}")
    print(f"Medians over {args.repeats} repeats, each in a fresh interpreter; warm page cache (every file read "
          f"once before timing). Load average before: {_load_average()}.\n")
    loads = measure_loads(args.repeats)
    first = measure_first_slice(args.repeats)
    scroll = measure_scroll(args.repeats)
    print_table(["benchmark", "data", "kdviewer", "baseline (same run)", "kdviewer/baseline", "goal", "result"],
                table_rows(loads, first, scroll))
    print_breakdown(loads, first)
    print(f"\nLoad average after: {_load_average()} (on {os.cpu_count()} CPUs; above that, other work shares them).")
    print(NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
