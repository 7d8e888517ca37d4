"""The comparison's plots drawn with pyqtgraph: ROC curves, confusion matrices, per-image scatters,
the two probability sets; and their PNGs for the report (also rendered offscreen by `kdviewer compare
--report`).

Each builder returns a `pg.PlotWidget` (white background, teacher blue, student red, as the report's
SVG plots); `comparison_plots` picks the task's plots of a `DatasetComparison`; `plot_png` exports
one plot with `pyqtgraph.exporters.ImageExporter`; `report_pngs` does it all without a window.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtGui import QColor, QFont

TEACHER_COLOUR, STUDENT_COLOUR = "#1f77b4", "#d62728"
PLOT_SIZE_PX = (380, 320)  # the panel's plots and the report's PNGs
AXIS_PEN = pg.mkPen("#444")


def _plot(title: str, xlabel: str, ylabel: str) -> pg.PlotWidget:
    w = pg.PlotWidget(background="w")
    item = w.getPlotItem()
    item.setTitle(title, color="#222", size="10pt")
    for side, label in (("bottom", xlabel), ("left", ylabel)):
        axis = item.getAxis(side)
        axis.setPen(AXIS_PEN)
        axis.setTextPen(AXIS_PEN)
        axis.setLabel(label, color="#222")
    item.showGrid(x=True, y=True, alpha=0.2)
    item.setMenuEnabled(False)
    w.setMinimumSize(260, 220)
    w.resize(*PLOT_SIZE_PX)
    return w


def _legend(w: pg.PlotWidget, offset=(-10, -10)) -> pg.LegendItem:
    legend = w.getPlotItem().addLegend(offset=offset, labelTextColor="#222", brush=pg.mkBrush(255, 255, 255, 220),
                                       pen=pg.mkPen("#bbb"))
    return legend


def roc_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray, str]], title: str) -> pg.PlotWidget:
    """ROC curves (name, fpr, tpr, colour) in one frame with the chance diagonal; every second dashed, so
    identical curves both stay visible."""
    w = _plot(title, "false positive rate", "true positive rate")
    item = w.getPlotItem()
    item.plot([0, 1], [0, 1], pen=pg.mkPen("#999", style=Qt.PenStyle.DashLine))
    _legend(w, offset=(-10, -10))  # bottom right: where a useful ROC curve is not
    for k, (name, fpr, tpr, colour) in enumerate(curves):
        style = Qt.PenStyle.DashLine if k % 2 else Qt.PenStyle.SolidLine
        item.plot(np.asarray(fpr, float), np.asarray(tpr, float), pen=pg.mkPen(colour, width=2, style=style),
                  name=name)
    item.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
    return w


def scatter_plot(x: np.ndarray, y: np.ndarray, title: str, xlabel: str, ylabel: str,
                 lim: tuple[float, float] | None = None, keys: Sequence[str] | None = None) -> pg.PlotWidget:
    """Per-image points (x, y) with the line y = x on one range; nan points left out, ±inf drawn hollow on
    the frame's edge. `keys` become the points' data (for tooltips and clicks)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    names = np.asarray(list(keys) if keys is not None else [""] * len(x), dtype=object)[keep]
    x, y = x[keep], y[keep]
    finite = np.concatenate([x, y])
    finite = finite[np.isfinite(finite)]
    if lim is None:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = (hi - lo) * 0.05 or max(abs(hi), 1.0) * 0.05
        lim = (lo - pad, hi + pad)
    lo, hi = lim
    w = _plot(f"{title}  (n = {x.size})", xlabel, ylabel)
    item = w.getPlotItem()
    item.plot([lo, hi], [lo, hi], pen=pg.mkPen("#999", style=Qt.PenStyle.DashLine))
    edge = ~(np.isfinite(x) & np.isfinite(y))
    brushes = [pg.mkBrush(None) if e else pg.mkBrush(68, 68, 68, 170) for e in edge]
    spots = pg.ScatterPlotItem(np.clip(x, lo, hi), np.clip(y, lo, hi), size=7, pen=pg.mkPen("#444"),
                               brush=brushes, data=list(names), hoverable=True, tip=_tip)
    item.addItem(spots)
    item.setRange(xRange=lim, yRange=lim, padding=0)
    w.spots = spots  # the panel connects its clicks
    return w


def _tip(x: float, y: float, data: object) -> str:
    return f"{data}\n({x:.4g}, {y:.4g})" if data else f"({x:.4g}, {y:.4g})"


def confusion_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str,
                   colour: str = TEACHER_COLOUR) -> pg.PlotWidget:
    """A confusion matrix (rows true, columns predicted): cells shaded by the row's share, with their counts."""
    m = np.asarray(matrix, dtype=float)
    n = m.shape[0]
    names = [str(s) for s in list(class_names)[:n]] + [str(k) for k in range(len(class_names), n)]
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    base = QColor(colour)
    rgba = np.empty((n, n, 4), np.uint8)
    for c, v in enumerate((base.red(), base.green(), base.blue())):
        rgba[..., c] = v
    rgba[..., 3] = np.rint(255 * (0.08 + 0.85 * share)).astype(np.uint8)
    w = _plot(title, "predicted", "true")
    item = w.getPlotItem()
    item.showGrid(x=False, y=False)
    item.invertY(True)
    image = pg.ImageItem(rgba, axisOrder="row-major")
    image.setRect(QRectF(0, 0, n, n))
    item.addItem(image)
    font = QFont()
    font.setPointSize(10 if n <= 6 else 8)
    for i in range(n):
        for j in range(n):
            text = pg.TextItem(str(int(m[i, j])), color="w" if share[i, j] > 0.5 else "k", anchor=(0.5, 0.5))
            text.setFont(font)
            text.setPos(j + 0.5, i + 0.5)
            item.addItem(text)
    ticks = [[(k + 0.5, names[k][:10]) for k in range(n)]]
    item.getAxis("bottom").setTicks(ticks)
    item.getAxis("left").setTicks(ticks)
    item.setRange(xRange=(0, n), yRange=(0, n), padding=0)
    item.setMouseEnabled(False, False)
    return w


