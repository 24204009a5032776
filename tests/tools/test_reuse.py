"""grader/reuse.py: the fingerprint changes with everything a grade depends on, and only then.

The end-to-end side (a rerun grades nothing, a changed notebook alone is graded again, a run
killed part-way is finished by the next) is in test_grading_course.py.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from grader import reuse
from grader.model import Assignment, Deadlines, KernelSetup, Limits, Settings, Timeouts

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(memory_mb=4096, cpu_seconds=600, file_mb=64, tmpfs_mb=256, max_processes=256,
                max_output_chars=20000, max_notebook_output_chars=10**6,
                submission_timeout=600, cell_timeout=30)
TIMEOUTS = Timeouts(kernel_startup=120, iopub=8, grader_setup=120, sandbox_probe=60,
                    scheduler_connect=30, worker_wait=120)


@pytest.fixture
def parts(tmp_path) -> dict:
    source = tmp_path / "source.ipynb"
    source.write_text('{"cells": []}')
    assignment = Assignment(name="hw", notebook="hw", points={"ex1-hidden": 2.0}, cells=[],
                            released={}, tests=["ex1-hidden"], hidden=["ex1-hidden"],
                            checks={"ex1-hidden": "check()"}, kernelspec={"name": "py"},
                            source_file=str(source))
    return {"m": assignment, "secret": b"k" * 32,
            "rules": Deadlines(due={}, penalty="none", points=1.0),
            "settings": Settings(limits=LIMITS, timeouts=TIMEOUTS, uid_base=1,
                                 allow_unsandboxed=False),
            "kernel": KernelSetup(kernel_argv=["python"], env={"A": "1"}, exposed=["/venv"],
                                  python="python"),
            "sandboxed": True}


def digest(p: dict) -> str:
    return reuse.assignment_digest(p["m"], secret=p["secret"], rules=p["rules"],
                                   settings=p["settings"], kernel=p["kernel"],
                                   sandboxed=p["sandboxed"])


def test_the_assignment_digest_is_stable_and_moves_with_each_of_its_parts(parts):
    base = digest(parts)
    assert digest(dict(parts)) == base, "the same inputs, the same digest"
    changed = {
        "a hidden test's check": {"m": parts["m"].__class__(
            **{**parts["m"].to_json(), "checks": {"ex1-hidden": "check(more=True)"}})},
        "the points": {"m": parts["m"].__class__(
            **{**parts["m"].to_json(), "points": {"ex1-hidden": 3.0}})},
        "the secret": {"secret": b"j" * 32},
        "a due date": {"rules": replace(parts["rules"],
                                        due={"hw": datetime(2026, 12, 1, tzinfo=UTC)})},
        "the penalty": {"rules": replace(parts["rules"], penalty="per_hour")},
        "a limit": {"settings": replace(parts["settings"],
                                        limits=replace(LIMITS, cell_timeout=60))},
        "a timeout": {"settings": replace(parts["settings"],
                                          timeouts=replace(TIMEOUTS, iopub=9))},
        "the kernel's env": {"kernel": replace(parts["kernel"], env={"A": "2"})},
        "the sandbox": {"sandboxed": False},
    }
    seen = {base}
    for what, change in changed.items():
        d = digest({**parts, **change})
        assert d not in seen, f"{what} leaves the fingerprint as it was"
        seen.add(d)
    # a due date of another assignment is not this one's
    other = replace(parts["rules"], due={"other": datetime(2026, 12, 1, tzinfo=UTC)})
    assert digest({**parts, "rules": other}) == base


def test_the_reference_solution_file_is_in_the_digest(parts):
    base = digest(parts)
    Path(parts["m"].source_file).write_text('{"cells": [1]}')
    assert digest(parts) != base


def test_a_submission_fingerprint_moves_with_its_bytes_student_and_time():
    shared = "abc"
    base = reuse.fingerprint(shared, "ada", b"{}", [None, None])
    assert reuse.fingerprint(shared, "ada", b"{}", [None, None]) == base
    assert len({base, reuse.fingerprint(shared, "ada", b"{ }", [None, None]),
                reuse.fingerprint(shared, "ben", b"{}", [None, None]),
                reuse.fingerprint(shared, "ada", b"{}", [datetime(2026, 12, 1), None]),
                reuse.fingerprint(shared, "ada", b"{}", [None, "late, no time"]),
                reuse.fingerprint("abd", "ada", b"{}", [None, None])}) == 6


def test_the_code_digest_covers_grading_code_but_not_what_reads_results(tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "d2l_shim", root / "d2l_shim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    base = reuse.code_digest.__wrapped__(root)
    for name in sorted(reuse.AFTER_GRADING):
        (root / "grader" / name).write_text("# changed\n")
    assert reuse.code_digest.__wrapped__(root) == base, "export, collect, ... regrade nothing"
    for changed in ("grader/job.py", "grader/templates/new.j2", "grader/brand_new.py",
                    "d2l_shim/torch.py"):
        path = root / changed
        path.write_text(path.read_text() + "#" if path.exists() else "x = 1\n")
        d = reuse.code_digest.__wrapped__(root)
        assert d != base, f"{changed} changes no fingerprint"
        base = d


def test_a_fingerprint_is_written_whole_and_forgotten_first(tmp_path):
    reuse.folder(tmp_path, "ada", "hw").mkdir(parents=True)
    reuse.remember(tmp_path, "ada", "hw", "f" * 64)
    assert reuse.stored(tmp_path, "ada", "hw") == "f" * 64
    assert not list(reuse.folder(tmp_path, "ada", "hw").glob(".*tmp")), "no temporary left"
    reuse.forget(tmp_path, "ada", "hw")
    assert reuse.stored(tmp_path, "ada", "hw") is None
    reuse.forget(tmp_path, "ada", "hw")  # nothing to forget: no error
