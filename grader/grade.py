"""`make grade`: every submission graded in a sandboxed kernel, JOBS at a time.

nbgrader grades one submission after another and its sqlite gradebook is not safe for
concurrent writers. So each submission is a job of its own (grader/job.py, in a subprocess
this process kills if it runs past the submission's limit), and this process alone writes
the gradebook, the autograded notebooks, the feedback and grades.csv, in sorted order, once
every job is done: JOBS=1 and JOBS=8 write the same grades.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from grader import collect, report, sandbox
from grader.course import (
    ROOT,
    UsageError,
    course_model,
    ensure_release,
    gradebook_url,
    grading_secret,
    grading_settings,
    load_config,
    seed,
    show,
)

LOCK_DIR = Path("/run/lock")


class UidSlots:
    """One host uid per concurrent job when the grader is root, held with a lock file so
    that two grading runs on one machine never share one (the sweep after a job kills every
    process of its uid). Uids that belong to a user of this machine are passed over."""

    def __init__(self, base: int, count: int):
        self.free: queue.Queue = queue.Queue()
        self._locks = []
        uid = base
        while len(self._locks) < count:
            if uid > base + 10_000:
                raise UsageError(f"grade: no free grading uid from {base} on; set "
                                 "c.GradingSandbox.uid_base in nbgrader_config.py")
            if not _user_exists(uid) and self._lock(uid):
                sandbox.sweep(uid)  # what an earlier, crashed run may have left
                self.free.put(uid)
            uid += 1

    def _lock(self, uid: int) -> bool:
        folder = LOCK_DIR if LOCK_DIR.is_dir() else Path(tempfile.gettempdir())
        try:
            fd = os.open(folder / f"d2l-grading-{uid}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return False
        if os.fstat(fd).st_uid != os.getuid():  # planted by someone else
            os.close(fd)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._locks.append(fd)
        return True


def _user_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def kernel_setup(kernel: str, unsandboxed: bool) -> dict:
    """How a job starts the assignment's kernel: its argv and what the sandbox exposes."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise UsageError(f"grade: no Jupyter kernel {kernel!r}; run `make setup`") from None
    python = spec.argv[0]
    venv, base = sandbox.venv_of(python)
    exposed = [str(venv), str(base)]
    if (ROOT / "d2l_shim").is_dir():
        exposed.append(str(ROOT / "d2l_shim"))
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": sandbox.HOME, "TMPDIR": "/tmp",
           "USER": "student", "LANG": "C.UTF-8", "MPLCONFIGDIR": "/tmp/matplotlib",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1", **spec.env}
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ"):  # machine quirks to keep
        if key in os.environ:
            env[key] = os.environ[key]
    if unsandboxed:
        env["PATH"] += ":" + os.environ.get("PATH", "")
    return {"kernel_argv": spec.argv, "exposed": exposed, "env": env, "python": python}


def plan_sandbox(settings: dict, kernels: dict, hidden: list[str], build: Path,
                 unsandboxed: bool) -> dict:
    """bwrap, probed with one kernel env; or limits only, if and only if the instructor asked."""
    if unsandboxed or settings["allow_unsandboxed"]:
        why = "--unsandboxed" if unsandboxed else "c.GradingSandbox.allow_unsandboxed"
        return {"bwrap": None, "root": False, "description": (
            f"NONE ({why}): limits only. Student code can read and write what you can; "
            "every row is marked `unsandboxed`")}
    how = ("Grade on Linux with unprivileged user namespaces (a VM or container that allows "
           "them), or, knowing that student code then runs with your rights, pass "
           "--unsandboxed (make grade UNSANDBOXED=1).")
    if not sys.platform.startswith("linux"):
        raise UsageError(f"grade: the grading sandbox (bubblewrap) needs Linux. {how}")
    try:
        bwrap = sandbox.find_bwrap()
    except sandbox.SandboxUnavailable as e:
        raise UsageError(f"grade: {e}. {how}") from None
    root = os.getuid() == 0
    first = kernels[sorted(kernels)[0]]
    scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-probe-"))
    try:
        scratch.chmod(0o711)
        problems = sandbox.probe(
            bwrap.path, first["python"], exposed=first["exposed"],
            uid=settings["uid_base"] + 10_001 if root else None,
            limits=settings["limits"], env=first["env"], hidden=hidden, scratch=scratch)
    finally:
        if root:
            sandbox.sweep(settings["uid_base"] + 10_001)
        shutil.rmtree(scratch, ignore_errors=True)
    if problems:
        raise UsageError(f"grade: the grading sandbox does not hold here: "
                         f"{'; '.join(problems)}. {how}")
    who = "one uid per job slot" if root else "as you"
    return {"bwrap": bwrap.path, "root": root, "description": (
        f"bubblewrap {bwrap.describe()}, {who}: no network, no capabilities, only the "
        "framework env and the shim visible (read-only), tmpfs home and /tmp")}


