"""Grading only what changed: a fingerprint of everything a submission's grade depends on.

A submission's stored result is reused when the fingerprint written beside it is the one it
would get now. The fingerprint covers the notebook's bytes and its timestamp.txt; the
assignment as the course defines it (cells, hidden tests, checks, points) and the reference
solution's bytes; the grading secret (hence the seeds); the assignment's deadline rules; the
grader's limits and timeouts; whether it runs sandboxed and on which kernel; and the code of
the grader (less the modules that only read its results) and of d2l_shim. Anything else
changing (a framework upgraded in its env) is not seen: FORCE=1 regrades everyone.

A run may be killed at any point. The fingerprint is the last file written for a
submission, after its pages, its gradebook entry and its result.json, and the first one
removed when the submission is recorded again (grade.py's record_one). So each submission is
either complete and fingerprinted, or has no fingerprint and is graded again by the next run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from grader.model import Assignment, Deadlines, KernelSetup, Settings
from grader.paths import ROOT

FILE = "fingerprint"
# Modules that only read what grading stored, after it: a change to them changes no grade,
# so it regrades nothing. Every other file of grader/ (a new one too) is in the fingerprint.
AFTER_GRADING = {"__main__.py", "export.py", "lms.py", "lms_collect.py", "override.py",
                 "similarity.py"}


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(
            part, sort_keys=True, default=str).encode()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


@functools.cache
def code_digest(root: Path = ROOT) -> str:
    """The grader's own code and templates, and the shim the notebooks import."""
    files = sorted(p for folder in (root / "grader", root / "d2l_shim") if folder.is_dir()
                   for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and not (p.parent == root / "grader" and p.name in AFTER_GRADING))
    return _digest(*(x for p in files for x in (str(p.relative_to(root)), p.read_bytes())))


def assignment_digest(m: Assignment, *, secret: bytes, rules: Deadlines, settings: Settings,
                      kernel: KernelSetup, sandboxed: bool) -> str:
    """What every submission of assignment `m` shares in its fingerprint."""
    due = rules.due.get(m.name)
    deadline = {"due": due and due.isoformat(), "penalty": rules.penalty,
                "points": rules.points}
    return _digest(m.to_json(), Path(m.source_file).read_bytes(), hashlib.sha256(secret).digest(),
                   deadline, asdict(settings), kernel.for_job(), sandboxed, code_digest())


def fingerprint(shared: str, student: str, notebook: bytes, timestamp) -> str:
    """One submission's: its assignment's digest, its student, its bytes and hand-in time."""
    return _digest(shared, student, notebook, timestamp)


def folder(build: Path, student: str, assignment: str) -> Path:
    return build / "grading" / student / assignment


def stored(build: Path, student: str, assignment: str) -> str | None:
    try:
        return (folder(build, student, assignment) / FILE).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None


def forget(build: Path, student: str, assignment: str) -> None:
    """Before a submission's files are written again: it is not complete until remember()."""
    (folder(build, student, assignment) / FILE).unlink(missing_ok=True)


def remember(build: Path, student: str, assignment: str, value: str) -> None:
    write_atomic(folder(build, student, assignment) / FILE, value + "\n")


def write_atomic(path: Path, text: str) -> None:
    """The file whole or not at all: a reader, or a run killed mid-write, never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
