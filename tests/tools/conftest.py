"""Fixtures shared by the tools suite's test files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# importlib mode leaves sys.path alone: the test data's helpers are imported from here on
sys.path.insert(0, str(ROOT / "tests" / "grading"))
import sample_grading  # noqa: E402


@pytest.fixture(scope="session")
def released_build(tmp_path_factory) -> Path:
    """A build folder after `python -m grader release` of the shipped course, made once."""
    build = tmp_path_factory.mktemp("released")
    subprocess.run([sys.executable, "-m", "grader", "release", "--build", str(build)],
                   check=True, capture_output=True, timeout=300, cwd=ROOT)
    return build


@pytest.fixture(scope="session")
def released_copy(released_build, tmp_path_factory):
    """copy(name): a fresh copy of the released build in a folder of its own, for a grading
    run that would otherwise release the course first (its gradebook.digest says it is
    current), and for a test that needs the student versions."""
    import shutil

    def copy(name: str) -> Path:
        target = tmp_path_factory.mktemp(name) / "build"
        shutil.copytree(released_build, target)
        return target

    return copy


@pytest.fixture
def build(released_copy) -> Path:
    """A fresh copy of the released build (gradebook and student versions) for each test."""
    return released_copy("build")


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


@pytest.fixture(scope="session")
def sample_run(frameworks, released_copy, tmp_path_factory) -> dict:
    """The sample class (the part this run's envs can grade) graded once per session with
    JOBS=2, the default path: test_grading.py reads it, test_grading_dask.py compares with it."""
    students = sample_grading.expected_for(frameworks)
    folder = (sample_grading.CLASS if set(students) == set(sample_grading.EXPECTED) else
              sample_grading.copy_class(students, tmp_path_factory.mktemp("class")))
    return sample_grading.grade(folder, released_copy("build-jobs2"), jobs=2)
