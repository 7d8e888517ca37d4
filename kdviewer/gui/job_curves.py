"""Live training curves of a job: the loss per step (and per epoch) and the validation metrics per epoch.

Drawn with pyqtgraph from a `kdviewer.jobs.Progress`; `set_progress` only hands new arrays to the
existing curves, and nothing when the progress has not changed, so a 250 ms timer costs next to nothing.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

from kdviewer.jobs import Progress

_METRIC_PENS = ("#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#17becf", "#8c564b")


def _plot(title: str, x_label: str, y_label: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, color="#222", size="10pt")
    plot.setLabel("bottom", x_label)
    plot.setLabel("left", y_label)
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.addLegend(offset=(-8, 8), labelTextColor="#222", brush=pg.mkBrush(255, 255, 255, 210))
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)   # metrics in [0, 1] read as they are, not "x0.001"
    plot.setMenuEnabled(False)
    plot.setMinimumHeight(140)
    plot.setLimits(xMin=0)   # steps and epochs start at 1: never pan into negative ones
    return plot


class JobCurves(QWidget):
    """Two plots side by side: training loss against the optimizer step, validation metrics against the epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = _plot("Training loss", "step", "loss")
        self.val_plot = _plot("Validation", "epoch", "metric")
        self.step_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#1f77b4", width=1.5), name="per step")
        self.epoch_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=6,
                                               symbolBrush="#d62728", name="epoch mean")
        self.metric_curves: dict[str, pg.PlotDataItem] = {}
        self._key: tuple | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.val_plot, 1)

    def clear(self) -> None:
        """Empty both plots (no job selected)."""
        self.set_progress(Progress())

    def set_progress(self, progress: Progress) -> None:
        """Show a job's curves: each (epoch, step, loss) of its steps; its epoch means placed at the epoch's
        last step; each validation metric (epoch starting at 1)."""
        key = (progress.stage, progress.run_dir, len(progress.step_losses), len(progress.train_losses),
               tuple((k, len(v)) for k, v in progress.val_history.items()))
        if key == self._key:
            return
        self._key = key
        steps = progress.step_losses
        self.step_curve.setData([s for _, s, _ in steps], [loss for _, _, loss in steps])
        per_epoch = progress.steps_per_epoch or 1
        if progress.train_losses:
            last_step = {e: s for e, s, _ in steps}   # the last step seen of each epoch
            xs = [last_step.get(e, (e + 1) * per_epoch) for e, _ in progress.train_losses]
            self.epoch_curve.setData(xs, [v for _, v in progress.train_losses])
        else:
            self.epoch_curve.setData([], [])
        self.loss_plot.setTitle(f"Training loss ({progress.stage})" if progress.stage else "Training loss",
                                color="#222", size="10pt")
        for name in [n for n in self.metric_curves if n not in progress.val_history]:
            self.val_plot.removeItem(self.metric_curves.pop(name))
            self.val_plot.plotItem.legend.removeItem(name)
        for i, (name, points) in enumerate(progress.val_history.items()):
            curve = self.metric_curves.get(name)
            if curve is None:
                color = _METRIC_PENS[i % len(_METRIC_PENS)]
                curve = self.val_plot.plot([], [], pen=pg.mkPen(color, width=2), symbol="o", symbolSize=6,
                                           symbolBrush=color, name=name)
                self.metric_curves[name] = curve
            curve.setData([e + 1 for e, _ in points], [v for _, v in points])
