"""Graded exercises with nbgrader: student versions and autograding, several at a time.

Usage (from the tools env; `make release` and `make grade` call these):
    python ci/grading.py release [--build DIR]
    python ci/grading.py grade --submissions DIR [--jobs N] [--build DIR]

The nbgrader course is exercises/: its nbgrader_config.py and source/<assignment>/. Everything
generated goes to the build directory (default build/), which is itself an nbgrader course
root: source/ (a copy), release/, gradebook.db, autograded/, feedback/, plus grades.csv and
the scratch directories of the grading jobs, grading/<student>/<assignment>/.

release  copies exercises/source to build/source and runs nbgrader's generate_assignment on
         every assignment: build/release/ gets the student versions (solutions and hidden
         tests removed) and build/gradebook.db the assignments, their test cells and points.

grade    autogrades SUBMISSIONS/<student_id>/<assignment>/<assignment>.ipynb, JOBS at a time.
         nbgrader grades one submission after another and its sqlite gradebook is not safe
         for concurrent writers, so each submission is graded by nbgrader's own autograde and
         generate_feedback in a job of its own: a subprocess with a scratch course directory
         and a throwaway copy of the gradebook. This process alone writes the real gradebook
         and grades.csv, serially, in sorted order, once every job is done; so JOBS=1 and
         JOBS=8 write the same grades.

Student code runs on this machine. Each grading kernel is started through the `_sandbox`
launcher below: on Linux it gets a private mount and PID namespace in which the repository,
the build directory and the submissions are hidden and everything else is read-only except
a private /tmp and its own working directory; it has no capabilities, a memory (address
space) limit, a CPU time limit and a file size limit, and dies with its grading job, taking
any process it started along. Where namespaces are not available (macOS, some containers)
only the limits apply, and the run says so. Either way the real gradebook is written by this
process only, after the jobs, from a snapshot taken before them (restored if student code
changed it, like the source and release notebooks), and scores are clamped to the points in
that gradebook.
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "exercises"
SOURCE = EXERCISES / "source"
STATUS_ORDER = ["missing notebook", "invalid notebook", "no submission", "grading error",
                "submission timeout", "kernel died", "timeout", "memory limit",
                "tests restored", "output truncated"]
MAX_NOTEBOOK_BYTES = 50 * 2**20
# What the grading kernel may see of this repository (read-only) when the rest is hidden.
EXPOSED = [ROOT / ".venvs", ROOT / "d2l_shim"]


class UsageError(Exception):
    """Bad input from the person running the command: printed without a traceback."""


# --------------------------------------------------------------------------------------------
# configuration


def gradebook_url(course: Path) -> str:
    """The sqlite URL of the gradebook in a course directory (build/, or a job's scratch)."""
    return f"sqlite:///{course / 'gradebook.db'}"


def load_config(build: Path):
    """exercises/nbgrader_config.py, with the course root and gradebook under `build`."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(EXERCISES)).load_config()
    cfg.CourseDirectory.root = str(build)
    cfg.CourseDirectory.db_url = gradebook_url(build)
    return cfg


def grading_limits(cfg) -> dict:
    """The GradingLimits section of nbgrader_config.py (a section nbgrader itself ignores)."""
    from traitlets import Integer
    from traitlets.config import Configurable

    class GradingLimits(Configurable):
        memory_mb = Integer(4096, help="address space of one grading kernel").tag(config=True)
        max_output_chars = Integer(20000, help="output kept per cell").tag(config=True)
        submission_timeout = Integer(600, help="seconds for one submission").tag(config=True)

    limits = GradingLimits(config=cfg)
    return {"memory_mb": limits.memory_mb, "max_output_chars": limits.max_output_chars,
            "submission_timeout": limits.submission_timeout,
            "cell_timeout": int(cfg.Execute.get("timeout", 30))}


def source_digest() -> str:
    """Hash of everything release turns into the gradebook: source notebooks and config."""
    h = hashlib.sha256()
    files = sorted(p for p in SOURCE.rglob("*") if p.is_file()
                   and ".ipynb_checkpoints" not in p.parts)
    for p in [EXERCISES / "nbgrader_config.py", *files]:
        h.update(str(p.relative_to(EXERCISES)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def show(path: Path) -> str:
    """A path as the person at the terminal would type it: relative to the repository."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def assignment_names() -> list[str]:
    names = sorted(p.name for p in SOURCE.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UsageError(f"no assignments in {SOURCE}")
    return names


# --------------------------------------------------------------------------------------------
# release


def release(build: Path, quiet: bool = False) -> int:
    from nbgrader.apps import NbGraderAPI

    build.mkdir(parents=True, exist_ok=True)
    names = assignment_names()
    # nbgrader reads sources from <root>/source: a fresh copy, so that deleted exercises go.
    shutil.rmtree(build / "source", ignore_errors=True)
    shutil.copytree(SOURCE, build / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    api = NbGraderAPI(config=load_config(build))
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
    (build / "gradebook.digest").write_text(source_digest() + "\n")
    if not quiet:
        print(f"release: {len(names)} assignments; student versions in "
              f"{show(build / 'release')}, gradebook {show(build / 'gradebook.db')}")
    return 0


def ensure_release(build: Path) -> None:
    """Run release first when the gradebook is missing or older than exercises/source."""
    stamp = build / "gradebook.digest"
    fresh = ((build / "gradebook.db").exists() and stamp.exists()
             and stamp.read_text().strip() == source_digest())
    if not fresh:
        print("grade: the gradebook is missing or older than exercises/source; "
              "running release first", flush=True)
        release(build, quiet=True)


# --------------------------------------------------------------------------------------------
# grade: the parent


def course_model(build: Path) -> dict:
    """For each assignment: its notebook, kernel, test cells and points, in notebook order."""
    import nbformat
    from nbgrader.api import Gradebook

    model, names = {}, assignment_names()
    with Gradebook(gradebook_url(build)) as gb:
        for assignment in gb.assignments:
            if assignment.name not in names:  # released once, since removed from source/
                continue
            if len(assignment.notebooks) != 1:
                raise UsageError(f"assignment {assignment.name} has "
                                 f"{len(assignment.notebooks)} notebooks; expected one")
            nb = assignment.notebooks[0]
            kernelspec = json.loads(nb.kernelspec) if nb.kernelspec else {}
            points = {c.name: float(c.max_score) for c in nb.grade_cells}
            model[assignment.name] = {"notebook": nb.name, "kernel": kernelspec.get("name"),
                                      "points": points}
    for name, m in model.items():
        released = nbformat.read(build / "release" / name / f"{m['notebook']}.ipynb",
                                 as_version=4)
        order, tests = [], {}
        for cell in released.cells:
            meta = cell.metadata.get("nbgrader", {})
            if "grade_id" in meta:
                order.append(meta["grade_id"])
                if meta.get("grade"):
                    tests[meta["grade_id"]] = cell.source
        m.update(order=order, released_tests=tests, max_score=sum(m["points"].values()))
    return model


def discover(submissions: Path, model: dict) -> tuple[list[dict], list[str]]:
    """The (student, assignment) pairs to grade, and warnings; UsageError if the layout is off."""
    layout = ("Expected nbgrader's layout, one folder per student holding one folder per "
              "assignment:\n    SUBMISSIONS/<student_id>/<assignment>/<assignment>.ipynb\n"
              f"where <assignment> is one of: {', '.join(sorted(model))}.")
    if not submissions.exists():
        raise UsageError(f"grade: {submissions} does not exist. Put the collected notebooks "
                         f"there, or pass SUBMISSIONS=<dir>.\n{layout}")
    if not submissions.is_dir():
        raise UsageError(f"grade: {submissions} is not a directory.\n{layout}")
    entries = sorted(p for p in submissions.iterdir() if not p.name.startswith("."))
    if not entries:
        raise UsageError(f"grade: {submissions} is empty: nothing to grade.\n{layout}")
    if any(p.name in model for p in entries if p.is_dir()):
        raise UsageError(f"grade: {submissions} has assignment folders at the top "
                         f"({', '.join(p.name for p in entries if p.name in model)}): "
                         f"the student comes first.\n{layout}")
    items, warnings, folders = [], [], 0
    for student in entries:
        if not student.is_dir():
            warnings.append(f"ignoring {student.name}: not a student folder")
            continue
        found = False
        contents = sorted(p for p in student.iterdir() if not p.name.startswith("."))
        for sub in contents:
            if sub.is_dir() and sub.name in model:
                found = True
                folders += 1
                nb_name = model[sub.name]["notebook"] + ".ipynb"
                item = {"student": student.name, "assignment": sub.name,
                        "path": str(sub / nb_name)}
                if not (sub / nb_name).is_file():
                    others = sorted(p.name for p in sub.glob("*.ipynb"))
                    item["problem"] = ("missing notebook", f"no {nb_name} in "
                                       f"{student.name}/{sub.name}/" + (
                                           f" (found {', '.join(others)})" if others else ""))
                items.append(item)
            elif sub.is_dir():
                warnings.append(f"{student.name}/{sub.name}: not an assignment, ignored")
        if not found:
            names = ", ".join(p.name for p in contents) or "nothing"
            stray = [p for p in contents if p.suffix == ".ipynb" and p.stem in model]
            if stray:  # the notebook is there, one level too high
                for p in stray:
                    items.append({"student": student.name, "assignment": p.stem,
                                  "path": str(p), "problem": (
                                      "missing notebook",
                                      f"{student.name}/{p.name} is not inside a folder "
                                      f"{p.stem}/")})
            else:
                items.append({"student": student.name, "assignment": "", "path": "",
                              "problem": ("no submission",
                                          f"no assignment folder in {student.name}/ "
                                          f"(found {names})")})
    if not folders:  # not one <student>/<assignment>/ folder: the layout, not the students
        notebooks = sorted(p.relative_to(submissions) for p in submissions.rglob("*.ipynb"))
        seen = f" It holds {', '.join(map(str, notebooks[:3]))}" + (
            ", ..." if len(notebooks) > 3 else "") + "." if notebooks else ""
        raise UsageError(f"grade: no <student>/<assignment>/ folders in {submissions}.{seen}"
                         f"\n{layout}")
    return items, warnings


def precheck(item: dict) -> tuple[str, str] | None:
    """Problems found without running anything: a file that is not a notebook."""
    import nbformat

    if "problem" in item:
        return item["problem"]
    path = Path(item["path"])
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return "invalid notebook", f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
    try:
        text = path.read_bytes().decode("utf-8")
        json.loads(text)
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError:
        return "invalid notebook", "not UTF-8 text"
    except json.JSONDecodeError as e:
        return "invalid notebook", f"not valid JSON ({e.msg}, line {e.lineno})"
    except Exception as e:  # valid JSON but not a notebook nbformat accepts
        return "invalid notebook", f"not a Jupyter notebook ({str(e).splitlines()[0][:120]})"
    return None


def zero_result(item: dict, model: dict, status: str, detail: str) -> dict:
    m = model.get(item["assignment"])
    return {"student": item["student"], "assignment": item["assignment"],
            "status": [status], "detail": [detail],
            "cells": dict.fromkeys(m["points"], 0.0) if m else {}, "seconds": 0.0}


def run_job(item: dict, model: dict, build: Path, limits: dict, sandbox: dict,
            snapshot: bytes, hide: list[str]) -> dict:
    """Autograde one submission in a subprocess with its own scratch course and gradebook."""
    start = time.monotonic()
    scratch = build / "grading" / item["student"] / item["assignment"]
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / "gradebook.db").write_bytes(snapshot)  # never the real one: see the docstring
    m = model[item["assignment"]]
    spec = {**item, "scratch": str(scratch), "notebook": m["notebook"], "kernel": m["kernel"],
            "order": m["order"], "released_tests": m["released_tests"], "limits": limits,
            "sandbox": sandbox["mode"], "hide": hide}
    (scratch / "job.json").write_text(json.dumps(spec))
    log = (scratch / "job.log").open("w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_autograde",
                             str(scratch / "job.json")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=scratch, start_new_session=True)
    try:
        proc.wait(timeout=limits["submission_timeout"])
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel dies with it (PR_SET_PDEATHSIG)
        proc.wait()
        return {**zero_result(item, model, "submission timeout",
                              f"grading took longer than {limits['submission_timeout']} s "
                              "and was stopped"), "seconds": time.monotonic() - start}
    finally:
        log.close()
    result_file = scratch / "result.json"
    if proc.returncode != 0 or not result_file.exists():
        tail = (scratch / "job.log").read_text(errors="replace").strip().splitlines()[-1:]
        return {**zero_result(item, model, "grading error",
                              f"the grading job failed ({tail[0][:200] if tail else 'no log'})"
                              f"; see {(scratch / 'job.log').relative_to(build)}"),
                "seconds": time.monotonic() - start}
    result = json.loads(result_file.read_text())
    result["seconds"] = time.monotonic() - start
    return result


def clamp_cells(result: dict, points: dict) -> dict:
    """Scores per test cell, limited to the cells and points of the real gradebook."""
    cells = {}
    for name, max_score in points.items():
        try:
            score = float(result["cells"].get(name) or 0.0)
        except (TypeError, ValueError):
            score = 0.0
        cells[name] = min(max(score, 0.0), max_score)
    return cells


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def status_text(result: dict) -> str:
    found = [s for s in STATUS_ORDER if s in result["status"]]
    return "; ".join(found) if found else "ok"


def write_gradebook(build: Path, results: list[dict], model: dict) -> None:
    """Record every result in the real gradebook, one after another, in sorted order.

    This is the step nbgrader's SaveAutoGrades does inside autograde; here the scores come
    from the jobs' throwaway gradebooks, so the real one has a single writer.
    """
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with Gradebook(gradebook_url(build)) as gb, warnings.catch_warnings():
        # nbgrader's own update_or_create_submission trips these autoflush warnings; harmless.
        warnings.simplefilter("ignore", SAWarning)
        for r in results:
            if r["assignment"] not in model:
                continue
            gb.update_or_create_student(r["student"])
            gb.update_or_create_submission(r["assignment"], r["student"])
            nb = gb.find_submission_notebook(model[r["assignment"]]["notebook"],
                                             r["assignment"], r["student"])
            for grade in nb.grades:
                if grade.name in r["cells"]:
                    grade.auto_score = r["cells"][grade.name]
                    grade.needs_manual_grade = False
            gb.db.commit()


def feedback_stub(path: Path, result: dict) -> None:
    """Feedback for a submission nbgrader could not grade: say why, in HTML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    detail = "<br>".join(html.escape(d) for d in result["detail"])
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
                    f"{html.escape(result['assignment'] or 'feedback')}</title></head><body>"
                    f"<h1>{html.escape(result['assignment'] or 'Submission')}: "
                    f"{html.escape(status_text(result))}</h1><p>{detail}</p>"
                    f"<p>Score: 0</p></body></html>\n")


def grade(submissions: Path, jobs: int, build: Path, sandbox_mode: str = "auto") -> int:
    from nbgrader.api import Gradebook

    build.mkdir(parents=True, exist_ok=True)
    ensure_release(build)
    cfg = load_config(build)
    limits = grading_limits(cfg)
    model = course_model(build)
    items, warnings = discover(submissions.resolve(), model)
    for w in warnings:
        print(f"grade: warning: {w}", flush=True)
    # What student code must not see: the repository, the build dir, the submissions.
    hide = sorted({str(ROOT), str(build.resolve()), str(submissions.resolve())})
    sandbox = probe_sandbox(build, hide, sandbox_mode)
    print(f"grade: {len(items)} submission(s), {jobs} at a time; "
          f"limits: {limits['cell_timeout']} s per cell, {limits['memory_mb']} MB per kernel, "
          f"{limits['max_output_chars']} characters of output per cell", flush=True)
    print(f"grade: sandbox: {sandbox['description']}", flush=True)

    # The real gradebook as it is now: what every job starts from, and what it must still
    # be when the jobs are done (student code with the grader's rights could write it).
    gradebook = build / "gradebook.db"
    snapshot = gradebook.read_bytes()
    guarded = [gradebook]
    if sandbox["mode"] == "limits":  # in the sandbox student code cannot reach these
        guarded += [*sorted(SOURCE.rglob("*.ipynb")), *sorted((build / "source").rglob("*.ipynb")),
                    *sorted((build / "release").rglob("*.ipynb"))]
    guarded = {p: p.read_bytes() for p in guarded}

    start = time.monotonic()
    results: list[dict] = []
    done = 0

    def record(result: dict) -> None:
        """Keep a finished submission's result, its scores clamped, and print its line."""
        nonlocal done
        done += 1
        m = model.get(result["assignment"])
        if m:
            result["cells"] = clamp_cells(result, m["points"])
        results.append(result)
        score = fmt(sum(result["cells"].values())) if m else "0"
        total = fmt(m["max_score"]) if m else "0"
        counter = f"[{done:>{len(str(len(items)))}}/{len(items)}]"
        print(f"{counter} {result['student']:<14} {result['assignment'] or '-':<22}"
              f" {score:>5}/{total:<3} {status_text(result):<24} {result['seconds']:6.1f} s",
              flush=True)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {}
        for item in items:
            problem = precheck(item)
            if problem:
                record(zero_result(item, model, *problem))
            else:
                futures[pool.submit(run_job, item, model, build, limits, sandbox, snapshot,
                                    hide)] = item
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as e:  # our own bug: still a row, still the others
                result = zero_result(futures[future], model, "grading error",
                                     f"{type(e).__name__}: {e}")
            record(result)
    wall = time.monotonic() - start

    for path in [Path(f"{gradebook}{suffix}") for suffix in ("-journal", "-wal", "-shm")]:
        if path.exists():  # left by student code that opened the gradebook: would replay
            path.unlink()
            print(f"grade: WARNING: removed {path}, left by student code", flush=True)
    restored, kept = [], False
    for path, content in guarded.items():
        now = path.read_bytes() if path.exists() else None
        if now != content:
            if now is not None and path.is_relative_to(EXERCISES):  # maybe your own edit
                aside = build / "changed-during-grading" / path.relative_to(ROOT)
                aside.parent.mkdir(parents=True, exist_ok=True)
                aside.write_bytes(now)
                kept = True
            path.write_bytes(content)
            restored.append(show(path))
    if restored:
        print(f"grade: WARNING: {len(restored)} file(s) changed while student code ran, and "
              f"were restored: {', '.join(restored)}."
              + (f" The changed versions of exercises/ files are in "
                 f"{show(build / 'changed-during-grading')}." if kept else "")
              + " Grade on a machine with Linux namespaces (see exercises/README.md).",
              flush=True)

    results.sort(key=lambda r: (r["student"], r["assignment"]))
    write_gradebook(build, results, model)

    # Autograded notebooks and feedback, into the course's own folders.
    for r in results:
        if not r["assignment"]:
            continue
        nb = model[r["assignment"]]["notebook"]
        scratch = build / "grading" / r["student"] / r["assignment"] / "course"
        for kind, name in (("autograded", f"{nb}.ipynb"), ("feedback", f"{nb}.html")):
            dest = build / kind / r["student"] / r["assignment"] / name
            shutil.rmtree(dest.parent, ignore_errors=True)
            src = scratch / kind / r["student"] / r["assignment"] / name
            if src.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            elif kind == "feedback":
                feedback_stub(dest, r)

    rows = []
    with Gradebook(gradebook_url(build)) as gb:
        for r in results:
            score, max_score = 0.0, 0.0
            if r["assignment"] in model:
                sub = gb.find_submission(r["assignment"], r["student"])
                score, max_score = sub.score, sub.max_score
            rows.append({"student": r["student"], "assignment": r["assignment"],
                         "score": fmt(score), "max_score": fmt(max_score),
                         "status": status_text(r), "detail": "; ".join(r["detail"])})
    csv_path = build / "grades.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    width = max(len(r["student"]) for r in rows)
    print(f"\n{'student':<{width}}  {'assignment':<22} {'score':>9}  status")
    for r in rows:
        print(f"{r['student']:<{width}}  {r['assignment'] or '-':<22} "
              f"{r['score']:>5}/{r['max_score']:<3}  {r['status']}"
              + (f": {r['detail']}" if r["detail"] else ""))
    flagged = sum(r["status"] != "ok" for r in rows)
    print(f"\ngrade: {len(rows)} row(s), {flagged} flagged, in {wall:.1f} s (JOBS={jobs}); "
          f"grades in {csv_path}, feedback in {build / 'feedback'}", flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# grade: one job (a subprocess per submission)


def job_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    scratch = Path(spec["scratch"])
    student, assignment, nb_name = spec["student"], spec["assignment"], spec["notebook"]
    course = scratch / "course"
    submitted = course / "submitted" / student / assignment
    submitted.mkdir(parents=True)
    shutil.copyfile(spec["path"], submitted / f"{nb_name}.ipynb")
    work = scratch / "work"
    work.mkdir()
    if sys.platform.startswith("linux"):  # orphans of the kernel become ours: see the end
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(scratch / "runtime")  # connection files: hidden
    kernel_name = make_sandbox_kernel(spec, scratch, work)

    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearOutput,
        DeduplicateIds,
        GetGrades,
        IgnorePattern,
        LimitOutput,
        OverwriteKernelspec,
        SaveAutoGrades,
    )

    preprocessors = grading_preprocessors()
    cfg = load_config(course)
    cfg.CourseDirectory.db_url = gradebook_url(scratch)
    # nbclient otherwise starts the kernel named in the notebook (nbgrader #1375): here the
    # assignment's kernel, through the sandbox, whatever the submission's metadata says.
    cfg.Execute.kernel_name = kernel_name
    # After a cell's reply, how long its last output may lag: nbclient's 4 s is tight on a
    # machine busy with JOBS kernels, and a miss would count as a kernel ignoring interrupts.
    cfg.Execute.iopub_timeout = 8
    cfg.GradingExecute.max_output_chars = spec["limits"]["max_output_chars"]
    cfg.RestoringOverwriteCells.cell_order = spec["order"]
    cfg.Autograde.sanitize_preprocessors = [
        ClearOutput, DeduplicateIds, OverwriteKernelspec,
        preprocessors["RestoringOverwriteCells"], CheckCellMetadata]
    cfg.Autograde.autograde_preprocessors = [
        preprocessors["GradingExecute"], IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    cfg.GenerateFeedback.preprocessors = [
        GetGrades, preprocessors["HideHiddenTests"], CSSHTMLHeaderPreprocessor]

    result = {"student": student, "assignment": assignment, "status": [], "detail": [],
              "cells": {}}
    restored = restored_tests(Path(spec["path"]), spec["released_tests"])
    api = NbGraderAPI(config=cfg)
    outcome = api.autograde(assignment, student, force=True, create=True)
    events = preprocessors["GradingExecute"].events
    if not outcome["success"]:
        # The exception nbgrader logged, not its closing "see the above traceback".
        found = re.findall(r"^\s*((?:[\w.]+\.)?\w+(?:Error|Exception|Exit)\b.*)$",
                           outcome.get("log") or "", re.M)
        found = [f for f in found if "NbGraderException" not in f] or ["unknown error"]
        why = found[-1].strip()[:300]
        kernel_log = scratch / "kernel.log"
        if kernel_log.exists() and "kernel" in why.lower():
            tail = kernel_log.read_text(errors="replace").strip().splitlines()[-1:]
            why += f" (kernel log: {tail[0][:200]})" if tail else ""
        result["status"].append("grading error")
        result["detail"].append(f"nbgrader autograde failed: {why}")
        print(outcome.get("log", ""), outcome.get("error", ""), sep="\n")
    else:
        with Gradebook(cfg.CourseDirectory.db_url) as gb:
            nb = gb.find_submission_notebook(nb_name, assignment, student)
            result["cells"] = {g.name: float(g.auto_score or 0.0) for g in nb.grades}
        feedback = api.generate_feedback(assignment, student, force=True)
        if not feedback["success"]:
            print(feedback.get("log", ""), feedback.get("error", ""), sep="\n")
            result["detail"].append("feedback could not be generated")
    for kind, detail in events + restored:
        if kind not in result["status"]:
            result["status"].append(kind)
        result["detail"].append(detail)
    kill_leftovers()
    tmp = scratch / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(scratch / "result.json")
    return 0


def kill_leftovers() -> None:
    """End whatever the student's code started and left running.

    In the sandbox its PID namespace ends with the kernel, taking them along; without it,
    they are reparented to this job (a child subreaper on Linux) and end here. By now the
    kernel is shut down, so any child left is one of them.
    """
    if not sys.platform.startswith("linux"):
        return
    me = str(os.getpid())
    for _ in range(20):
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:  # field 4 of /proc/PID/stat: the parent's pid
                children.append(int(stat.parent.name))
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:  # reap them, and whatever was reparented meanwhile
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(0.1)


def restored_tests(path: Path, released: dict) -> list[tuple[str, str]]:
    """Test cells the student changed or deleted, which nbgrader puts back before grading."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    seen = {}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in released and grade_id not in seen:
            seen[grade_id] = cell.source if cell.cell_type == "code" else None
    changes = [f"{g} ({'deleted' if g not in seen else 'edited'})" for g in released
               if g not in seen or seen[g] is None or seen[g].strip() != released[g].strip()]
    return [("tests restored", "restored test cells: " + ", ".join(changes))] if changes else []


def grading_preprocessors() -> dict:
    """nbgrader's preprocessors, extended where they fall short for hostile submissions."""
    import asyncio

    from jupyter_core.utils import run_sync
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import ensure_async
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import ClearHiddenTests, Execute, OverwriteCells
    from traitlets import Integer, List

    def label(cell, index):
        return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"

    memory_words = ("memoryerror", "cannot allocate memory", "can't allocate memory",
                    "bad_alloc", "out of memory", "resource_exhausted", "resourceexhausted",
                    "failed to allocate")

    class GradingExecute(Execute):
        """nbgrader's Execute, made to survive what students' code does to a kernel.

        - A kernel that dies (os._exit, a crash, a kill) raises DeadKernelError in nbclient
          and nbgrader then drops the whole submission; here the cell gets an error, every
          later cell an error saying it did not run (a test cell without output would count
          as passed), and the scores earned before still count.
        - After a timeout nbgrader interrupts the kernel and goes on; code that ignores the
          interrupt makes nbclient give up on the whole notebook ("Timeout waiting for IOPub
          output"), or every later cell wait out its timeout too. Here such a kernel is
          stopped, and the later cells are marked as not run.
        - LimitOutput trims output after the fact and counts lines only: a cell printing
          megabytes, or one enormous line, is held in memory in full first. Here output is
          cut as it arrives, to max_output_chars per cell (errors are always kept, since
          they decide the score).
        """

        max_output_chars = Integer(20000).tag(config=True)
        events: list = []  # (status, detail), read by job_main

        def preprocess(self, nb, resources=None, km=None):
            self._dead = None
            self._chars: dict[int, int] = {}
            self._cut: set[int] = set()
            self._timed_out = False
            return super().preprocess(nb, resources, km)

        def _event(self, kind, detail):
            GradingExecute.events.append((kind, detail))

        async def _async_handle_timeout(self, timeout, cell=None):
            self._timed_out = True
            return await super()._async_handle_timeout(timeout, cell)

        async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                     store_history=True):
            if self._dead is not None:
                if cell.cell_type == "code" and cell.source.strip():
                    cell.outputs = [new_output("error", ename="NotRun", evalue=self._dead,
                                               traceback=[f"NotRun: {self._dead}"])]
                return cell
            self._timed_out = False
            where = label(cell, cell_index)
            try:
                cell = await super().async_execute_cell(cell, cell_index, execution_count,
                                                        store_history)
            except DeadKernelError:
                code = await self._exit_code()
                why = f" ({code})" if code else ""
                self._event("kernel died", f"the kernel died in {where}{why}; later cells "
                                           "did not run")
                cell.outputs.append(new_output(
                    "error", ename="DeadKernelError", evalue=f"the kernel died{why}",
                    traceback=[f"DeadKernelError: the kernel died while running this cell{why}"]))
                self._dead = f"not run: the kernel died in {where}"
                return cell
            except CellTimeoutError:
                # Interrupted after the timeout, the kernel did not even finish the cell's
                # output (nbgrader would drop the submission here): it ignores interrupts.
                cell.outputs.append(new_output(
                    "error", ename="CellTimeoutError", evalue=f"longer than {self.timeout} s",
                    traceback=[f"CellTimeoutError: this cell ran longer than {self.timeout} s "
                               "and ignored the interrupt"]))
                await self._stop(where)
                return cell
            if self._timed_out:
                if await self._responds(grace=10):
                    self._event("timeout", f"{where} ran longer than {self.timeout} s and was "
                                           "interrupted")
                else:
                    await self._stop(where)
            if cell_index in self._cut:
                cell.outputs.append(new_output(
                    "stream", name="stdout",
                    text=f"\n[output cut by the grader at {self.max_output_chars} characters]\n"))
                self._event("output truncated", f"output of {label(cell, cell_index)} cut to "
                                                f"{self.max_output_chars} characters")
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    text = f"{out.get('ename', '')}: {out.get('evalue', '')}".lower()
                    if any(w in text for w in memory_words):
                        self._event("memory limit", f"{label(cell, cell_index)} ran out of "
                                                    f"memory ({out.get('ename')})")
                        break
            return cell

        # nbconvert's preprocess_cell calls the sync wrapper, which NotebookClient binds to its
        # own async_execute_cell: wrap ours instead.
        execute_cell = run_sync(async_execute_cell)

        async def _stop(self, where: str) -> None:
            """Shut down a kernel that ignores the interrupt; later cells will not run."""
            self._event("timeout", f"{where} ran longer than {self.timeout} s and ignored the "
                                   "interrupt; the kernel was stopped and later cells did not run")
            self._dead = f"not run: the kernel was stopped in {where}"
            try:
                await ensure_async(self.km.shutdown_kernel(now=True))
            except Exception:  # already gone
                pass

        async def _responds(self, grace: float) -> bool:
            """Does the kernel answer a kernel_info request within `grace` seconds?"""
            msg_id = self.kc.kernel_info()
            deadline = time.monotonic() + grace
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
                except Exception:  # queue.Empty: no answer in time
                    return False
                if msg["parent_header"].get("msg_id") == msg_id:
                    return True
            return False

        async def _exit_code(self) -> str:
            try:
                for _ in range(20):
                    code = await ensure_async(self.km.provisioner.poll())
                    if code is not None:
                        break
                    await asyncio.sleep(0.1)
            except Exception:
                return ""
            if code is None:
                return ""
            if code < 0 or code > 128:
                return f"killed by signal {abs(code) if code < 0 else code - 128}"
            return f"exit status {code}"

        def output(self, outs, msg, display_id, cell_index):
            msg_type = msg["msg_type"]
            if msg_type == "error":
                content = msg["content"]
                content["evalue"] = str(content.get("evalue", ""))[:2000]
                content["traceback"] = [str(t)[:2000] for t in content.get("traceback", [])][:200]
                return super().output(outs, msg, display_id, cell_index)
            used = self._chars.get(cell_index, 0)
            content = msg["content"]
            if msg_type == "stream":
                size = len(content.get("text", ""))
            else:
                size = sum(len(str(v)) for v in content.get("data", {}).values())
            if used + size > self.max_output_chars:
                self._cut.add(cell_index)
                left = self.max_output_chars - used
                if msg_type != "stream" or left <= 0:
                    self._chars[cell_index] = self.max_output_chars
                    return None
                content["text"] = content["text"][:left]
                size = left
            self._chars[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)

    class RestoringOverwriteCells(OverwriteCells):
        """OverwriteCells, with deleted test cells put back where they were.

        nbgrader's add_missing_cells places a missing cell after its predecessor among the
        source cells, and fails with a KeyError when that predecessor is gone too (a student
        who deleted an exercise's solution and test cells). Here it goes after the nearest
        earlier cell that is still there, in the released notebook's order.

        A cell whose nbgrader id the gradebook does not know (pasted from another notebook)
        loses its id in preprocess_cell, and nbgrader's add_missing_task_cells then fails
        with a KeyError on it; here it becomes an ordinary cell.
        """

        cell_order = List([]).tag(config=True)

        def preprocess_cell(self, cell, resources, cell_index):
            cell, resources = super().preprocess_cell(cell, resources, cell_index)
            if "nbgrader" in cell.metadata and "grade_id" not in cell.metadata.nbgrader:
                del cell.metadata["nbgrader"]
            return cell, resources

        def add_missing_grade_cells(self, nb, resources):
            source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
            sources = {c.name: c for c in source_nb.source_cells}
            grades = {c.name: c for c in source_nb.grade_cells}
            solutions = {c.name for c in source_nb.solution_cells}
            order = list(self.cell_order) or list(sources)
            order += [name for name in grades if name not in order]

            def position(grade_id):
                for i, cell in enumerate(nb.cells):
                    if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                        return i
                return None

            for k, name in enumerate(order):
                if name not in grades or position(name) is not None:
                    continue
                self.log.warning("Missing grade cell %s, adding it back", name)
                cell = self.missing_cell_transform(sources[name], grades[name].max_score,
                                                   is_solution=name in solutions)
                at = 0
                for earlier in reversed(order[:k]):
                    if (i := position(earlier)) is not None:
                        at = i + 1
                        break
                nb.cells.insert(at, cell)
            return nb, resources

    class HideHiddenTests(ClearHiddenTests):
        """Feedback without the hidden tests.

        nbgrader's feedback shows the autograded notebook as it ran, hidden tests included,
        so one graded submission would publish them. This removes them as the release does
        and cuts the traceback of a failed hidden test to its last line, which still says
        what went wrong.
        """

        def preprocess_cell(self, cell, resources, cell_index):
            had_hidden = cell.cell_type == "code" and self.begin_test_delimeter in cell.source
            cell, resources = super().preprocess_cell(cell, resources, cell_index)
            if had_hidden:
                for out in cell.get("outputs", []):
                    if out.output_type == "error":
                        out.traceback = [f"{out.ename}: {out.evalue}"]
            return cell, resources

    return {"GradingExecute": GradingExecute, "RestoringOverwriteCells": RestoringOverwriteCells,
            "HideHiddenTests": HideHiddenTests}


def visibility_args(hide: list[str]) -> list[str]:
    """The sandbox's --hide and --expose arguments: the same for the probe and every kernel."""
    return [*[a for p in hide for a in ("--hide", p)],
            *[a for p in EXPOSED if p.exists() for a in ("--expose", str(p))]]


def make_sandbox_kernel(spec: dict, scratch: Path, work: Path) -> str:
    """A kernelspec in the scratch dir that starts the assignment's kernel in the sandbox."""
    from jupyter_client.kernelspec import KernelSpecManager

    real = KernelSpecManager().get_kernel_spec(spec["kernel"])
    name = f"grading-{spec['kernel']}"
    kdir = scratch / "jupyter" / "kernels" / name
    kdir.mkdir(parents=True)
    limits = spec["limits"]
    argv = [sys.executable, str(Path(__file__).resolve()), "_sandbox",
            "--mode", spec["sandbox"], "--memory-mb", str(limits["memory_mb"]),
            "--workdir", str(work), "--log", str(scratch / "kernel.log"),
            "--keep-env", ",".join(sorted(real.env)), *visibility_args(spec["hide"]),
            "--", *real.argv]
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": f"{real.display_name} (grading)",
        "language": real.language, "env": real.env, "interrupt_mode": "signal",
        "metadata": {}}, indent=1))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(scratch / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])])
    return name


