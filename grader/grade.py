"""`make grade`: every new or changed submission graded in a sandboxed kernel, JOBS at a time.

nbgrader grades one submission after another and its sqlite gradebook is not safe for
concurrent writers. So each submission is a job of its own (grader/job.py), run on a Dask
cluster's workers (grader/cluster.py), and this process alone writes the gradebook, the
autograded notebooks, the feedback and grades.csv: JOBS=1 and JOBS=8, or a cluster of 50
machines, write the same grades. Each submission is recorded as soon as its page is rendered,
so a run that is stopped keeps what it finished; a submission whose fingerprint
(grader/reuse.py) is unchanged since it was recorded is not graded again (FORCE=1 regrades).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from grader import (
    cluster,
    collect,
    gradebook,
    late,
    override,
    progress,
    report,
    reuse,
    sandbox,
    similarity,
)
from grader.config import grading_settings
from grader.course import course_model, ensure_release, grading_secret, load_config, seed
from grader.errors import UsageError
from grader.job import feedback_on_worker, zero_result
from grader.job import judge as job_judge
from grader.model import (
    Assignment,
    Deadlines,
    GradeRow,
    Job,
    JobSandbox,
    JobSpec,
    KernelSetup,
    Page,
    ReferenceRun,
    Result,
    SandboxPlan,
    Settings,
    Status,
    Submission,
)
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


def kernel_setup(kernel: str, unsandboxed: bool) -> KernelSetup:
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
    return KernelSetup(kernel_argv=spec.argv, exposed=exposed, env=env, python=python)


def plan_sandbox(settings: Settings, kernels: dict[str, KernelSetup], hidden: list[str],
                 build: Path, unsandboxed: bool) -> SandboxPlan:
    """bwrap, probed with one kernel env; or limits only, if and only if the instructor asked."""
    if unsandboxed or settings.allow_unsandboxed:
        why = "--unsandboxed" if unsandboxed else "c.GradingSandbox.allow_unsandboxed"
        return SandboxPlan(bwrap=None, root=False, description=(
            f"NONE ({why}): limits only. Student code can read and write what you can; "
            "every row is marked `unsandboxed`"))
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
    probe_uids = sandbox.UidSlots(settings.uid_base + 10_001, 1) if root else None
    # the first uid free from there: another grading run may be probing with the first
    uid = probe_uids.free.get() if probe_uids else None
    scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-probe-"))
    try:
        scratch.chmod(0o711)
        problems = sandbox.probe(
            bwrap.path, first.python, exposed=first.exposed, uid=uid, limits=settings.limits,
            env=first.env, hidden=hidden, scratch=scratch,
            timeout=settings.timeouts.sandbox_probe)
    finally:
        if probe_uids:
            sandbox.sweep(uid)
            probe_uids.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if problems:
        raise UsageError(f"grade: the grading sandbox does not hold here: "
                         f"{'; '.join(problems)}. {how}")
    who = "one uid per job slot" if root else "as you"
    return SandboxPlan(bwrap=bwrap.path, root=root, description=(
        f"bubblewrap {bwrap.describe()}, {who}: no network, no capabilities, only the "
        "framework env and the shim visible (read-only), tmpfs home and /tmp"))


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


def write_artifacts(build: Path, r: Result, model: dict[str, Assignment]) -> None:
    """The autograded notebook, the feedback page and the logs of one submission."""
    name = model[r.assignment].notebook if r.assignment in model else r.assignment
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


@dataclass
class Run:
    """What a grading run knows before any job starts (discover and plan)."""

    build: Path
    settings: Settings  # grader/config.py's grading_settings
    rules: Deadlines  # grader/late.py's settings
    model: dict[str, Assignment]  # by name (grader/course.py)
    submissions: list[Submission]  # found by grader/collect.py
    kernels: dict[str, KernelSetup]  # by kernel name
    sandboxed: bool  # False: --unsandboxed or c.GradingSandbox.allow_unsandboxed
    secret: bytes
    hidden: list[str]  # what the sandbox must not show (plan_sandbox)
    force: bool = False  # FORCE=1: grade every submission, fingerprints or not
    everyone: list[Submission] = field(default_factory=list)  # STUDENTS= or not
    box: SandboxPlan | None = None  # the sandbox, once a job needs one
    reused: int = 0  # submissions whose stored result stands


def grade(course: Path, submissions: Path, jobs: int, build: Path, unsandboxed: bool = False,
          students: list[str] | None = None, scheduler: str | None = None,
          force: bool = False) -> int:
    """discover -> plan -> run (each submission recorded as it ends) -> report."""
    run = discover(course, submissions, build, unsandboxed, students, force)
    recorder = Recorder(run)
    verdicts = Verdicts(run, recorder.record_one)
    planned = plan_jobs(run, verdicts.finish)
    verdicts.shown.total -= run.reused
    if run.reused:
        print(f"grade: {run.reused} submission(s) unchanged since they were graded: their "
              "results stand (FORCE=1 grades them again)", flush=True)
    wall, where = (run_jobs(run, planned, verdicts, jobs, scheduler) if planned
                   else (0.0, "no cluster (nothing to run)"))
    recorder.close()
    compare(run)
    rows = gradebook.rows(build, run.model)
    report.write_csv(build / "grades.csv", rows, gradebook.exercises(run.model))
    graded = {(r.student, r.assignment) for r in verdicts.results}
    summary([r for r in rows if (r.student, r.assignment) in graded], len(rows), wall,
            where, build, run)
    failed = cluster.all_failed_message(verdicts.results)
    if failed:
        print(failed, flush=True)
        return 1
    return 0


def discover(course: Path, submissions: Path, build: Path, unsandboxed: bool,
             students: list[str] | None, force: bool = False) -> Run:
    """The course, its settings, and the submissions to grade."""
    build.mkdir(parents=True, exist_ok=True)
    ensure_release(course, build)
    cfg = load_config(course, build)
    settings, rules = grading_settings(cfg), late.settings(cfg)
    limits = settings.limits
    model = course_model(course, build)
    items, warnings = collect.discover(submissions.resolve(), model)
    everyone = items
    if students:  # regrade these; everyone else's rows stay as they are
        wanted = set(students)
        known = sorted({i.student for i in items})
        missing = sorted(wanted - set(known))
        if missing:  # a typo would grade nobody and look like success
            raise UsageError(f"grade: STUDENTS names {', '.join(map(report.escape_text, missing))}"
                             f", who handed in nothing in {show(submissions)}; its students "
                             f"are: {', '.join(map(report.escape_text, known)) or 'none'}")
        items = [i for i in items if i.student in wanted]
    for w in warnings:
        print(f"grade: warning: {report.escape_text(w)}", flush=True)
    kernels = {m.kernel: kernel_setup(m.kernel, unsandboxed or settings.allow_unsandboxed)
               for m in model.values()}
    hidden = sorted({str(ROOT), str(build.resolve()), str(submissions.resolve()),
                     str(course.resolve())})
    print(f"grade: {len(items)} submission(s); limits: {limits.cell_timeout} s per cell, "
          f"{limits.memory_mb} MB per process, {limits.max_output_chars} characters of "
          f"output per cell, {limits.submission_timeout} s per submission", flush=True)
    sandboxed = not (unsandboxed or settings.allow_unsandboxed)
    for taken in override.adopt(build, model, rules):
        print(f"grade: a manual score given outside `make override` is kept as an override of "
              f"the notebook it was given on: {report.escape_text(taken)}", flush=True)
    return Run(build, settings, rules, model, items, kernels, sandboxed, grading_secret(build),
               hidden, force, everyone)


def compare(run: Run) -> None:
    """Similar answers across the class as handed in (STUDENTS= or not): build/similarity.html
    and a line in each such row's review column (grader/similarity.py)."""
    subs = {(s.student, s.assignment): Path(s.path) for s in run.everyone
            if s.path and not s.problem and s.assignment in run.model}
    released = {a: run.build / "release" / a / f"{m.notebook}.ipynb"
                for a, m in run.model.items()}
    if similarity.refresh(run.build, subs, released):
        print(f"grade: similar answers compared: {show(run.build / 'similarity.html')}",
              flush=True)


