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
import mutants  # noqa: E402
import sample_grading  # noqa: E402


def group_of(nodeid: str) -> str:
    """The tests one pytest-xdist worker runs together: a file, or files that share a
    session fixture.

    `make test` runs this suite on two workers (ci/test_all.py), and a session or module
    fixture is built once per worker that needs it: so a file's tests stay together, and the
    files that read the sample class's grading or the chapter's run share a worker. Two
    gradings may run at once, one per worker: each test reads its own run's files, processes
    and uids, never the whole machine's (test_grading_hostile.py's GradingTree).
    """
    name = nodeid.split("::")[0].rsplit("/", 1)[-1]
    if name in ("test_grading.py", "test_grading_mutants.py", "test_grading_dask.py"):
        return "the sample class's grading"  # `sample_run`
    if name in ("test_book.py", "test_notebooks_execute.py"):
        return "the chapter's run"  # `run_all_output`
    return name


# The groups that take longest, first (serially about 260, 110, 80, 25 and 25 s): the two
# workers start on them and share out the short files after.
LONGEST_FIRST = ("the sample class's grading", "test_grading_course.py",
                 "test_grading_hostile.py", "the chapter's run", "test_release.py")


def pytest_collection_modifyitems(items):
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own --dist loadgroup reads xdist_group marks by renaming the items, which
    # pytest 9 no longer allows (the marks are silently ignored): its scheduler, grouped
    # here, in the order of the collection (not xdist's, by number of tests).
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False
    return ByGroup(config, log)


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
    """The sample class (the part this run's envs can grade) and the mutants of
    tests/grading/mutants.py, graded together once per session with JOBS=2, the default path:
    test_grading.py and test_grading_mutants.py read it, test_grading_dask.py compares with it.

    One grading, not one per class: each grading pays a fixed start, and the slow tail of
    the sample class (mia's ignored interrupt) overlaps the mutants' jobs instead of idling
    a core. "mutants" is what each mutant submission must lose (mutants.write_class)."""
    students = sample_grading.expected_for(frameworks)
    folder = sample_grading.copy_class(students, tmp_path_factory.mktemp("class"))
    build = released_copy("build-jobs2")
    fws = [fw for fw in mutants.FRAMEWORKS if fw in frameworks]
    expected_mutants = mutants.write_class(build / "release", folder, fws)
    assert not set(expected_mutants) & set(students), "mutant names clash with the sample's"
    return {**sample_grading.grade(folder, build, jobs=2),
            "mutants": expected_mutants, "mutant_frameworks": fws}
