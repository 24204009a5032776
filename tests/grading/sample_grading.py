"""The sample class (tests/grading/sample_class/, written by tests/grading/make_classes.py)
and what each of its students must get: shared by the test files that grade it.

The class is graded once per test session, with JOBS=2 and together with the mutants of
mutants.py (the `sample_run` fixture in conftest.py); test_grading.py reads that run,
test_grading_dask.py compares a cluster's grading of part of the class with it, and the
JOBS=1 check grades a quick part again.
Submissions for frameworks whose env this run did not build (`make test FRAMEWORKS=...`)
are left out, from the class and from the expectations.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
CLASS = ROOT / "tests" / "grading" / "sample_class"
EXERCISES = ROOT / "exercises"
GRADER = [sys.executable, "-m", "grader"]  # run from ROOT
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")

# student: (assignment, score, max score, status, a piece of the detail)
EXPECTED = {
    "ada": ("lazy-init-pytorch", "15", "15", "ok", ""),
    "ben": ("lazy-init-jax", "15", "15", "ok", ""),  # its notebook names the python3 kernel
    "cleo": ("lazy-init-tensorflow", "11", "15", "ok", ""),
    "dev": ("lazy-init-mxnet", "10", "15", "ok", ""),
    "eve": ("lazy-init-pytorch", "11", "15", "timeout",
            "ex2-solution ran longer than 30 s and was interrupted"),
    "fay": ("lazy-init-jax", "6", "15", "kernel died",
            "the kernel died in ex2-solution (exit status 1)"),
    "gus": ("lazy-init-mxnet", "11", "15", "memory limit",
            "ex3-solution ran out of memory (MemoryError)"),
    "hal": ("lazy-init-jax", "11", "15", "tests restored",
            "restored test cells: ex1-visible (edited), ex3-hidden (deleted)"),
    "ivy": ("lazy-init-jax", "0", "15", "invalid notebook", "not valid JSON"),
    "jon": ("lazy-init-tensorflow", "0", "15", "missing notebook",
            "no lazy-init-tensorflow.ipynb in jon/lazy-init-tensorflow/ (found Untitled.ipynb)"),
    "kim": ("lazy-init-pytorch", "15", "15", "output truncated",
            "output of ex1-solution cut to 20000 characters"),
    "leo": ("lazy-init-pytorch", "11", "15", "tests restored",
            "restored test cells: ex2-hidden (edited)"),
    "mia": ("lazy-init-pytorch", "11", "15", "timeout",
            "ex3-solution ran longer than 30 s and ignored the interrupt; the kernel was "
            "stopped"),
}
# Needs no kernel: graded the same whichever envs exist.
NO_KERNEL = {"ivy", "jon"}
# Scores per test cell, where the total alone would not show the hidden tests at work.
CELLS = {
    "cleo": {"setup": 0, "ex1-prediction-check": 1, "ex1-visible": 2, "ex1-hidden": 2,
             "ex2-prediction-check": 1, "ex2-visible": 2, "ex2-hidden": 0,
             "ex3-prediction-check": 1, "ex3-visible": 2, "ex3-hidden": 0},
    "hal": {"ex1-prediction-check": 1, "ex1-visible": 0, "ex1-hidden": 0, "ex3-hidden": 2},
    "leo": {"ex2-prediction-check": 1, "ex2-visible": 0, "ex2-hidden": 0},
}


def expected_for(frameworks) -> dict:
    """EXPECTED, less the students whose framework's env this run did not build."""
    return {s: e for s, e in EXPECTED.items()
            if s in NO_KERNEL or e[0].removeprefix("lazy-init-") in frameworks}


def copy_class(students, folder: Path) -> Path:
    for student in students:
        shutil.copytree(CLASS / student, folder / student)
    return folder


def digest(paths) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(paths)}


def leftovers() -> set[str]:
    """Processes started by mia's notebook (`sleep 4321`), by pid."""
    procs = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {line.split()[0] for line in procs.splitlines() if "sleep 4321" in line}


def grade_cmd(submissions, build, jobs=1) -> list[str]:
    return [*GRADER, "grade", "--submissions", str(submissions),
            "--jobs", str(jobs), "--build", str(build)]


def grade(submissions: Path, build: Path, jobs: int) -> dict:
    """`make grade` of `submissions` into `build`: what it printed, and what it left behind
    (the course's files before and after, processes still running)."""
    guarded = [*EXERCISES.rglob("*.ipynb"), EXERCISES / "nbgrader_config.py"]
    before, running = digest(guarded), leftovers()
    proc = subprocess.run(grade_cmd(submissions, build, jobs), capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)
    print(proc.stdout[-5000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"build": build, "out": proc.stdout, "sources_before": before,
            "sources_after": digest(guarded), "left_behind": leftovers() - running}


def read_csv(path: Path) -> dict[str, dict]:
    with path.open() as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def csv_lines(path: Path, students) -> list[str]:
    """grades.csv's header and the rows of `students`, as written, less the similarity
    report's review lines: those depend on who else the class holds."""
    from grader.similarity import REVIEW_PREFIX

    header, *rows = list(csv.reader(io.StringIO(path.read_text())))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    review = header.index("review")
    for row in rows:
        if row[0] in set(students):
            row[review] = "; ".join(p for p in row[review].split("; ")
                                    if p and not p.startswith(REVIEW_PREFIX))
            writer.writerow(row)
    return out.getvalue().splitlines()


# The course's source notebooks, read as the tests of the release and of the feedback do.


def source_nb(fw: str):
    name = f"lazy-init-{fw}"
    return nbformat.read(EXERCISES / "source" / name / f"{name}.ipynb", as_version=4)


def regions(source: str, begin: str, end: str, inside: bool = True) -> list[str]:
    """The lines of `source` inside begin/end regions, or with inside=False those outside,
    by where they sit (a check may repeat a visible line: that line is still visible)."""
    lines, within = [], False
    for line in source.splitlines():
        if begin in line:
            within = True
        elif end in line:
            within = False
        elif within == inside:
            lines.append(line)
    return lines


def hidden_tests(fw: str) -> list[str]:
    return [line for c in source_nb(fw).cells
            for line in regions(c.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")]


def visible_lines(*fws: str) -> set[str]:
    """Lines of the source notebooks outside solutions and hidden tests."""
    lines = set()
    for fw in fws or FRAMEWORKS:
        for cell in source_nb(fw).cells:
            shown = set(regions(cell.source, "BEGIN SOLUTION", "END SOLUTION", False)) & set(
                regions(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", False))
            lines |= {line.strip() for line in shown}
    return lines