# --------------------------------------------------------------------------------------------
# the sandbox: a kernel launcher (Linux namespaces where available, resource limits always)

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER = 1, 24, 36
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 38, 47
MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
               "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
               "strictatime": MS_STRICTATIME}
ENV_KEEP = ["PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "JPY_PARENT_PID"]


def _libc():
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    return libc


def _call(ret: int, what: str) -> None:
    import ctypes

    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc, src, target, fstype, flags, data=None) -> None:
    def enc(s):
        return s.encode() if s is not None else None

    _call(libc.mount(enc(src), enc(str(target)), enc(fstype), flags, enc(data)),
          f"mount {target}")


def _mountinfo() -> list[tuple[str, int]]:
    """(mount point, per-mount flags) of every mount, in the order the kernel lists them."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        flags = 0
        for opt in fields[5].split(","):
            flags |= MOUNT_FLAGS.get(opt, 0)
        mounts.append((point, flags))
    return mounts


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _enter_namespaces(libc, args) -> None:
    """Private mounts: hide args.hide, expose args.expose read-only, the rest read-only too.

    Runs in the child that is PID 1 of a new PID namespace: when it exits, every process
    the student's code started goes with it.
    """
    # Open what stays visible before hiding its parents; bind from the open descriptors.
    exposed = [(p, os.open(p, os.O_RDONLY | os.O_DIRECTORY)) for p in args.expose]
    work_fd = os.open(args.workdir, os.O_RDONLY | os.O_DIRECTORY)
    _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(libc, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=512m,mode=1777")
    if os.path.isdir("/dev/shm"):
        _mount(libc, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for path in sorted(args.hide, key=len):
        if os.path.isdir(path):
            _mount(libc, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in exposed:
        os.makedirs(path, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    os.makedirs(args.workdir, exist_ok=True)
    _mount(libc, f"/proc/self/fd/{work_fd}", args.workdir, None, MS_BIND)
    os.close(work_fd)
    # Read-only from here on: every mount but our /tmp, /dev/shm and the working directory
    # (mounts below them too: an exposed folder inside /tmp stays read-only), and the
    # kernel's own /proc, /sys and /dev.
    writable = {"/tmp", "/dev/shm", os.path.realpath(args.workdir), args.workdir}
    for point, flags in _mountinfo():
        if point in writable or (_under(point, ["/proc", "/sys", "/dev"])
                                 and not _under(point, ["/dev/shm"])):
            continue
        try:
            _mount(libc, None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EINVAL):
                raise
            # ENOENT, EINVAL: a mount now hidden under one of ours (its path is gone, or is
            # no longer a mount point in this namespace)
    os.makedirs("/tmp/home", exist_ok=True)


def _drop_privileges(libc) -> None:
    """No capabilities, and no way to regain any (setuid binaries, file capabilities)."""
    import ctypes

    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # EINVAL: past the last capability this kernel knows
    libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    _call(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")
    _call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _set_limits(memory_mb: int) -> None:
    import resource

    limit = memory_mb * 2**20
    for which, value in ((resource.RLIMIT_AS, limit), (resource.RLIMIT_CPU, 600),
                         (resource.RLIMIT_FSIZE, 64 * 2**20), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):  # e.g. RLIMIT_AS on macOS: not enforced there anyway
            pass


def _kernel_env(keep: list[str], home: str, tmp: str) -> dict:
    """Only what a kernel needs: none of the grader's tokens or paths leak into it."""
    env = {k: os.environ[k] for k in ENV_KEEP + keep if k in os.environ}
    env.update(HOME=home, TMPDIR=tmp, MPLCONFIGDIR=f"{home}/.matplotlib",
               MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def sandbox_main(argv: list[str]) -> int:
    """Start a kernel (the command after --) with limits and, in namespace mode, isolation.

    --probe instead of a command checks that the sandbox holds and exits 0 if it does.
    """
    parser = argparse.ArgumentParser(prog="grading.py _sandbox")
    parser.add_argument("--mode", choices=["namespace", "limits"], default="namespace")
    parser.add_argument("--memory-mb", type=int, default=4096)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--log")
    parser.add_argument("--keep-env", default="")
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--expose", action="append", default=[])
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the grading job
    # The kernel reads its connection file after the mounts hide where it is: carry it over.
    connection = None
    if "-f" in command:
        i = command.index("-f") + 1
        connection = Path(command[i]).read_bytes()
    log_fd = (os.dup(2) if args.probe else  # a failed probe says why on stderr
              os.open(args.log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))

    if args.mode == "namespace":
        uid, gid = os.getuid(), os.getgid()
        flags = CLONE_NEWNS | CLONE_NEWPID | (CLONE_NEWUSER if uid != 0 else 0)
        _call(libc.unshare(flags), "unshare")
        if uid != 0:  # an unprivileged user namespace, mapped onto ourselves
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back out
        pid = os.fork()
        if pid:  # the launcher: wait for the kernel and exit as it did
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts reach the kernel direct
            signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.WEXITSTATUS(status))
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        try:
            _enter_namespaces(libc, args)
        except Exception as e:
            os.write(log_fd, f"sandbox: {e}\n".encode())
            os._exit(70)
        home, tmp, cwd = "/tmp/home", "/tmp", args.workdir
    else:
        home = os.path.join(args.workdir, ".home")
        os.makedirs(home, exist_ok=True)
        tmp, cwd = args.workdir, args.workdir

    if connection is not None:
        path = os.path.join(tmp, "kernel-connection.json")
        with open(path, "wb") as f:
            f.write(connection)
        command[command.index("-f") + 1] = path
    env = _kernel_env([k for k in args.keep_env.split(",") if k], home, tmp)
    os.chdir(cwd)
    if libc is not None:
        _drop_privileges(libc)
    _set_limits(args.memory_mb)
    if args.probe:
        return probe_checks(args)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvpe(command[0], command, env)
    return 1  # not reached


