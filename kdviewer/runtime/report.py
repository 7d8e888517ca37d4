"""Write a teacher-vs-student comparison as a report: ``report.html`` (self-contained) and ``cases.csv``.

The HTML holds the models (parameters, file size, latency, speed-up), the metrics side by side, the
task's plots (ROC curves and confusion matrices for classification, a per-image Dice scatter for
segmentation, per-image PSNR and SSIM for restoration) and the cases where the two models disagree
most. The plots are PNGs embedded as base64 ``<img>`` when the caller passes them (the gui and
`kdviewer compare --report` draw them with pyqtgraph), else inline SVG drawn here without Qt. ``cases.csv`` has one row per case (a study comparison: one row of its numbers).
Both files are written to a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import uuid
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from kdviewer.runtime.compare import StudyComparison
from kdviewer.runtime.compare_dataset import DatasetComparison
from kdviewer.runtime.report_plots import (
    STUDENT_COLOUR,
    TEACHER_COLOUR,
    confusion_plot,
    line_plot,
    scatter_plot,
)

TOP_CASES = 10
_STYLE = ("body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 16px}"
          "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
          "th{background:#f2f2f2}.plots svg,.plots img{margin:4px 12px 4px 0;vertical-align:top}.warn{color:#a40}"
          ".note{color:#666;font-size:90%}")


def write_report(comparison: DatasetComparison | StudyComparison, out_dir: str | Path,
                 plot_pngs: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Write ``report.html`` and ``cases.csv`` into `out_dir` (created); returns {"html": path, "csv": path}.

    plot_pngs: name -> PNG bytes of the plots, embedded (base64 ``<img>``) instead of the inline SVG ones.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, csv_path = out / "report.html", out / "cases.csv"
    _write_atomic(csv_path, cases_csv(comparison))
    _write_atomic(html_path, render_html(comparison, plot_pngs))
    return {"html": html_path, "csv": csv_path}


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` (the umask's permissions), then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def case_rows(comparison: DatasetComparison | StudyComparison) -> list[dict[str, Any]]:
    """The rows of ``cases.csv``: one per case, or one for a study (its models and numbers, flattened)."""
    if isinstance(comparison, DatasetComparison):
        return [c.row() for c in comparison.cases]
    row = {"teacher": comparison.teacher.id, "student": comparison.student.id,
           "slice_index": comparison.slice_index, "teacher_latency_ms": comparison.teacher.latency_ms,
           "student_latency_ms": comparison.student.latency_ms, "speed_up": comparison.speed_up}
    row.update(_flatten(comparison.metrics))
    return [row]


def cases_csv(comparison: DatasetComparison | StudyComparison) -> str:
    """``cases.csv`` as text: a header, then `case_rows` (floats as Python writes them: inf, nan)."""
    rows = case_rows(comparison)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in fields})
    return buf.getvalue()


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return escape("" if v is None else str(v))


def _table(header: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _delta(t: Any, s: Any) -> Any:
    numeric = (int, float)
    if isinstance(t, numeric) and isinstance(s, numeric) and not isinstance(t, bool) and not isinstance(s, bool):
        if np.isinf(t) and np.isinf(s) and t == s:
            return 0.0
        return float(s) - float(t)
    return ""


def _models_table(c: DatasetComparison | StudyComparison) -> str:
    rows = [[role, m.id, m.parameters, m.file_bytes, m.latency_ms]
            for role, m in (("teacher", c.teacher), ("student", c.student))]
    return (_table(["", "model", "parameters", "file bytes", "latency ms"], rows, "models")
            + f"<p>speed-up (teacher latency / student latency): <b>{_cell(c.speed_up)}</b></p>")


def render_html(comparison: DatasetComparison | StudyComparison, plot_pngs: dict[str, bytes] | None = None) -> str:
    """The whole report as one HTML document (plots: the PNGs given, else inline SVG)."""
    c = comparison
    title = f"{c.teacher.id} (teacher) vs {c.student.id} (student)"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>",
             "<p class='note'>Research use only. Not for diagnosis.</p>"]
    if isinstance(c, DatasetComparison):
        parts.append(f"<p>task <b>{escape(c.task)}</b>; data {escape(c.data)} (layout {escape(c.layout)}, split "
                     f"{escape(c.split)}, {len(c.cases)} cases)</p>")
    else:
        where = "the whole volume" if c.slice_index is None else f"slice {c.slice_index}"
        parts.append(f"<p>task <b>{escape(c.task)}</b>; one study, {where}</p>")
    parts += [f"<p class='warn'>warning: {escape(w)}</p>" for w in c.warnings]
    parts += ["<h2>Models</h2>", _models_table(c)]
    if isinstance(c, DatasetComparison):
        parts += _dataset_sections(c, plot_pngs)
    else:
        rows = [[k, v] for k, v in _flatten(c.metrics).items()]
        parts += ["<h2>Teacher vs student</h2>", _table(["metric", "value"], rows, "metrics")]
        if plot_pngs:
            parts += ["<h2>Plots</h2>", "<div class='plots'>", *_png_images(plot_pngs), "</div>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _png_images(plot_pngs: dict[str, bytes]) -> list[str]:
    """One ``<img>`` per PNG, embedded as base64 (the report stays one self-contained file)."""
    return [f'<img alt="{escape(name)}" title="{escape(name)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">' for name, png in plot_pngs.items()]


def _dataset_sections(c: DatasetComparison, plot_pngs: dict[str, bytes] | None = None) -> list[str]:
    rows = [[k, t, s, _delta(t, s)] for k, t, s in c.metrics_table()]
    out = ["<h2>Metrics</h2>", "<p class='note'>As <code>kdviewer evaluate</code> reports them for each model on "
           "the same items.</p>", _table(["metric", "teacher", "student", "student \u2212 teacher"], rows, "metrics"),
           "<h2>Agreement (teacher \u2194 student)</h2>",
           _table(["measure", "value"], [[k, v] for k, v in c.agreement.items()], "agreement"),
           "<h2>Plots</h2>", "<div class='plots'>", *(_png_images(plot_pngs) if plot_pngs else _plots(c)), "</div>",
           f"<h2>Cases where they disagree most (top {min(TOP_CASES, len(c.cases))})</h2>"]
    top = [case.row() for case in c.disagreements(TOP_CASES)]
    if top:
        header = list(top[0])
        out.append(_table(header, [[r.get(k) for k in header] for r in top], "disagreements"))
    return out


def _plots(c: DatasetComparison) -> list[str]:
    if c.task == "classify":
        out = []
        names = sorted({name for curves in c.roc.values() for name, _, _ in curves})
        for name in names:
            curves = []
            for role, colour in (("teacher", TEACHER_COLOUR), ("student", STUDENT_COLOUR)):
                metrics = c.teacher_metrics if role == "teacher" else c.student_metrics
                for cname, fpr, tpr in c.roc.get(role, []):
                    if cname == name:
                        label = f"{role} (AUC {_cell(metrics.get('auc'))})" if len(names) == 1 else role
                        curves.append((label, fpr, tpr, colour))
            out.append(line_plot(curves, f"ROC: {name}", "false positive rate", "true positive rate"))
        for role, metrics, colour in (("teacher", c.teacher_metrics, TEACHER_COLOUR),
                                      ("student", c.student_metrics, STUDENT_COLOUR)):
            if metrics.get("confusion"):
                out.append(confusion_plot(metrics["confusion"], c.class_names, f"confusion: {role}", colour))
        return out

    def col(side: str, key: str) -> np.ndarray:
        return np.asarray([getattr(case, side).get(key, np.nan) for case in c.cases], dtype=float)

    if c.task == "segment":
        return [scatter_plot(col("teacher", "dice"), col("student", "dice"), "Dice per image", "teacher Dice",
                             "student Dice", lim=(0.0, 1.0))]
    return [scatter_plot(col("teacher", "psnr"), col("student", "psnr"), "PSNR per image (dB)", "teacher PSNR",
                         "student PSNR"),
            scatter_plot(col("teacher", "ssim"), col("student", "ssim"), "SSIM per image", "teacher SSIM",
                         "student SSIM")]
