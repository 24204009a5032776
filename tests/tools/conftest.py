"""Fixtures shared by the tools suite's test files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run_all_output(frameworks, tmp_path_factory):
    """The chapter notebooks executed once per session the way `make run-all` does:
    (process, run-all.json, output folder). The book's tests build on the same run."""
    out = tmp_path_factory.mktemp("run-all")
    paths = [str(ROOT / "notebooks" / f"lazy-init-{fw}.ipynb") for fw in frameworks]
    proc = subprocess.run([sys.executable, str(ROOT / "ci" / "run_all.py"), "--out", str(out),
                           *paths], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    report = json.loads((out / "run-all.json").read_text())
    return proc, report, out