class Recorder:
    """Writes each submission's files as it ends: its pages and logs, its gradebook entry,
    its result.json and, last, its fingerprint (grader/reuse.py), so that a run killed at
    any point leaves every submission either whole or to be graded again.

    Student code runs while this writes; without the sandbox it could write the gradebook
    too. So before each write the gradebook is compared with what this process last left
    there, and put back if it changed."""

    def __init__(self, run: Run):
        self.run = run
        self.file = run.build / "gradebook.db"
        self.known = self.file.read_bytes()

    def check(self) -> None:
        if self.file.read_bytes() != self.known:  # only possible without the sandbox
            self.file.write_bytes(self.known)
            print("grade: WARNING: the gradebook changed while student code ran; restored",
                  flush=True)
        for suffix in ("-journal", "-wal", "-shm"):
            Path(f"{self.file}{suffix}").unlink(missing_ok=True)

    def record_one(self, r: Result, fingerprint: str | None) -> None:
        """`fingerprint`: None for a submission whose result is never reused (no notebook)."""
        build, model = self.run.build, self.run.model
        self.check()
        reuse.forget(build, r.student, r.assignment or gradebook.NO_ASSIGNMENT)
        try:
            write_artifacts(build, r, model)
        except (OSError, ValueError) as e:  # this student's row says so; the others go on
            r.flag(Status.GRADING_ERROR, f"its files could not be written: "
                                         f"{type(e).__name__}: {str(e)[:200]}")
            fingerprint = None
        gradebook.record(build, [r], model)
        self.known = self.file.read_bytes()
        if fingerprint and Status.GRADING_ERROR not in r.status:
            reuse.remember(build, r.student, r.assignment, fingerprint)

    def close(self) -> None:
        self.check()


