"""Runs of the same recipe over several seeds, side by side: what a KD method buys beyond the seed-to-seed spread.

`kdviewer seeds kd='runs/kd-s*' nokd='runs/nokd-s*'` reads each run folder's metrics.json (the validation of
the checkpoint the trainer keeps, and of the last epoch) and its resolved recipe.toml (the seed), and prints one
row per group: the metric per seed, the mean and the sample standard deviation; for two groups (or with
`--baseline`), the paired differences on the seeds both have, how many of them the first group wins, the 95 %
confidence interval of the mean difference with the paired t-test's p, and the exact sign test's p. Nothing
here imports torch: it reads files the trainer wrote.
"""

from __future__ import annotations

import glob
import json
import math
import statistics
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdviewer.errors import KdviewerError
from kdviewer.jobs.events import parse_event


class SeedsError(KdviewerError):
    """A group or run folder that cannot be summarised (one line, for the CLI)."""


@dataclass(frozen=True)
class RunScore:
    """One run: its seed, the metric at the kept (best) checkpoint and at the last validated epoch."""

    path: Path
    seed: int
    best: float
    last: float
    epochs: int
    finished: bool


@dataclass(frozen=True)
class Group:
    name: str
    runs: tuple[RunScore, ...]

    def by_seed(self) -> dict[int, RunScore]:
        return {r.seed: r for r in self.runs}

    def values(self, which: str) -> list[float]:
        return [getattr(r, which) for r in self.runs]


def parse_group(spec: str) -> tuple[str, list[Path]]:
    """'NAME=RUN[,RUN...]' (each RUN a folder or a glob pattern, expanded here) -> (name, run folders)."""
    name, sep, runs = spec.partition("=")
    if not sep or not name.strip() or not runs.strip():
        raise SeedsError(f"'{spec}': write a group as NAME=RUN[,RUN...], e.g. kd='runs/kd-s*'")
    paths: list[Path] = []
    for piece in filter(None, (p.strip() for p in runs.split(","))):
        matches = sorted(glob.glob(piece)) if glob.has_magic(piece) else [piece]
        dirs = [Path(m) for m in matches if Path(m).is_dir()]
        if not dirs:
            raise SeedsError(f"group '{name}': no run folder matches '{piece}'")
        paths.extend(dirs)
    return name.strip(), paths


def read_run(path: Path, metric: str | None) -> tuple[RunScore, str]:
    """The run's score for `metric` (None: the run's primary metric) and the metric's name."""
    try:
        metrics = json.loads((path / "metrics.json").read_text())
        recipe = tomllib.loads((path / "recipe.toml").read_text())
    except FileNotFoundError as exc:
        raise SeedsError(f"{path}: not a run folder (no {Path(exc.filename).name})") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SeedsError(f"{path}: unreadable run files ({exc})") from None
    name = metric or metrics.get("primary", "")
    validated = [e for e in metrics.get("history", []) if e.get("val")]
    best = metrics.get("best") or {}
    if not validated or name not in best.get("val", {}):
        known = ", ".join(sorted(validated[-1]["val"])) if validated else "none yet"
        raise SeedsError(f"{path}: no validation value for '{name}' (metrics: {known})")
    events = path / "events.jsonl"
    finished = events.is_file() and _last_event(events) == "done"
    seed = recipe.get("seed", 0)
    return RunScore(path, int(seed), float(best["val"][name]), float(validated[-1]["val"][name]),
                    len(metrics["history"]), finished), name


def _last_event(events: Path) -> str:
    lines = events.read_text().strip().splitlines()
    return parse_event(lines[-1]).kind if lines else ""


def load_groups(specs: Sequence[str], metric: str | None = None) -> tuple[list[Group], str]:
    """The groups of `specs` ('NAME=RUN,...'), each run read, and the metric's name (all runs must agree)."""
    groups: list[Group] = []
    names: set[str] = set()  # the metric each run was read for
    for spec in specs:
        name, paths = parse_group(spec)
        if any(g.name == name for g in groups):
            raise SeedsError(f"group '{name}' given twice")
        runs: list[RunScore] = []
        for path in paths:
            score, metric_name = read_run(path, metric)
            names.add(metric_name)
            clash = next((r for r in runs if r.seed == score.seed), None)
            if clash is not None:
                raise SeedsError(f"group '{name}': {clash.path} and {path} both have seed {score.seed}")
            runs.append(score)
        groups.append(Group(name, tuple(sorted(runs, key=lambda r: r.seed))))
    if len(names) > 1:
        raise SeedsError(f"the runs have different primary metrics ({', '.join(sorted(names))}): pass --metric")
    return groups, names.pop()


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def paired(a: Group, b: Group) -> dict[str, Any]:
    """a − b on the seeds both groups have: mean differences (best, last), a's wins and ties (best) of n, and the
    uncertainty of the mean best difference (`paired_stats`)."""
    sa, sb = a.by_seed(), b.by_seed()
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return {"seeds": [], "n": 0}
    d_best = [sa[s].best - sb[s].best for s in seeds]
    d_last = [sa[s].last - sb[s].last for s in seeds]
    return {"seeds": seeds, "n": len(seeds), "best": statistics.fmean(d_best), "last": statistics.fmean(d_last),
            "wins": sum(d > 0 for d in d_best), "ties": sum(d == 0 for d in d_best), **paired_stats(d_best)}


