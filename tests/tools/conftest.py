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
    """The group of test files one pytest-xdist worker runs, one file after another.

    `make test` runs this suite on two workers (ci/test_all.py), and a session or module
    fixture is built once per worker that needs it: so a file's tests stay together, and the
    files that read the sample class's grading or the chapter's run share a worker. Every
    file that grades in the sandbox is one group, as on a machine of its own: the hostile
    class's checks read the whole machine (processes of the grading uids, /tmp's scratch
    folders, the grader's memory), and two gradings at once would be each other's leftovers.
    """
    name = nodeid.split("::")[0].rsplit("/", 1)[-1]
    if name.startswith("test_grading") or name == "test_config.py":
        return "grading in the sandbox"
    if name in ("test_book.py", "test_notebooks_execute.py"):
        return "the chapter's run"  # `run_all_output`
    return name


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own --dist loadgroup reads xdist_group marks by renaming the items, which
    # pytest 9 no longer allows (the marks are silently ignored): its scheduler, grouped here.
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

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
