"""The layer contracts of DESIGN.md hold, and the viewer side starts without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_viewer_side_imports_without_torch():
    code = (
        "import sys\n"
        "import kdviewer.cli, kdviewer.study, kdviewer.imaging, kdviewer.runtime, kdviewer.jobs\n"
        "kdviewer.cli.build_parser()\n"
        "bad = [m for m in ('torch', 'PySide6') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
