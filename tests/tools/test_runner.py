"""The headless runner (ci/run_all.py) against deliberately broken notebooks.

Each broken kind must be reported as such, the healthy notebooks beside it must still pass,
and the exit status must be non-zero. The notebooks run on a framework kernel this run set
up, but hold no framework code, so they start fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]


def write_notebook(path: Path, *sources: str, kernel: str, tags=()) -> Path:
    cells = [new_code_cell(s) for s in sources]
    for cell in cells:
        cell.metadata["tags"] = list(tags)
    nb = new_notebook(cells=cells, metadata={"kernelspec": {
        "name": kernel, "display_name": kernel, "language": "python"}})
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, frameworks):
    """One run over a healthy notebook and one of each broken kind."""
    d = tmp_path_factory.mktemp("nbs")
    k = f"d2l-{frameworks[0]}"
    nbs = [
        write_notebook(d / "healthy.ipynb", "x = 6 * 7", "assert x == 42\nprint('answer', x)",
                       kernel=k),
        write_notebook(d / "also-healthy.ipynb", "print('fine')", kernel=k),
        write_notebook(d / "tagged-raise.ipynb", "raise ValueError('expected')", kernel=k,
                       tags=["raises-exception"]),
        write_notebook(d / "error-cell.ipynb", "a = 1", "b = 2", "1 / 0", "print('never')",
                       kernel=k),
        write_notebook(d / "infinite-loop.ipynb", "while True:\n    pass", kernel=k),
        write_notebook(d / "kills-kernel.ipynb", "import os\nos._exit(1)", kernel=k),
        write_notebook(d / "unknown-kernel.ipynb", "print(1)", kernel="no-such-kernel"),
    ]
    (d / "not-json.ipynb").write_text("{ this is not json")
    nbs.append(d / "not-json.ipynb")
    out = tmp_path_factory.mktemp("out")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "run_all.py"), "--jobs", "2", "--timeout", "5",
         "--out", str(out), *map(str, nbs)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads((out / "run-all.json").read_text())
    return proc, {r["notebook"]: r for r in report["notebooks"]}, out


def test_exit_status_is_nonzero_when_any_notebook_fails(broken_run):
    proc, _, _ = broken_run
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_healthy_notebooks_still_pass_and_are_written(broken_run):
    _, rows, out = broken_run
    assert rows["healthy.ipynb"]["status"] == "passed"
    assert rows["also-healthy.ipynb"]["status"] == "passed"
    executed = nbformat.read(out / "notebooks" / "healthy.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "answer 42\n"
    assert "answer 42" in (out / "html" / "healthy.html").read_text()


@pytest.mark.parametrize("name, status, cell, error", [
    ("error-cell.ipynb", "error", 2, "ZeroDivisionError"),
    # VS Code and Colab ignore the tag, so a student's Run All would stop there too.
    ("tagged-raise.ipynb", "error", 0, "raises-exception tag is ignored"),
    ("infinite-loop.ipynb", "timeout", 0, "longer than 5 s"),
    ("kills-kernel.ipynb", "kernel died", 0, ""),
    ("unknown-kernel.ipynb", "no such kernel", None, "make setup"),
    ("not-json.ipynb", "unreadable", None, ""),
])
def test_each_broken_kind_is_reported_as_such(broken_run, name, status, cell, error):
    _, rows, _ = broken_run
    row = rows[name]
    assert (row["status"], row["cell"]) == (status, cell), row
    assert error in row["error"], row


def test_summary_table_and_live_lines_are_printed(broken_run):
    proc, rows, _ = broken_run
    assert "run-all: 2 passed, 6 failed" in proc.stdout
    for name in rows:
        assert any(line.startswith(("PASS", "FAIL")) and name in line
                   for line in proc.stdout.splitlines()), name
    assert "cell 2: ZeroDivisionError: division by zero" in proc.stdout


def test_error_cell_stops_the_notebook_there(broken_run):
    _, _, out = broken_run
    executed = nbformat.read(out / "notebooks" / "error-cell.ipynb", as_version=4)
    assert executed.cells[2].outputs[0]["ename"] == "ZeroDivisionError"
    assert executed.cells[3].outputs == []  # never ran


def test_a_missing_notebook_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "ci" / "run_all.py"), "--out",
                           str(tmp_path), str(tmp_path / "nope.ipynb")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "no such notebook" in proc.stderr and "NOTEBOOKS=" in proc.stderr