class Verdicts:
    """The results as the jobs end: a student's run is judged once its assignment's
    reference run is in (until then it waits), then finished: its cells clamped to the
    gradebook's points, its one late penalty, its flags; then its page is rendered on a
    worker and the submission recorded."""

    def __init__(self, run: Run, record):
        self.run = run
        self.record = record  # Recorder.record_one
        self.results: list[Result] = []
        self.expected: dict[str, ReferenceRun] = {}  # assignment -> its reference run
        self.waiting: dict[str, list] = {}  # assignment -> (job, result) that ran before it
        self.jobs: dict[str, Job] = {}  # by key
        self.queue: deque = deque()  # what the cluster runs next (run_jobs)
        self.pages: dict[str, tuple[Result, Job]] = {}  # by page key
        self.shown = progress.Progress(len(run.submissions))

    def done(self, key: str, result) -> None:
        """What a job returned (or the exception its worker died of)."""
        if key.startswith("page-"):
            self.page_done(key, result)
            return
        if key.startswith("reference-"):
            name = key.removeprefix("reference-")
            self.expected[name] = reference_result(name, result)
            for job, waited in self.waiting.pop(name, []):
                self.judged(job, waited)
            return
        job = self.jobs[key]
        sub = job.submission
        if isinstance(result, Exception):  # a worker died too often, or a bug of ours
            why = ("the worker grading it died, each time it was tried (a worker is "
                   f"restarted when it passes {cluster.MEMORY_LIMIT})"
                   if type(result).__name__ == "KilledWorker" else
                   f"{type(result).__name__}: {str(result)[:200]}")
            self.finish(zero_result(sub.student, sub.assignment, Status.GRADING_ERROR, why,
                                    self.run.model[sub.assignment].points), job)
        elif sub.assignment in self.expected:
            self.judged(job, result)
        else:
            self.waiting.setdefault(sub.assignment, []).append((job, result))

    def judged(self, job: Job, result: Result) -> None:
        sub = job.submission
        ref = self.expected[sub.assignment]
        m = self.run.model[sub.assignment]
        if ref.problem:
            result = zero_result(sub.student, sub.assignment, Status.GRADING_ERROR, ref.problem,
                                 m.points)
        else:
            result = job_judge(result, m, ref.reports[job.key])
        self.finish(result, job)

    def finish(self, result: Result, job: Job | None = None) -> None:
        """`job`: the run it came from; None for a submission that could not run."""
        m = self.run.model.get(result.assignment)
        if m:
            result.cells = clamp_cells(result, m.points)
            if job:  # the instructor's overrides that hold for these answers
                result.answers = job.answers
                override.apply(self.run.build, result, job.answers)
            # the one computation of the penalty: the progress line, the page, the gradebook
            # (hence grades.csv and the exports) all show this number
            result.late = late.assess(self.run.rules, result.assignment,
                                      job.timestamp if job else None, result.score)
            if job and job.timestamp_problem:
                result.detail.append(job.timestamp_problem)
        if not self.run.sandboxed and Status.UNSANDBOXED not in result.status:
            result.flag(Status.UNSANDBOXED, "graded without the sandbox, as asked", first=True)
        self.results.append(result)
        self.shown.done(result, m)
        if result.autograded is None or m is None:
            self.record(result, None)
            return
        key = f"page-{job.key}"
        self.pages[key] = (result, job)
        # first in the queue: a submission is recorded as soon as it can be
        self.queue.appendleft((key, f"{result.student}/{result.assignment}",
                               Page(m, result), feedback_on_worker))

    def page_done(self, key: str, page) -> None:
        """The page rendered on a worker, with what rendering added (a cut, a plain page, a
        flag); or the worker died rendering it, or a bug of ours: the plain page."""
        r, job = self.pages.pop(key)
        if isinstance(page, Result):
            r.feedback, r.status, r.detail, r.review = (page.feedback, page.status,
                                                        page.detail, page.review)
        else:
            r.feedback = report.feedback_stub(r, self.run.model[r.assignment])
        self.record(r, job.fingerprint)