def run_job(job: dict, timeout: int) -> dict:
    """The job in a subprocess of its own; killed, with its kernel, past `timeout`."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "grader.job"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(job).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel's bwrap dies with its parent
        out, err = proc.communicate()
        return {**zero_result(job, "submission timeout",
                              f"grading took longer than {timeout} s and was stopped"),
                "job_log": err[-20_000:].decode(errors="replace"),
                "seconds": time.monotonic() - start}
    log = err[-20_000:].decode(errors="replace")
    try:
        result = json.loads(out)
    except ValueError:
        tail = (log.strip().splitlines() or ["no log"])[-1]
        return {**zero_result(job, "grading error",
                              f"the grading job failed ({tail[:200]}); see "
                              f"build/grading/{job['student']}/{job['assignment']}/job.log"),
                "job_log": log, "seconds": time.monotonic() - start}
    result["job_log"] = log
    return result


def zero_result(item: dict, status: str, detail: str, points: dict | None = None) -> dict:
    return {"student": item["student"], "assignment": item["assignment"], "status": [status],
            "detail": [detail], "review": [], "cells": dict.fromkeys(points or {}, 0.0),
            "seconds": 0.0, "autograded": None, "feedback": None}


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


def write_gradebook(build: Path, results: list[dict], model: dict) -> None:
    """Record every result in the gradebook, one after another, in sorted order (the step
    nbgrader's SaveAutoGrades does inside autograde)."""
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


def write_artifacts(build: Path, r: dict, model: dict) -> None:
    """The autograded notebook, the feedback page and the logs of one submission."""
    name = model[r["assignment"]]["notebook"] if r["assignment"] in model else r["assignment"]
    where = Path(r["student"]) / (r["assignment"] or "-")
    for kind, text in (("autograded", r.get("autograded")), ("feedback", r.get("feedback"))):
        folder = build / kind / where
        shutil.rmtree(folder, ignore_errors=True)
        if text is None and kind == "feedback":
            text = report.feedback_stub(r)
        if text is not None:
            folder.mkdir(parents=True)
            (folder / f"{name or 'submission'}.{'ipynb' if kind == 'autograded' else 'html'}"
             ).write_text(text, encoding="utf-8")
    logs = build / "grading" / where
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    for log in ("job_log", "kernel_log"):
        (logs / f"{log.replace('_', '.')}").write_text(r.get(log) or "", encoding="utf-8")


def grade(course: Path, submissions: Path, jobs: int, build: Path,
          unsandboxed: bool = False) -> int:
    from nbgrader.api import Gradebook

    build.mkdir(parents=True, exist_ok=True)
    ensure_release(course, build)
    settings = grading_settings(load_config(course, build))
    limits = settings["limits"]
    model = course_model(course, build)
    items, warnings = collect.discover(submissions.resolve(), model)
    for w in warnings:
        print(f"grade: warning: {report.escape_text(w)}", flush=True)
    kernels = {m["kernel"]: kernel_setup(m["kernel"], unsandboxed or
                                         settings["allow_unsandboxed"])
               for m in model.values()}
    hidden = sorted({str(ROOT), str(build.resolve()), str(submissions.resolve()),
                     str(course.resolve())})
    box = plan_sandbox(settings, kernels, hidden, build, unsandboxed)
    slots = UidSlots(settings["uid_base"], jobs) if box["root"] else None
    if slots is None:
        slots_free: queue.Queue = queue.Queue()
        for _ in range(jobs):
            slots_free.put(None)
    else:
        slots_free = slots.free
    secret = grading_secret(build)
    print(f"grade: {len(items)} submission(s), {jobs} at a time; limits: "
          f"{limits['cell_timeout']} s per cell, {limits['memory_mb']} MB per process, "
          f"{limits['max_output_chars']} characters of output per cell, "
          f"{limits['submission_timeout']} s per submission", flush=True)
    print(f"grade: sandbox: {box['description']}", flush=True)

    gradebook = build / "gradebook.db"
    snapshot = gradebook.read_bytes()  # what it must still be when the jobs are done
    start = time.monotonic()
    results: list[dict] = []
    width = len(str(len(items)))

    def record(result: dict) -> None:
        m = model.get(result["assignment"])
        if m:
            result["cells"] = clamp_cells(result, m["points"])
        if box["bwrap"] is None and "unsandboxed" not in result["status"]:
            result["status"].insert(0, "unsandboxed")
            result["detail"].insert(0, "graded without the sandbox, as asked")
        results.append(result)
        score = report.fmt(sum(result["cells"].values())) if m else "0"
        total = report.fmt(m["max_score"]) if m else "0"
        flag = "  REVIEW" if result["review"] else ""
        print(f"[{len(results):>{width}}/{len(items)}] {report.escape_text(result['student']):<14}"
              f" {result['assignment'] or '-':<22} {score:>5}/{total:<3} "
              f"{report.status_text(result):<24} {result.get('seconds', 0.0):6.1f} s{flag}",
              flush=True)

    def grade_one(item: dict) -> dict:
        m = model[item["assignment"]]
        try:
            data = collect.read_notebook(item["path"])
        except (OSError, ValueError) as e:
            return zero_result(item, "not a notebook file",
                               f"could not read the notebook: {getattr(e, 'strerror', None) or e}",
                               m["points"])
        uid = slots_free.get()
        scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-"))
        try:
            kernel = kernels[m["kernel"]]
            course_part = {k: m[k] for k in ("notebook", "points", "cells", "released",
                                             "tests", "hidden", "kernelspec", "max_score")}
            job = {"student": item["student"], "assignment": item["assignment"],
                   "notebook": base64.b64encode(data).decode(), "course": course_part,
                   "limits": limits,
                   "seeds": {gid: seed(secret, item["student"], item["assignment"], gid)
                             for gid in m["tests"]},
                   "sandbox": {"bwrap": box["bwrap"], "uid": uid, "scratch": str(scratch),
                               **{k: kernel[k] for k in ("kernel_argv", "exposed", "env")}}}
            return run_job(job, limits["submission_timeout"])
        finally:
            if uid is not None:
                left = sandbox.sweep(uid)
                if left:
                    print(f"grade: WARNING: processes {left} of uid {uid} survived", flush=True)
            shutil.rmtree(scratch, ignore_errors=True)
            slots_free.put(uid)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {}
        for item in items:
            if "problem" in item:
                m = model.get(item["assignment"])
                record(zero_result(item, *item["problem"], m["points"] if m else None))
            else:
                futures[pool.submit(grade_one, item)] = item
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as e:  # our own bug: still a row, still the others
                item = futures[future]
                result = zero_result(item, "grading error", f"{type(e).__name__}: {e}",
                                     model[item["assignment"]]["points"])
            record(result)
    wall = time.monotonic() - start

    if gradebook.read_bytes() != snapshot:  # only possible without the sandbox
        gradebook.write_bytes(snapshot)
        print("grade: WARNING: the gradebook changed while student code ran; restored",
              flush=True)
    for suffix in ("-journal", "-wal", "-shm"):
        Path(f"{gradebook}{suffix}").unlink(missing_ok=True)
    results.sort(key=lambda r: (r["student"], r["assignment"]))
    write_gradebook(build, results, model)
    for r in results:
        write_artifacts(build, r, model)

    rows = []
    with Gradebook(gradebook_url(build)) as gb:
        for r in results:
            score, max_score = 0.0, 0.0
            if r["assignment"] in model:
                sub = gb.find_submission(r["assignment"], r["student"])
                score, max_score = sub.score, sub.max_score
            rows.append({"student": r["student"], "assignment": r["assignment"],
                         "score": report.fmt(score), "max_score": report.fmt(max_score),
                         "status": report.status_text(r), "review": "; ".join(r["review"]),
                         "detail": "; ".join(r["detail"])})
    report.write_csv(build / "grades.csv", rows)
    summary(rows, wall, jobs, build, box)
    return 0


def summary(rows: list[dict], wall: float, jobs: int, build: Path, box: dict) -> None:
    esc = report.escape_text
    width = max(len(esc(r["student"])) for r in rows)
    print(f"\n{'student':<{width}}  {'assignment':<22} {'score':>9}  status")
    for r in rows:
        print(f"{esc(r['student']):<{width}}  {r['assignment'] or '-':<22} "
              f"{r['score']:>5}/{r['max_score']:<3}  {r['status']}"
              + (f": {esc(r['detail'])}" if r["detail"] else ""))
    flagged = [r for r in rows if r["review"]]
    if flagged:
        print(f"\nTo review ({len(flagged)}): the score stands, but the code does something "
              "a correct answer does not need. Read the notebook in build/autograded/.")
        for r in flagged:
            print(f"  {esc(r['student'])} {r['assignment']}: {esc(r['review'])}")
    if box["bwrap"] is None:
        print(f"\ngrade: sandbox: {box['description']}")
    bad = sum(r["status"] != "ok" for r in rows)
    print(f"\ngrade: {len(rows)} row(s), {bad} with a status, {len(flagged)} to review, in "
          f"{wall:.1f} s (JOBS={jobs}); grades in {show(build / 'grades.csv')}, feedback in "
          f"{show(build / 'feedback')}", flush=True)
