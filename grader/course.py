"""The course: its nbgrader configuration, the release, and what grading needs to know of it.

The course is a folder (exercises/ by default) holding nbgrader_config.py and
source/<assignment>/<assignment>.ipynb, the versions with solutions and hidden tests.
Everything generated goes to the build folder (build/ by default), itself an nbgrader course
root: source/ (a copy), release/, gradebook.db, plus grading-secret, which seeds the hidden
tests per student (created once, kept with the gradebook).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
import shutil
import sys
from pathlib import Path

from grader.checks import check_source, split_regions
from grader.errors import UsageError
from grader.model import Assignment
from grader.paths import gradebook_url, show


def load_config(course: Path, build: Path):
    """The course's nbgrader_config.py, with the course root and gradebook under `build`."""
    from traitlets.config.loader import PyFileConfigLoader

    if not (course / "nbgrader_config.py").is_file():
        raise UsageError(f"no nbgrader_config.py in {course}: is that a course folder?")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    cfg.CourseDirectory.root = str(build)
    cfg.CourseDirectory.db_url = gradebook_url(build)
    return cfg


def assignment_names(course: Path) -> list[str]:
    source = course / "source"
    if not source.is_dir():
        raise UsageError(f"no source/ folder in {course}: is that a course folder?")
    names = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UsageError(f"no assignments in {source}")
    return names


def source_digest(course: Path) -> str:
    """Hash of everything release turns into the gradebook: source notebooks and config."""
    h = hashlib.sha256()
    files = sorted(p for p in (course / "source").rglob("*") if p.is_file()
                   and ".ipynb_checkpoints" not in p.parts)
    for p in [course / "nbgrader_config.py", *files]:
        h.update(str(p.relative_to(course)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def release(course: Path, build: Path, quiet: bool = False) -> int:
    from nbgrader.apps import NbGraderAPI

    build.mkdir(parents=True, exist_ok=True)
    names = assignment_names(course)
    # nbgrader reads sources from <root>/source: a fresh copy, so that deleted exercises go.
    shutil.rmtree(build / "source", ignore_errors=True)
    shutil.copytree(course / "source", build / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    api = NbGraderAPI(config=load_config(course, build))
    for name in names:
        result = api.generate_assignment(name, force=True, create=True)
        if not result["success"]:
            print(result.get("log", ""), file=sys.stderr)
            raise UsageError(f"nbgrader generate_assignment failed for {name}:\n"
                             f"{result.get('error', '')}")
        released = build / "release" / name / f"{name}.ipynb"
        text = released.read_text()
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
            if marker in text:  # nbgrader would have said so; checked because it matters
                raise UsageError(f"{released} still contains {marker!r}")
        if not quiet:
            print(f"release: {show(released)}", flush=True)
    record_due_dates(course, build)
    (build / "gradebook.digest").write_text(source_digest(course) + "\n")
    grading_secret(build)
    if not quiet:
        print(f"release: {len(names)} assignments; student versions in "
              f"{show(build / 'release')}, gradebook {show(build / 'gradebook.db')}")
    return 0


def record_due_dates(course: Path, build: Path) -> None:
    """The due dates of c.GradingDeadlines, where nbgrader's own tools look for them."""
    from nbgrader.api import Gradebook

    from grader import late

    rules = late.settings(load_config(course, build))
    with Gradebook(gradebook_url(build)) as gb:
        for assignment in gb.assignments:
            assignment.duedate = rules.due.get(assignment.name)
        gb.db.commit()


def ensure_release(course: Path, build: Path) -> None:
    """Run release first when the gradebook is missing or older than the course's sources."""
    stamp = build / "gradebook.digest"
    fresh = ((build / "gradebook.db").exists() and stamp.exists()
             and stamp.read_text().strip() == source_digest(course))
    if not fresh:
        print("grade: the gradebook is missing or older than the course's sources; "
              "running release first", flush=True)
        release(course, build, quiet=True)


def grading_secret(build: Path) -> bytes:
    """The key the hidden tests' seeds are derived from: made once, readable by root alone,
    never inside a sandbox. Without it a student could compute their own sizes."""
    path = build / "grading-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return bytes.fromhex(path.read_text().strip())


def seed(secret: bytes, student: str, assignment: str, cell: str, answers: str = "") -> int:
    """The same for a regrade of the same notebook, different between students and between
    one student's submissions (`answers`: a digest of the notebook's bytes), so that sizes
    seen in one round's feedback say nothing of the next one's."""
    mac = hmac.new(secret, f"{student}\0{assignment}\0{cell}\0{answers}".encode(),
                   hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "big") % (2**31 - 1)


def course_model(course: Path, build: Path) -> dict[str, Assignment]:
    """Each assignment by name: its cells as the instructor wrote them (the hidden tests in),
    as students got them, its kernel, test cells and points."""
    import nbformat
    from nbgrader.api import Gradebook

    found, names = {}, assignment_names(course)
    with Gradebook(gradebook_url(build)) as gb:
        for assignment in gb.assignments:
            if assignment.name not in names:  # released once, since removed from source/
                continue
            if len(assignment.notebooks) != 1:
                raise UsageError(f"assignment {assignment.name} has "
                                 f"{len(assignment.notebooks)} notebooks; expected one")
            nb = assignment.notebooks[0]
            stored = {c.name: c.source for c in nb.source_cells}
            found[assignment.name] = (nb.name, {c.name: float(c.max_score)
                                                for c in nb.grade_cells}, stored)
    model = {}
    for name, (notebook, points, stored) in found.items():
        source_file = str(build / "source" / name / f"{notebook}.ipynb")
        source = nbformat.read(source_file, as_version=4)
        released = nbformat.read(build / "release" / name / f"{notebook}.ipynb", as_version=4)
        cells, tests, hidden, checks = [], [], [], {}
        for cell in source.cells:
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            meta = cell.metadata.get("nbgrader") or {}
            gid = meta.get("grade_id")
            if gid and meta.get("locked") and stored.get(gid, cell.source) != cell.source:
                raise UsageError(f"{name}: cell {gid} differs between build/source and the "
                                 "gradebook; run `make release` again")
            if gid and meta.get("grade") and cell.cell_type == "code":
                tests.append(gid)
                check = check_source(cell.source)
                if check is not None and not _visible_part(cell.source):
                    hidden.append(gid)
                if check is not None and points.get(gid):  # 0 points: stand-ins only
                    checks[gid] = check
                elif points.get(gid):
                    raise UsageError(
                        f"{name}: test cell {gid} has no check. Its points are given by the "
                        "observations of its hidden region (### BEGIN HIDDEN TESTS), compared "
                        "with the reference solution's: see exercises/README.md, 'Writing a "
                        "check'")
            cells.append(cell)
        kernelspec = dict(source.metadata.get("kernelspec", {}))
        if not kernelspec.get("name"):
            raise UsageError(f"{name}: the source notebook names no kernel")
        model[name] = Assignment(
            name=name, notebook=notebook, points=points, cells=cells,
            released={c.metadata.nbgrader["grade_id"]: c for c in released.cells
                      if (c.metadata.get("nbgrader") or {}).get("grade_id")},
            tests=tests, hidden=hidden, checks=checks, kernelspec=kernelspec,
            source_file=source_file)
    return model


def _visible_part(cell_source: str) -> str:
    """What of a test cell students see and run, comments and blank lines aside."""
    visible = split_regions(cell_source)[0]
    return "\n".join(line for line in visible
                     if line.strip() and not line.strip().startswith("#"))