def run_jobs(run: Run, planned: list, verdicts: Verdicts, jobs: int,
             scheduler: str | None) -> tuple[float, str]:
    """Every job on the cluster, each page as its verdict is in: (seconds it took, where it
    ran). The sandbox is probed first: only a run with jobs needs it."""
    run.box = plan_sandbox(run.settings, run.kernels, run.hidden, run.build, not run.sandboxed)
    print(f"grade: sandbox: {run.box.description}", flush=True)
    planned = [replace(job, spec=replace(job.spec, sandbox=sandbox_part(
        run.box, run.settings, run.kernels[run.model[job.submission.assignment].kernel])))
        for job in planned]
    start = time.monotonic()
    references = reference_jobs(run, planned)
    verdicts.jobs = {job.key: job for job in planned}
    pool = cluster.Pool(jobs, scheduler, run.settings.timeouts)
    print(f"grade: running on {pool.where}", flush=True)
    try:
        verdicts.shown.watch(pool)
        # The references first, so that they are in by the time most students' runs are;
        # the students' runs do not wait for them, only their verdicts do. Pages go to the
        # front of the queue as verdicts come in (Verdicts.finish).
        verdicts.queue.extend([*references, *((job.key, job.label, job.spec) for job in planned)])
        pool.run(verdicts.queue, verdicts.done, window=pool.workers())
    finally:
        verdicts.shown.stop()
        pool.close()
    return time.monotonic() - start, pool.where


def summary(rows: list[GradeRow], total: int, wall: float, where: str, build: Path,
            run: Run) -> None:
    esc = report.escape_text
    if rows:
        width = max(len(esc(r.student)) for r in rows)
        print(f"\n{'student':<{width}}  {'assignment':<22} {'score':>9}  status")
        for r in rows:
            print(f"{esc(r.student):<{width}}  {r.assignment or '-':<22} "
                  f"{r.score:>5}/{r.max_score:<3}  {r.status}"
                  + (f" ({r.late})" if r.late else "")
                  + (f": {esc(r.detail)}" if r.detail else ""))
    flagged = [r for r in rows if r.review]
    if flagged:
        print(f"\nTo review ({len(flagged)}): the score stands, and a person decides: code "
              "that does something a correct answer does not need (read the notebook in "
              "build/autograded/), or answers near-identical to another's (similarity.html).")
        for r in flagged:
            print(f"  {esc(r.student)} {r.assignment}: {esc(r.review)}")
    if run.box and run.box.bwrap is None:
        print(f"\ngrade: sandbox: {run.box.description}")
    bad = sum(r.status != "ok" for r in rows)
    ran = (f"{len(rows)} graded now ({bad} with a status, {len(flagged)} to review) in "
           f"{wall:.1f} s on {where}" if rows else "none graded now")
    reused = f", {run.reused} unchanged since they were graded" if run.reused else ""
    print(f"\ngrade: {ran}{reused}; grades.csv lists all {total} row(s): "
          f"{show(build / 'grades.csv')}, feedback in {show(build / 'feedback')}", flush=True)


