"""Collecting submissions (SUBMISSIONS/<student>/<assignment>/<notebook>) as untrusted files.

Students choose the names and the contents of what lands in SUBMISSIONS (an upload, a zip).
So: symbolic links are never followed (a linked folder or notebook gets a row saying so); a
notebook is read only if it is a regular file, opened without following links and without
blocking (a FIFO or a device would hang a plain read), and only up to a size limit; every
folder gets a row under a safely printable id (undecodable bytes, control characters and
backslashes escaped), with a warning where that id differs from the folder's name or the
name is unusual; and nothing about one folder stops the others from being graded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from grader.errors import UsageError
from grader.model import Assignment, Status, Submission

MAX_NOTEBOOK_BYTES = 50 * 2**20
IGNORED = {".ipynb_checkpoints", "__pycache__", ".DS_Store"}


def safe_id(name: str) -> str:
    """A folder name as an id that prints the same everywhere and maps back one-to-one."""
    out = []
    for ch in name:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8 (os.fsdecode's surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _entries(path: Path) -> list[tuple[str, os.DirEntry]]:
    """(decoded name, entry) of a directory, sorted, read as bytes so that no name is lost."""
    with os.scandir(os.fsencode(path)) as it:
        found = [(os.fsdecode(e.name), e) for e in it]
    return sorted(found, key=lambda x: x[0].encode("utf-8", "surrogateescape"))


def _kind(entry: os.DirEntry) -> str:
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


def discover(submissions: Path, model: dict[str, Assignment]
             ) -> tuple[list[Submission], list[str]]:
    """The submissions to grade and warnings; UsageError if the layout is off."""
    layout = ("Expected nbgrader's layout, one folder per student holding one folder per "
              "assignment:\n    SUBMISSIONS/<student_id>/<assignment>/<assignment>.ipynb\n"
              f"where <assignment> is one of: {', '.join(sorted(model))}.")
    if not submissions.exists():
        raise UsageError(f"grade: {submissions} does not exist. Put the collected notebooks "
                         f"there, or pass SUBMISSIONS=<dir>.\n{layout}")
    if not submissions.is_dir():
        raise UsageError(f"grade: {submissions} is not a directory.\n{layout}")
    entries = _entries(submissions)
    if not entries:
        raise UsageError(f"grade: {submissions} is empty: nothing to grade.\n{layout}")
    folders = [(n, e) for n, e in entries if _kind(e) in ("dir", "link") and n not in IGNORED]
    if folders and all(n in model for n, _ in folders):
        raise UsageError(f"grade: {submissions} has assignment folders at the top "
                         f"({', '.join(n for n, _ in folders)}): the student comes first."
                         f"\n{layout}")
    items, warnings = [], []
    for name, entry in entries:
        student, kind = safe_id(name), _kind(entry)
        if name in IGNORED:
            warnings.append(f"ignoring {student}: not a student folder")
            continue
        if kind not in ("dir", "link"):
            warnings.append(f"ignoring {student}: not a student folder")
            continue
        if student != name:
            warnings.append(f"student folder {student!r}: its name is not plain text; "
                            f"graded as {student}")
        if name.startswith("."):
            warnings.append(f"student folder {student}: hidden (starts with a dot); graded")
        if name.startswith(("=", "+", "-", "@")):
            warnings.append(f"student folder {student}: starts like a spreadsheet formula; "
                            "written to grades.csv with a leading apostrophe")
        if name in model:
            warnings.append(f"student folder {student}: named like an assignment; graded as "
                            "a student")
        if kind == "link":
            items.append(_problem(student, "", Status.SYMLINK,
                                  f"{student}/ is a symbolic link; links are not followed"))
            continue
        try:
            items += _student(Path(os.fsdecode(entry.path)), student, model, warnings)
        except OSError as e:  # unreadable: this student's row says so, the others go on
            items.append(_problem(student, "", Status.GRADING_ERROR,
                                  f"could not read {student}/: {e.strerror or e}"))
    if not any(i.assignment or (i.problem and i.problem[0] == Status.SYMLINK) for i in items):
        notebooks = sorted(str(p.relative_to(submissions)) for p in submissions.rglob("*.ipynb")
                           if not p.is_symlink())
        seen = f" It holds {', '.join(notebooks[:3])}" + (
            ", ..." if len(notebooks) > 3 else "") + "." if notebooks else ""
        raise UsageError(f"grade: no <student>/<assignment>/ folders in {submissions}.{seen}"
                         f"\n{layout}")
    return items, warnings


def _problem(student: str, assignment: str, status: Status, detail: str) -> Submission:
    return Submission(student, assignment, problem=(status, detail))


def _student(folder: Path, student: str, model: dict[str, Assignment], warnings: list[str]
             ) -> list[Submission]:
    items = []
    contents = [(n, e) for n, e in _entries(folder) if n not in IGNORED]
    for name, entry in contents:
        kind = _kind(entry)
        if name not in model:
            if kind == "dir":
                warnings.append(f"{student}/{safe_id(name)}: not an assignment, ignored")
            continue
        if kind == "link":
            items.append(_problem(student, name, Status.SYMLINK,
                                  f"{student}/{name}/ is a symbolic link; links are not "
                                  "followed"))
        elif kind == "dir":
            items.append(_notebook_item(folder / name, student, name, model))
    if items:
        return items
    stray = [n for n, _ in contents if n.endswith(".ipynb") and n[:-6] in model]
    if stray:  # the notebook is there, one level too high
        return [_problem(student, n[:-6], Status.MISSING_NOTEBOOK,
                         f"{student}/{n} is not inside a folder {n[:-6]}/") for n in stray]
    names = ", ".join(safe_id(n) for n, _ in contents) or "nothing"
    return [_problem(student, "", Status.NO_SUBMISSION,
                     f"no assignment folder in {student}/ (found {names})")]


def _notebook_item(folder: Path, student: str, assignment: str,
                   model: dict[str, Assignment]) -> Submission:
    nb_name = model[assignment].notebook + ".ipynb"
    where = f"{student}/{assignment}/{nb_name}"
    try:
        st = os.lstat(folder / nb_name)
    except FileNotFoundError:
        others = sorted(safe_id(n) for n, _ in _entries(folder) if n.endswith(".ipynb"))
        return _problem(student, assignment, Status.MISSING_NOTEBOOK,
                        f"no {nb_name} in {student}/{assignment}/"
                        + (f" (found {', '.join(others)})" if others else ""))
    if stat.S_ISLNK(st.st_mode):
        return _problem(student, assignment, Status.SYMLINK,
                        f"{where} is a symbolic link; links are not followed")
    if not stat.S_ISREG(st.st_mode):
        return _problem(student, assignment, Status.NOT_A_NOTEBOOK_FILE,
                        f"{where} is not a regular file")
    if st.st_size > MAX_NOTEBOOK_BYTES:
        return _problem(student, assignment, Status.INVALID_NOTEBOOK,
                        f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    return Submission(student, assignment, str(folder / nb_name))


def read_regular_file(path: str, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """A submitted file's bytes (a notebook, a timestamp): a regular file, no link followed,
    at most `limit` bytes.

    OSError (ELOOP for a link swapped in since discovery) or ValueError on anything else.
    """
    folder, name = os.path.split(path)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // 2**20} MB")
    return data