def paired_stats(diffs: Sequence[float]) -> dict[str, Any]:
    """For paired differences (one per seed): the 95 % confidence interval of their mean (Student's t, n − 1
    degrees of freedom), the two-sided p of the paired t-test (mean 0), and the two-sided p of the exact sign
    test (wins against losses, ties dropped). Values are None where undefined (fewer than two differences, all
    differences equal, no non-tied seed). With a handful of seeds the sign test cannot go below 2 / 2**n
    (0.125 for 4 seeds), so both are printed: the t-test assumes roughly normal differences, the sign test
    assumes nothing."""
    from scipy import stats  # the viewer's own dependency; imported here to keep `kdviewer --help` fast

    n = len(diffs)
    out: dict[str, Any] = {"ci95": None, "p_t": None, "p_sign": None}
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    if wins + losses:
        out["p_sign"] = float(stats.binomtest(wins, wins + losses, 0.5).pvalue)
    if n >= 2:
        sd = statistics.stdev(diffs)
        if sd > 0:
            mean, se = statistics.fmean(diffs), sd / math.sqrt(n)
            half = float(stats.t.ppf(0.975, n - 1)) * se
            out["ci95"] = (mean - half, mean + half)
            out["p_t"] = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return out


def format_table(groups: Sequence[Group], metric: str, baseline: str | None = None, digits: int = 3) -> str:
    """A Markdown table (one row per group, "best (last)" per seed, mean ± sd) and the paired differences."""
    seeds = sorted({r.seed for g in groups for r in g.runs})
    f = f"{{:.{digits}f}}"
    head = ["group", *[f"seed {s}" for s in seeds], f"mean {metric} (last)", "sd (last)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        by_seed = g.by_seed()
        cells = [g.name]
        for s in seeds:
            r = by_seed.get(s)
            cells.append("—" if r is None else f"{f.format(r.best)} ({f.format(r.last)})"
                         + ("" if r.finished else f" unfinished, {r.epochs} epochs"))
        (mb, sdb), (ml, sdl) = _mean_sd(g.values("best")), _mean_sd(g.values("last"))
        sd = "—" if len(g.runs) < 2 else f"{f.format(sdb)} ({f.format(sdl)})"
        cells += [f"{f.format(mb)} ({f.format(ml)})", sd]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{metric} at the checkpoint the trainer keeps (best validation) and, in brackets, at the last "
                 "validated epoch; sd: sample standard deviation over seeds.")
    for a, b in _pairs(groups, baseline):
        d = paired(a, b)
        if not d["n"]:
            lines.append(f"{a.name} − {b.name}: no seed in common")
            continue
        ci = "" if d["ci95"] is None else (f" (95 % CI {d['ci95'][0]:+.{digits}f} to {d['ci95'][1]:+.{digits}f}, "
                                           f"paired t-test p = {_p(d['p_t'])})")
        sign = "" if d["p_sign"] is None else f" (sign test p = {_p(d['p_sign'])})"
        lines.append(f"{a.name} − {b.name}, paired on seeds {', '.join(map(str, d['seeds']))}: "
                     f"{d['best']:+.{digits}f}{ci}, {d['last']:+.{digits}f} at the last epoch; "
                     f"{a.name} ahead on {d['wins']} of {d['n']}" + (f", tied on {d['ties']}" if d["ties"] else "")
                     + sign)
    return "\n".join(lines)


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 0.001 else "< 0.001"


def _pairs(groups: Sequence[Group], baseline: str | None) -> Iterable[tuple[Group, Group]]:
    if baseline is None:
        return [(groups[0], groups[1])] if len(groups) == 2 else []
    base = next((g for g in groups if g.name == baseline), None)
    if base is None:
        raise SeedsError(f"--baseline '{baseline}' is not one of the groups ({', '.join(g.name for g in groups)})")
    return [(g, base) for g in groups if g is not base]
