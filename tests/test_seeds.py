"""`kdviewer seeds`: groups of runs over seeds, from the files the trainer writes (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdviewer.cli import main
from kdviewer.distill.seeds import SeedsError, format_table, load_groups, paired, paired_stats


def fake_run(root: Path, name: str, seed: int, history: list[float], primary: str = "auc",
             finished: bool = True) -> Path:
    """A run folder as the trainer leaves it: metrics.json (history, best by the primary metric), recipe.toml with
    the seed, events.jsonl ending in "done" when finished."""
    run = root / name
    run.mkdir(parents=True)
    entries = [{"epoch": i, "val": {primary: v, "accuracy": v / 2}} for i, v in enumerate(history)]
    best = max(entries, key=lambda e: e["val"][primary])
    (run / "metrics.json").write_text(json.dumps({"primary": primary, "best": best, "history": entries}))
    (run / "recipe.toml").write_text(f'name = "x"\nseed = {seed}\n\n[distill]\nseed = 99\n')
    events = [{"event": "start"}] + ([{"event": "done"}] if finished else [])
    (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    fake_run(tmp_path, "kd-s0", 0, [0.5, 0.90, 0.88])
    fake_run(tmp_path, "kd-s1", 1, [0.5, 0.80, 0.84])
    fake_run(tmp_path, "kd-s2", 2, [0.5, 0.70])
    fake_run(tmp_path, "nokd-s0", 0, [0.5, 0.85, 0.86])
    fake_run(tmp_path, "nokd-s1", 1, [0.5, 0.82, 0.81], finished=False)
    return tmp_path


def test_groups_read_best_and_last_per_seed_and_pair_by_seed(runs: Path) -> None:
    groups, metric = load_groups([f"kd={runs}/kd-s*", f"nokd={runs}/nokd-s0,{runs}/nokd-s1"])
    assert metric == "auc"
    kd, nokd = groups
    assert [(r.seed, r.best, r.last) for r in kd.runs] == [(0, 0.90, 0.88), (1, 0.84, 0.84), (2, 0.70, 0.70)]
    assert [r.finished for r in nokd.runs] == [True, False]
    d = paired(kd, nokd)
    assert d["seeds"] == [0, 1] and d["wins"] == 2
    assert d["best"] == pytest.approx(((0.90 - 0.86) + (0.84 - 0.82)) / 2)
    assert d["last"] == pytest.approx(((0.88 - 0.86) + (0.84 - 0.81)) / 2)
    table = format_table(groups, metric)
    assert "| kd | 0.900 (0.880) | 0.840 (0.840) | 0.700 (0.700) | 0.813 (0.807) | 0.103 (0.095) |" in table
    assert "| nokd | 0.860 (0.860) | 0.820 (0.810) unfinished, 3 epochs | — |" in table
    assert ("kd − nokd, paired on seeds 0, 1: +0.030 (95 % CI -0.097 to +0.157, paired t-test p = 0.2), +0.025 at "
            "the last epoch; kd ahead on 2 of 2 (sign test p = 0.5)") in table


def test_paired_stats_match_the_textbook_tests() -> None:
    stats = pytest.importorskip("scipy.stats")
    d = [0.006, 0.004, 0.015, 0.012]
    out = paired_stats(d)
    assert out["p_t"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=sum(d) / 4, scale=stats.sem(d))
    assert out["ci95"] == pytest.approx((lo, hi))
    assert out["p_sign"] == pytest.approx(2 / 2**4)  # four wins of four: 2 · 0.5**4
    # a tie is dropped from the sign test; one win and one loss is as even as it gets
    assert paired_stats([0.01, 0.0, -0.02])["p_sign"] == pytest.approx(1.0)
    assert paired_stats([0.01, 0.03, 0.02, 0.04, 0.05, -0.01])["p_sign"] == pytest.approx(14 / 64)
    # undefined: one seed (no spread), identical differences (no spread), nothing but ties
    assert paired_stats([0.02]) == {"ci95": None, "p_t": None, "p_sign": pytest.approx(1.0)}
    assert paired_stats([0.02, 0.02])["ci95"] is None and paired_stats([0.02, 0.02])["p_t"] is None
    assert paired_stats([0.0, 0.0])["p_sign"] is None


def test_another_metric_is_read_at_the_kept_checkpoint(runs: Path) -> None:
    groups, metric = load_groups([f"kd={runs}/kd-s0"], "accuracy")
    assert metric == "accuracy" and (groups[0].runs[0].best, groups[0].runs[0].last) == (0.45, 0.44)
    assert format_table(groups, metric).splitlines()[2] == "| kd | 0.450 (0.440) | 0.450 (0.440) | — |"


@pytest.mark.parametrize(("specs", "message"), [
    (["kd"], "NAME=RUN"),
    (["kd=nowhere-*"], "no run folder matches"),
    (["kd={r}/kd-s0,{r}/kd-s0"], "both have seed 0"),
    (["kd={r}/kd-s0", "kd={r}/kd-s1"], "given twice"),
    (["kd={r}"], "not a run folder"),
])
def test_bad_groups_say_what_is_wrong(runs: Path, specs: list[str], message: str) -> None:
    with pytest.raises(SeedsError, match=message):
        load_groups([s.format(r=runs) for s in specs])


def test_unknown_metric_baseline_and_mixed_primaries(runs: Path) -> None:
    with pytest.raises(SeedsError, match="no validation value for 'dice'"):
        load_groups([f"kd={runs}/kd-s0"], "dice")
    fake_run(runs, "seg", 0, [0.5, 0.6], primary="dice")
    with pytest.raises(SeedsError, match="different primary metrics"):
        load_groups([f"kd={runs}/kd-s0", f"seg={runs}/seg"])
    groups, metric = load_groups([f"kd={runs}/kd-s*", f"nokd={runs}/nokd-s*"])
    with pytest.raises(SeedsError, match="not one of the groups"):
        format_table(groups, metric, baseline="teacher")


def test_cli_prints_the_table_and_one_line_errors(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seeds", f"kd={runs}/kd-s*", f"nokd={runs}/nokd-s*", "--baseline", "nokd"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| group | seed 0 | seed 1 | seed 2 |") and "kd − nokd" in out
    assert main(["seeds", f"kd={runs}/missing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no run folder matches" in err