def probe_checks(args) -> int:
    """Inside the sandbox: can we write where student code must not, or see hidden files?"""
    problems = []
    allowed = args.expose + [args.workdir]  # and the folders leading to them
    for path in args.hide:
        for name in (os.listdir(path) if os.path.isdir(path) else []):
            full = os.path.join(path, name)
            if not any(_under(a, [full]) for a in allowed):
                problems.append(f"{full} is visible")
        if _under(path, ["/tmp", "/dev/shm"]):
            continue  # inside the sandbox's own tmpfs: writing there reaches nothing
        try:
            Path(path, "probe-write").write_text("x")
            problems.append(f"{path} is writable")
        except OSError:
            pass
    for path in ["/usr", "/etc", *args.expose]:
        try:
            Path(path, "probe-write").write_text("x")
            problems.append(f"{path} is writable")
        except OSError:
            pass
    try:
        Path(args.workdir, "probe-write").write_text("x")
        Path("/tmp/probe-write").write_text("x")
    except OSError as e:
        problems.append(f"cannot write the working directory or /tmp: {e}")
    status = Path("/proc/self/status").read_text()
    if re.search(r"^CapEff:\s*0*[1-9a-f]", status, re.M):
        problems.append("capabilities were not dropped")
    if os.getpid() != 1:
        problems.append("not in a PID namespace")
    print("; ".join(problems) if problems else "ok", flush=True)
    return 1 if problems else 0


