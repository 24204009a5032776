"""`make help` lists every target a person can type, and every target it lists exists; the
browser install `make test` runs says what it installs and how to skip it before it does."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
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


INSTALLER = ROOT / "ci" / "install_browser.sh"


def fake_apt(tmp_path: Path) -> tuple[dict, Path]:
    """An environment in which the installer finds no browser, is root, and whose apt-get
    only writes down how it was called."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-get-calls"
    bin_dir.mkdir()
    for name, body in {"apt-get": f'echo "$*" >> {calls}', "id": "echo 0"}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "D2L_CHROMIUM": str(tmp_path / "no-chromium")}
    env.pop("SKIP_BROWSER", None)
    return env, calls


def test_the_browser_install_says_what_it_installs_and_how_to_skip_it_first(tmp_path):
    env, calls = fake_apt(tmp_path)
    out = subprocess.run(["bash", str(INSTALLER)], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert "installing Debian's chromium and fonts-dejavu-core with apt-get (as root" in out[0]
    assert out[0].endswith("to skip it: SKIP_BROWSER=1 make test")
    assert calls.read_text().splitlines()[-1].endswith("chromium fonts-dejavu-core")


def test_skip_browser_installs_nothing_and_is_the_reason_the_browser_tests_give(tmp_path):
    env, calls = fake_apt(tmp_path)
    out = subprocess.run(["bash", str(INSTALLER)], env={**env, "SKIP_BROWSER": "1"},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    # test_lab.py and test_book.py run the installer when the browser is missing and skip
    # with its last line
    assert out[-1].startswith("install_browser: SKIP_BROWSER=1: chromium not installed")
    assert not calls.exists()


spec = importlib.util.spec_from_file_location("bench", ROOT / "ci" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_make_bench_runs_the_quick_set_by_default_and_any_named_one_on_request():
    def command(*args: str) -> str:
        shown = subprocess.run(["make", "--no-print-directory", "-n", "bench", *args],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return next(line for line in shown.splitlines() if "ci/bench.py" in line)

    assert command().rstrip().endswith("ci/bench.py")
    assert command("BENCH=grading,cluster").rstrip().endswith("--only grading,cluster")
    assert bench.chosen_parts(None) == list(bench.DEFAULT)
    # the fresh set-up and the whole-class gradings only when named
    assert not {"setup", "grading", "sandbox", "verdicts", "cluster"} & set(bench.DEFAULT)
    assert bench.chosen_parts("all") == list(bench.PARTS)
    assert bench.chosen_parts("setup,book,setup") == ["setup", "book"]


def test_the_default_bench_is_estimated_under_ten_minutes_and_every_part_has_an_estimate():
    minutes = {name: float(m) for name, m in re.findall(
        r"^  ([a-z-]+) +\(~([0-9.]+) min\)", bench.__doc__, re.M)}
    assert set(minutes) == set(bench.PARTS)
    assert sum(minutes[name] for name in bench.DEFAULT) < 10


def test_an_unknown_benchmark_is_a_usage_error_that_lists_the_names(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "ci" / "bench.py"), "--only",
                           "book,bogus"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("bench: unknown benchmark bogus.")
    assert all(name in proc.stderr for name in bench.PARTS)
