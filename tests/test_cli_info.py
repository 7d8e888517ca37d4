"""`kdviewer info PATH [--json]`: what a user sees for a series folder, a mixed folder and a bad path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdviewer.cli import main


def test_info_json_describes_the_ircad_series(datasets_dir: Path, capsys: pytest.CaptureFixture) -> None:
    folder = datasets_dir / "ircadb-liver17" / "dicom"
    assert main(["info", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(folder) and report["skipped"] == []
    (series,) = report["series"]
    assert series["modality"] == "CT" and series["slices"] == 119
    assert series["dimensions"] == [512, 512, 119]
    assert series["spacing"] == pytest.approx([0.743, 0.743, 1.6], abs=1e-3)
    assert series["uid"].startswith("1.2.826.0.1.3680043.2.1125.") and series["warnings"] == []


def test_info_table_lists_series_and_skipped_files(datasets_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(datasets_dir / "pacsman-synthetic")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("4 series, 3 file(s) skipped")
    assert "MR        128     128×128×128" in out
    assert "pacsman.png" in out and "warning: series 3: picture file: no pixel spacing" in out
    assert "README.md: not an image file (.md)" in out


def test_info_on_a_missing_path_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err == f"kdviewer info: error: {tmp_path / 'nowhere'}: no such file or folder\n"


def test_info_runs_as_a_command(datasets_dir: Path, tmp_path: Path) -> None:
    def kdviewer(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kdviewer", *args], capture_output=True, text=True,
                              timeout=120)

    ok = kdviewer("info", "--json", str(datasets_dir / "tcia-lung-ct"))
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert [s["slices"] for s in report["series"]] == [100]
    assert report["skipped"][0]["reason"] == "not an image file (.md)"
    bad = kdviewer("info", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("kdviewer info: error: ")