def probability_plot(labels: Sequence[str], probabilities: np.ndarray, title: str = "probabilities") -> pg.PlotWidget:
    """The two probability sets (2, K) side by side per class: teacher blue, student red."""
    p = np.asarray(probabilities, float)
    k = np.arange(p.shape[1])
    w = _plot(title, "class", "probability")
    item = w.getPlotItem()
    for row, colour, name, shift in ((0, TEACHER_COLOUR, "teacher", -0.2), (1, STUDENT_COLOUR, "student", 0.2)):
        bars = pg.BarGraphItem(x=k + shift, height=p[row], width=0.38, brush=colour, pen=pg.mkPen(colour), name=name)
        item.addItem(bars)
    legend = _legend(w, offset=(-10, 10))
    for colour, name in ((TEACHER_COLOUR, "teacher"), (STUDENT_COLOUR, "student")):
        legend.addItem(pg.BarGraphItem(x=[0], height=[0], width=1, brush=colour), name)
    item.getAxis("bottom").setTicks([[(int(i), str(labels[i])[:12]) for i in k]])
    item.setRange(xRange=(-0.6, p.shape[1] - 0.4), yRange=(0, 1.05), padding=0)
    return w


def comparison_plots(c) -> list[tuple[str, pg.PlotWidget]]:
    """(name, plot) of a `DatasetComparison`: ROC curves and confusion matrices (classification), the
    per-image Dice scatter (segmentation), per-image PSNR and SSIM (restoration)."""
    if c.task == "classify":
        out: list[tuple[str, pg.PlotWidget]] = []
        names = sorted({name for curves in c.roc.values() for name, _, _ in curves})
        for name in names:
            curves = []
            for role, colour, metrics in (("teacher", TEACHER_COLOUR, c.teacher_metrics),
                                          ("student", STUDENT_COLOUR, c.student_metrics)):
                for cname, fpr, tpr in c.roc.get(role, []):
                    if cname == name:
                        auc = metrics.get("auc")
                        label = f"{role} (AUC {auc:.3f})" if len(names) == 1 and isinstance(auc, float) else role
                        curves.append((label, fpr, tpr, colour))
            out.append((f"roc_{name}", roc_plot(curves, f"ROC: {name}")))
        for role, metrics, colour in (("teacher", c.teacher_metrics, TEACHER_COLOUR),
                                      ("student", c.student_metrics, STUDENT_COLOUR)):
            if metrics.get("confusion"):
                out.append((f"confusion_{role}",
                            confusion_plot(metrics["confusion"], c.class_names, f"confusion: {role}", colour)))
        return out
    keys = [case.key for case in c.cases]

    def col(side: str, key: str) -> np.ndarray:
        return np.asarray([getattr(case, side).get(key, np.nan) for case in c.cases], dtype=float)

    if c.task == "segment":
        return [("dice_scatter", scatter_plot(col("teacher", "dice"), col("student", "dice"), "Dice per image",
                                              "teacher Dice", "student Dice", lim=(0.0, 1.0), keys=keys))]
    return [("psnr_scatter", scatter_plot(col("teacher", "psnr"), col("student", "psnr"), "PSNR per image (dB)",
                                          "teacher PSNR", "student PSNR", keys=keys)),
            ("ssim_scatter", scatter_plot(col("teacher", "ssim"), col("student", "ssim"), "SSIM per image",
                                          "teacher SSIM", "student SSIM", keys=keys))]


def plot_png(widget: pg.PlotWidget, size_px: tuple[int, int] = PLOT_SIZE_PX) -> bytes:
    """The plot as PNG bytes (`ImageExporter` of its PlotItem at `size_px`)."""
    from pyqtgraph.exporters import ImageExporter

    if widget.width() != size_px[0] or widget.height() != size_px[1]:
        widget.resize(*size_px)
    exporter = ImageExporter(widget.getPlotItem())
    exporter.parameters()["width"] = int(size_px[0])
    exporter.parameters()["height"] = int(size_px[1])
    image = exporter.export(toBytes=True)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def ensure_qapp():
    """The running QApplication, or a new one; offscreen when there is no display (a terminal, CI)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith("linux"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication([sys.argv[0] if sys.argv else "kdviewer"])
    return app


def report_pngs(comparison) -> dict[str, bytes]:
    """PNGs of a comparison's plots, drawn offscreen (dataset: `comparison_plots`; a classification
    study: the probabilities; other studies: none)."""
    ensure_qapp()
    if hasattr(comparison, "cases"):
        plots = comparison_plots(comparison)
    elif comparison.probabilities is not None:
        plots = [("probabilities", probability_plot(comparison.labels, comparison.probabilities))]
    else:
        plots = []
    out = {name: plot_png(w) for name, w in plots}
    for _, w in plots:
        w.close()
        w.deleteLater()
    return out