def plan_jobs(run: Run, finish) -> list[Job]:
    """A Job for each submission to run, its notebook read once, as it is submitted; those
    that cannot run are finished here with a row saying why, and those whose fingerprint is
    the one stored with their result are left as they are (counted in run.reused)."""
    planned = []
    shared = {name: reuse.assignment_digest(
        m, secret=run.secret, rules=run.rules, settings=run.settings,
        kernel=run.kernels[m.kernel], sandboxed=run.sandboxed) for name, m in run.model.items()}
    complete = set() if run.force else gradebook.graded(run.build, run.model)
    for n, sub in enumerate(run.submissions):
        m = run.model.get(sub.assignment)
        if sub.problem:
            finish(zero_result(sub.student, sub.assignment, *sub.problem,
                               m.points if m else None))
            continue
        try:
            data = collect.read_regular_file(sub.path)
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or e
            finish(zero_result(sub.student, sub.assignment, Status.NOT_A_NOTEBOOK_FILE,
                               f"could not read the notebook: {why}", m.points))
            continue
        timestamp, timestamp_problem = late.read_timestamp(os.path.dirname(sub.path))
        fingerprint = reuse.fingerprint(shared[sub.assignment], sub.student, data,
                                        [timestamp, timestamp_problem])
        if ((sub.student, sub.assignment) in complete
                and reuse.stored(run.build, sub.student, sub.assignment) == fingerprint):
            run.reused += 1
            continue
        answers = hashlib.sha256(data).hexdigest()  # the seeds: new ones for new bytes
        spec = JobSpec(sub.student, sub.assignment, base64.b64encode(data).decode(), m,
                       run.settings.limits, run.settings.timeouts,
                       seeds={gid: seed(run.secret, sub.student, sub.assignment, gid, answers)
                              for gid in m.tests})  # its sandbox once run_jobs has one
        planned.append(Job(f"grade-{n}", f"{sub.student}/{sub.assignment}", sub, spec,
                           timestamp, timestamp_problem, fingerprint,
                           override.answers_digest(data, m)))
    return planned


def sandbox_part(box: SandboxPlan, settings: Settings, kernel: KernelSetup) -> JobSandbox:
    """A job spec's sandbox: what the job's process needs to start its kernel."""
    return JobSandbox(bwrap=box.bwrap, uid_base=settings.uid_base, **kernel.for_job())


def reference_jobs(run: Run, planned: list[Job]) -> list[tuple[str, str, JobSpec]]:
    """(key, label, job) of each assignment's reference run: the source notebook once, its
    checks for every submission's seeds."""
    wanted: dict[str, list] = {}
    for job in planned:
        wanted.setdefault(job.submission.assignment, []).append((job.key, job.spec.seeds))
    jobs = []
    for name, seed_sets in sorted(wanted.items()):
        m = run.model[name]
        jobs.append((f"reference-{name}", f"reference/{name}", JobSpec(
            "(reference)", name, base64.b64encode(Path(m.source_file).read_bytes()).decode(),
            m, run.settings.limits, run.settings.timeouts, reference=True, seed_sets=seed_sets,
            sandbox=sandbox_part(run.box, run.settings, run.kernels[m.kernel]))))
    return jobs


def reference_result(name: str, result: ReferenceRun | Exception) -> ReferenceRun:
    """A reference run as it came back, or why it did not (a worker that died each time)."""
    if isinstance(result, Exception):
        result = ReferenceRun(problem=f"the reference solution could not be run: "
                                      f"{str(result)[:300]}")
    if result.problem:
        print(f"grade: {name}: {report.escape_text(result.problem)}", flush=True)
    return result
