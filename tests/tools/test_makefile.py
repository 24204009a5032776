"""`make help` lists every target a person can type, and every target it lists exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_help_lists_every_target():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    phony = {t for line in re.findall(r"^\.PHONY:(.*)$", makefile, re.M) for t in line.split()}
    assert phony <= targets, f"declared without a recipe: {sorted(phony - targets)}"
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    listed = set(re.findall(r"^\s*make ([a-z-]+)", shown, re.M))
    listed |= set(re.findall(r"^\s*make [a-z-]+ / ([a-z-]+)", shown, re.M))
    assert targets <= listed, f"not in make help: {sorted(targets - listed)}"
    assert listed <= targets, f"listed but missing: {listed - targets}"