def probe_sandbox(build: Path, hide: list[str], wanted: str = "auto") -> dict:
    """Namespace mode if this machine supports it and it holds, else limits only."""
    if wanted == "limits":
        return {"mode": "limits", "description": (
            "limits only (--sandbox limits): student code can read and write what you can")}
    work = build / "grading" / ".probe"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if not sys.platform.startswith("linux"):
        return {"mode": "limits", "description": (
            "limits only (no Linux namespaces on this system): student code can read and "
            "write what you can; grade in a disposable VM or container")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "_sandbox", "--probe",
           "--workdir", str(work), *visibility_args(hide)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        ok, why = proc.returncode == 0, (proc.stdout + proc.stderr).strip().splitlines()
    except subprocess.TimeoutExpired:
        ok, why = False, ["timed out"]
    if ok:
        return {"mode": "namespace", "description": (
            "Linux namespaces: the repository, build dir and submissions hidden, the rest "
            "read-only, no capabilities, own PID namespace, memory/CPU/file-size limits")}
    reason = why[-1][:200] if why else "unknown"
    if wanted == "namespace":
        raise UsageError(f"grade: --sandbox namespace, but namespaces are unavailable: {reason}")
    return {"mode": "limits", "description": (
        f"limits only (namespaces unavailable: {reason}). Student code can read and write "
        "what you can; the gradebook and sources are restored if changed, but grade in a "
        "disposable VM or container")}


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sandbox"]:
        return sandbox_main(argv[1:])
    if argv[:1] == ["_autograde"]:
        return job_main(argv[1])
    # nbgrader's Gradebook runs `alembic` from PATH: the tools env's bin, even unactivated.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ.get("PATH", "")])
    parser = argparse.ArgumentParser(description="nbgrader release and parallel autograding.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_release = sub.add_parser("release", help="student versions into BUILD/release/")
    p_release.add_argument("--build", default=str(ROOT / "build"))
    p_grade = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<assignment>/")
    p_grade.add_argument("--submissions", required=True)
    p_grade.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p_grade.add_argument("--build", default=str(ROOT / "build"))
    p_grade.add_argument("--sandbox", choices=["auto", "namespace", "limits"], default="auto",
                         help="auto: namespaces where they work, else limits only (default); "
                              "namespace: refuse to grade without them")
    args = parser.parse_args(argv)
    build = Path(args.build).resolve()
    try:
        if args.command == "release":
            return release(build)
        if args.jobs < 1:
            raise UsageError("grade: --jobs (JOBS=) must be at least 1")
        return grade(Path(args.submissions), args.jobs, build, args.sandbox)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
