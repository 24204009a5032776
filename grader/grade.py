"""`make grade`: every submission graded in a sandboxed kernel, JOBS at a time.

nbgrader grades one submission after another and its sqlite gradebook is not safe for
concurrent writers. So each submission is a job of its own (grader/job.py), run on a Dask
cluster's workers (grader/cluster.py), and this process alone writes the gradebook, the
autograded notebooks, the feedback and grades.csv, in sorted order, once every job is done:
JOBS=1 and JOBS=8, or a cluster of 50 machines, write the same grades.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from grader import cluster, collect, gradebook, late, progress, report, sandbox
from grader.config import grading_settings
from grader.course import course_model, ensure_release, grading_secret, load_config, seed
from grader.errors import UsageError
from grader.job import feedback_on_worker, zero_result
from grader.job import judge as job_judge
from grader.model import ReferenceRun, Result, Status
from grader.paths import ROOT, show

# A grading kernel computes on one thread where its libraries let it: JOBS workers then
# share JOBS cores without each framework starting a pool per core. (XLA has no flag for
# its pools' sizes, and stops JAX with a fatal error at any XLA_FLAGS entry it does not know.)
ONE_CORE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
            "MXNET_CPU_WORKER_NTHREADS": "1",
            # XLA compiles each JAX operation anew for every new shape, and the checks draw
            # new shapes for every seed set: on a grading kernel's tiny arrays compiling is
            # most of the time, and LLVM's optimizations (level 0: off) do not pay for
            # themselves. The JAX reference job takes about half as long.
            "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0"}


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
           "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1", **ONE_CORE, **spec.env}
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
    probe_uids = sandbox.UidSlots(settings["uid_base"] + 10_001, 1) if root else None
    # the first uid free from there: another grading run may be probing with the first
    uid = probe_uids.free.get() if probe_uids else None
    scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-probe-"))
    try:
        scratch.chmod(0o711)
        problems = sandbox.probe(
            bwrap.path, first["python"], exposed=first["exposed"], uid=uid,
            limits=settings["limits"], env=first["env"], hidden=hidden, scratch=scratch,
            timeout=settings["timeouts"]["sandbox_probe"])
    finally:
        if probe_uids:
            sandbox.sweep(uid)
            probe_uids.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if problems:
        raise UsageError(f"grade: the grading sandbox does not hold here: "
                         f"{'; '.join(problems)}. {how}")
    who = "one uid per job slot" if root else "as you"
    return {"bwrap": bwrap.path, "root": root, "description": (
        f"bubblewrap {bwrap.describe()}, {who}: no network, no capabilities, only the "
        "framework env and the shim visible (read-only), tmpfs home and /tmp")}


def clamp_cells(result: Result, points: dict) -> dict:
    """Scores per test cell, limited to the cells and points of the real gradebook."""
    cells = {}
    for name, max_score in points.items():
        try:
            score = float(result.cells.get(name) or 0.0)
        except (TypeError, ValueError):
            score = 0.0
        cells[name] = min(max(score, 0.0), max_score)
    return cells


def write_artifacts(build: Path, r: Result, model: dict) -> None:
    """The autograded notebook, the feedback page and the logs of one submission."""
    name = model[r.assignment]["notebook"] if r.assignment in model else r.assignment
    where = Path(r.student) / (r.assignment or gradebook.NO_ASSIGNMENT)
    for kind, text in (("autograded", r.autograded), ("feedback", r.feedback)):
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
    for file, log in (("job.log", r.job_log), ("kernel.log", r.kernel_log)):
        (logs / file).write_text(log or "", encoding="utf-8")
    # what each check found wrong, in the course's words
    (logs / "checks.log").write_text("".join(
        f"{gid}: {'; '.join(why)}\n" for gid, why in sorted(r.failed.items())) or
        "every check agreed with the reference\n", encoding="utf-8")


def grade(course: Path, submissions: Path, jobs: int, build: Path, unsandboxed: bool = False,
          students: list[str] | None = None, scheduler: str | None = None) -> int:
    build.mkdir(parents=True, exist_ok=True)
    ensure_release(course, build)
    cfg = load_config(course, build)
    settings, rules = grading_settings(cfg), late.settings(cfg)
    limits = settings["limits"]
    model = course_model(course, build)
    items, warnings = collect.discover(submissions.resolve(), model)
    if students:  # regrade these; everyone else's rows stay as they are
        wanted = set(students)
        missing = sorted(wanted - {i["student"] for i in items})
        if missing:
            warnings.append(f"STUDENTS names {', '.join(missing)}, not in {submissions}")
        items = [i for i in items if i["student"] in wanted]
    for w in warnings:
        print(f"grade: warning: {report.escape_text(w)}", flush=True)
    kernels = {m["kernel"]: kernel_setup(m["kernel"], unsandboxed or
                                         settings["allow_unsandboxed"])
               for m in model.values()}
    hidden = sorted({str(ROOT), str(build.resolve()), str(submissions.resolve()),
                     str(course.resolve())})
    box = plan_sandbox(settings, kernels, hidden, build, unsandboxed)
    secret = grading_secret(build)
    print(f"grade: {len(items)} submission(s); limits: {limits['cell_timeout']} s per cell, "
          f"{limits['memory_mb']} MB per process, {limits['max_output_chars']} characters of "
          f"output per cell, {limits['submission_timeout']} s per submission", flush=True)
    print(f"grade: sandbox: {box['description']}", flush=True)

    gradebook_file = build / "gradebook.db"
    snapshot = gradebook_file.read_bytes()  # what it must still be when the jobs are done
    start = time.monotonic()
    results: list[Result] = []
    shown = progress.Progress(len(items))

    def finish(item: dict, result: Result) -> None:
        m = model.get(result.assignment)
        if m:
            result.cells = clamp_cells(result, m["points"])
            # the one computation of the penalty: the progress line, the page, the gradebook
            # (hence grades.csv and the exports) all show this number
            result.late = late.assess(rules, result.assignment, item.get("timestamp"),
                                      result.score)
            if item.get("timestamp_problem"):
                result.detail.append(item["timestamp_problem"])
        if box["bwrap"] is None and Status.UNSANDBOXED not in result.status:
            result.flag(Status.UNSANDBOXED, "graded without the sandbox, as asked", first=True)
        results.append(result)
        shown.done(result, m)

    planned = plan_jobs(items, model, kernels, limits, secret, box, settings, finish)
    references = reference_jobs(planned, model, kernels, limits, box, settings)
    expected: dict[str, dict] = {}  # assignment -> the reference's run, once it is in
    waiting: dict[str, list] = {}  # assignment -> (item, result) that ran before it
    items_by_key = {key: item for key, _, item, _ in planned}
    pool = cluster.Pool(jobs, scheduler, settings["timeouts"])
    print(f"grade: running on {pool.where}", flush=True)

    def judged(item: dict, result: Result) -> None:
        ref = expected[item["assignment"]]
        m = model[item["assignment"]]
        if ref.problem:
            result = zero_result(item, Status.GRADING_ERROR, ref.problem, m["points"])
        else:
            result = job_judge(result, course_part(m), ref.reports[item["key"]])
        finish(item, result)

    def done(key: str, result) -> None:
        if key.startswith("reference-"):
            name = key.removeprefix("reference-")
            expected[name] = reference_result(name, result)
            for item, waited in waiting.pop(name, []):
                judged(item, waited)
            return
        item = items_by_key[key]
        if isinstance(result, Exception):  # a worker died too often, or a bug of ours
            why = ("the worker grading it died, each time it was tried (a worker is "
                   f"restarted when it passes {cluster.MEMORY_LIMIT})"
                   if type(result).__name__ == "KilledWorker" else
                   f"{type(result).__name__}: {str(result)[:200]}")
            finish(item, zero_result(item, Status.GRADING_ERROR, why,
                                     model[item["assignment"]]["points"]))
        elif item["assignment"] in expected:
            judged(item, result)
        else:
            waiting.setdefault(item["assignment"], []).append((item, result))

    try:
        shown.watch(pool)
        # The references first, so that they are in by the time most students' runs are;
        # the students' runs do not wait for them, only their verdicts do.
        for key, _, item, _ in planned:
            item["key"] = key
        stream = [*references, *((key, label, job) for key, label, _, job in planned)]
        pool.run(iter(stream), done, window=pool.workers())
        pages = [(f"page-{n}", f"{r.student}/{r.assignment}",
                  {"course": course_part(model[r.assignment]), "result": r})
                 for n, r in enumerate(results) if r.autograded is not None]
        by_key = {key: job["result"] for key, _, job in pages}

        def page_done(key: str, page) -> None:
            r = by_key[key]
            if isinstance(page, Result):  # what rendering added: a cut, a plain page, a flag
                r.feedback, r.status, r.detail, r.review = (page.feedback, page.status,
                                                            page.detail, page.review)
            else:  # the worker died rendering it, or a bug of ours: the plain page
                r.feedback = report.feedback_stub(r, course_part(model[r.assignment]))
        pool.run(iter(pages), page_done, window=pool.workers(), task=feedback_on_worker)
    finally:
        shown.stop()
        pool.close()
    wall = time.monotonic() - start

    if gradebook_file.read_bytes() != snapshot:  # only possible without the sandbox
        gradebook_file.write_bytes(snapshot)
        print("grade: WARNING: the gradebook changed while student code ran; restored",
              flush=True)
    for suffix in ("-journal", "-wal", "-shm"):
        Path(f"{gradebook_file}{suffix}").unlink(missing_ok=True)
    for r in results:
        try:
            write_artifacts(build, r, model)
        except (OSError, ValueError) as e:  # this student's row says so; the others go on
            r.flag(Status.GRADING_ERROR, f"its files could not be written: "
                                         f"{type(e).__name__}: {str(e)[:200]}")
    gradebook.record(build, results, model)
    rows = gradebook.rows(build, model)
    report.write_csv(build / "grades.csv", rows, gradebook.exercises(model))
    graded = {(r.student, r.assignment) for r in results}
    summary([r for r in rows if (r["student"], r["assignment"]) in graded], len(rows), wall,
            pool.where, build, box)
    failed = cluster.all_failed_message(results)
    if failed:
        print(failed, flush=True)
        return 1
    return 0


def summary(rows: list[dict], total: int, wall: float, where: str, build: Path,
            box: dict) -> None:
    esc = report.escape_text
    if rows:
        width = max(len(esc(r["student"])) for r in rows)
        print(f"\n{'student':<{width}}  {'assignment':<22} {'score':>9}  status")
        for r in rows:
            print(f"{esc(r['student']):<{width}}  {r['assignment'] or '-':<22} "
                  f"{r['score']:>5}/{r['max_score']:<3}  {r['status']}"
                  + (f" ({r['late']})" if r["late"] else "")
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
    print(f"\ngrade: {len(rows)} graded now ({bad} with a status, {len(flagged)} to review) "
          f"in {wall:.1f} s on {where}; grades.csv lists all {total} row(s): "
          f"{show(build / 'grades.csv')}, feedback in {show(build / 'feedback')}", flush=True)


def plan_jobs(items, model, kernels, limits, secret, box, settings, finish):
    """(key, label, item, job) for each submission to run, its notebook read once, as it
    is submitted; those that cannot run are finished here with a row saying why."""
    planned = []
    for n, item in enumerate(items):
        m = model.get(item["assignment"])
        if "problem" in item:
            finish(item, zero_result(item, *item["problem"], m["points"] if m else None))
            continue
        try:
            data = collect.read_regular_file(item["path"])
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or e
            finish(item, zero_result(item, Status.NOT_A_NOTEBOOK_FILE,
                                     f"could not read the notebook: {why}", m["points"]))
            continue
        item["timestamp"], item["timestamp_problem"] = late.read_timestamp(
            os.path.dirname(item["path"]))
        answers = hashlib.sha256(data).hexdigest()
        job = {"student": item["student"], "assignment": item["assignment"],
               "notebook": base64.b64encode(data).decode(),
               "course": course_part(m), "limits": limits, "timeouts": settings["timeouts"],
               "seeds": {gid: seed(secret, item["student"], item["assignment"], gid, answers)
                         for gid in m["tests"]},
               "sandbox": sandbox_part(box, settings, kernels[m["kernel"]])}
        planned.append((f"grade-{n}", f"{item['student']}/{item['assignment']}", item, job))
    return planned


def course_part(m: dict) -> dict:
    return {k: m[k] for k in ("notebook", "points", "cells", "released", "tests", "hidden",
                              "checks", "kernelspec", "max_score")}


def sandbox_part(box: dict, settings: dict, kernel: dict) -> dict:
    return {"bwrap": box["bwrap"], "uid_base": settings["uid_base"],
            **{k: kernel[k] for k in ("kernel_argv", "exposed", "env")}}


def reference_jobs(planned, model, kernels, limits, box, settings) -> list:
    """(key, label, job) of each assignment's reference run: the source notebook once, its
    checks for every submission's seeds."""
    wanted: dict[str, list] = {}
    for key, _, item, job in planned:
        wanted.setdefault(item["assignment"], []).append((key, job["seeds"]))
    jobs = []
    for name, seed_sets in sorted(wanted.items()):
        m = model[name]
        jobs.append((f"reference-{name}", f"reference/{name}", {
            "reference": True, "student": "(reference)", "assignment": name,
            "notebook": base64.b64encode(Path(m["source_file"]).read_bytes()).decode(),
            "course": course_part(m), "limits": limits, "timeouts": settings["timeouts"],
            "seed_sets": seed_sets,
            "sandbox": sandbox_part(box, settings, kernels[m["kernel"]])}))
    return jobs


def reference_result(name: str, result: ReferenceRun | Exception) -> ReferenceRun:
    """A reference run as it came back, or why it did not (a worker that died each time)."""
    if isinstance(result, Exception):
        result = ReferenceRun(problem=f"the reference solution could not be run: "
                                      f"{str(result)[:300]}")
    if result.problem:
        print(f"grade: {name}: {report.escape_text(result.problem)}", flush=True)
    return result
