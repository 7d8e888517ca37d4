"""Small plots as inline SVG text for the comparison report: lines (ROC), scatters, confusion matrices.

No plotting library: the report stays one self-contained HTML file and needs nothing beyond numpy.
Every function returns one ``<svg>`` element as a string; text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

TEACHER_COLOUR, STUDENT_COLOUR = "#1f77b4", "#d62728"
_W, _H, _L, _R, _T, _B = 370, 300, 62, 12, 30, 44  # size and margins (px)


def _tick_labels(values: np.ndarray) -> list[str]:
    """Labels with the fewest significant digits that still tell neighbouring ticks apart."""
    for digits in range(2, 8):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


class _Frame:
    """Maps data (x, y) to pixels inside the axes; draws the axes, ticks, labels and a title."""

    def __init__(self, xlim: tuple[float, float], ylim: tuple[float, float]):
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim

    def px(self, x: np.ndarray) -> np.ndarray:
        return _L + (np.asarray(x, float) - self.x0) / ((self.x1 - self.x0) or 1.0) * (_W - _L - _R)

    def py(self, y: np.ndarray) -> np.ndarray:
        return _H - _B - (np.asarray(y, float) - self.y0) / ((self.y1 - self.y0) or 1.0) * (_H - _T - _B)

    def axes(self, title: str, xlabel: str, ylabel: str) -> list[str]:
        out = [f'<rect x="{_L}" y="{_T}" width="{_W - _L - _R}" height="{_H - _T - _B}" fill="white" '
               'stroke="#444"/>',
               f'<text x="{_W / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
               f'<text x="{(_L + _W - _R) / 2}" y="{_H - 6}" text-anchor="middle">{escape(xlabel)}</text>',
               f'<text x="14" y="{(_T + _H - _B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(_T + _H - _B) / 2})">{escape(ylabel)}</text>']
        xs, ys = np.linspace(self.x0, self.x1, 5), np.linspace(self.y0, self.y1, 5)
        for v, label in zip(xs, _tick_labels(xs), strict=True):
            x = float(self.px(v))
            out.append(f'<line x1="{x:.1f}" y1="{_H - _B}" x2="{x:.1f}" y2="{_H - _B + 4}" stroke="#444"/>'
                       f'<text x="{x:.1f}" y="{_H - _B + 16}" text-anchor="middle">{label}</text>')
        for v, label in zip(ys, _tick_labels(ys), strict=True):
            y = float(self.py(v))
            out.append(f'<line x1="{_L - 4}" y1="{y:.1f}" x2="{_L}" y2="{y:.1f}" stroke="#444"/>'
                       f'<text x="{_L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        return out

    def diagonal(self) -> str:
        lo, hi = max(self.x0, self.y0), min(self.x1, self.y1)
        return (f'<line x1="{float(self.px(lo)):.1f}" y1="{float(self.py(lo)):.1f}" x2="{float(self.px(hi)):.1f}" '
                f'y2="{float(self.py(hi)):.1f}" stroke="#999" stroke-dasharray="4 3"/>')


def _svg(body: list[str], width: int = _W, height: int = _H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">' + "".join(body) + "</svg>")


def _legend(names: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for k, (name, colour) in enumerate(names):
        y = _T + 14 + 14 * k
        out.append(f'<rect x="{_W - _R - 150}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{_W - _R - 136}" y="{y + 1}">{escape(name)}</text>')
    return out


def line_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray, str]], title: str, xlabel: str, ylabel: str,
              xlim: tuple[float, float] = (0.0, 1.0), ylim: tuple[float, float] = (0.0, 1.0),
              diagonal: bool = True) -> str:
    """Polylines (name, x, y, colour) in one frame, e.g. ROC curves (fpr, tpr), with a legend; every second
    curve is dashed, so two identical curves both stay visible."""
    f = _Frame(xlim, ylim)
    body = f.axes(title, xlabel, ylabel)
    if diagonal:
        body.append(f.diagonal())
    for k, (_, x, y, colour) in enumerate(curves):
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(f.px(x), f.py(y), strict=True))
        dash = ' stroke-dasharray="6 4"' if k % 2 else ""
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
    body += _legend([(name, colour) for name, _, _, colour in curves])
    return _svg(body)


def _limits(values: np.ndarray, pad: float = 0.05) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo or max(abs(hi), 1.0) * 0.1
    return lo - pad * span, hi + pad * span


def scatter_plot(x: np.ndarray, y: np.ndarray, title: str, xlabel: str, ylabel: str,
                 lim: tuple[float, float] | None = None, colour: str = "#444") -> str:
    """Points (x, y) with the line y = x, both axes on one range; nan points are left out and ±inf drawn
    on the frame's edge (a hollow marker)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    lo, hi = lim if lim is not None else _limits(np.concatenate([x, y]))
    f = _Frame((lo, hi), (lo, hi))
    body = f.axes(title, xlabel, ylabel) + [f.diagonal()]
    for a, b in zip(x, y, strict=True):
        edge = not (np.isfinite(a) and np.isfinite(b))
        px, py = float(f.px(np.clip(a, lo, hi))), float(f.py(np.clip(b, lo, hi)))
        fill = "none" if edge else colour
        body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{fill}" stroke="{colour}" '
                    'fill-opacity="0.7"/>')
    body.append(f'<text x="{_L + 6}" y="{_T + 14}">n = {int(x.size)}</text>')
    return _svg(body)


def confusion_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str,
                   colour: str = TEACHER_COLOUR) -> str:
    """A confusion matrix (rows true, columns predicted) as shaded cells with their counts."""
    m = np.asarray(matrix, dtype=float)
    n = m.shape[0]
    names = list(class_names)[:n] + [str(k) for k in range(len(class_names), n)]
    cell = max(18, min(48, 240 // max(n, 1)))
    left, top = 90, 40
    width, height = left + cell * n + 12, top + cell * n + 40
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    body = [f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
            f'<text x="{left + cell * n / 2}" y="{height - 6}" text-anchor="middle">predicted</text>',
            f'<text x="10" y="{top - 8}">true \u2193</text>']
    for i in range(n):
        body.append(f'<text x="{left - 4}" y="{top + cell * i + cell / 2 + 4}" text-anchor="end">'
                    f'{escape(names[i][:14])}</text>')
        body.append(f'<text x="{left + cell * i + cell / 2}" y="{top + cell * n + 14}" text-anchor="middle">'
                    f'{escape(names[i][:6])}</text>')
        for j in range(n):
            x, y = left + cell * j, top + cell * i
            body.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" '
                        f'fill-opacity="{0.08 + 0.85 * share[i, j]:.3f}" stroke="white"/>'
                        f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                        f'fill="{"white" if share[i, j] > 0.5 else "black"}">{int(m[i, j])}</text>')
    return _svg(body, width, height)
