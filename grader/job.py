"""One grading job: a submission's bytes and its assignment's cells in, a result out.

A pure function of its input (grader/model.py's JobSpec); the result (grader/model.py's Result)
holds the scores, statuses, review findings and the artifacts as text: the autograded
notebook and the feedback page. It reads no gradebook and writes nothing but the sandbox's
socket directory, so it runs on any worker that has the same checkout and envs. A
submission that runs past its time limit has its kernel killed and its later cells marked
as not run.

Its verdicts are the comparison, in the grader's process (judge), of what the checks
observed in the student's kernel with the reports of the same checks on the reference
solution, for the same seeds, made by run_reference (one job per assignment and grading
run, alongside the students'); the page is rendered last (feedback_on_worker).

Run by a grading worker (grader/cluster.py) through run_on_worker.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from grader import audit, checks, report, restore, sandbox
from grader.execute import GradingClient, kernel_manager
from grader.model import Assignment, CellPlan, JobSpec, Page, ReferenceRun, Report, Result, Status
from grader.paths import ROOT

GUARD_SOURCE = (Path(__file__).parent / "kernel_guard.py").read_text()
OBSERVE_SOURCE = (Path(__file__).parent / "observe.py").read_text()
LOG_TAIL = 20_000
JOB_MEMORY = 2 * 2**30  # address space of the grader's own process for one job


def parse_notebook(data: bytes):
    """The notebook, or (status, detail) saying why it is not one."""
    import nbformat

    try:
        text = data.decode("utf-8")
        json.loads(text)
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError:
        return None, (Status.INVALID_NOTEBOOK, "not UTF-8 text")
    except json.JSONDecodeError as e:
        return None, (Status.INVALID_NOTEBOOK, f"not valid JSON ({e.msg}, line {e.lineno})")
    except RecursionError:
        return None, (Status.INVALID_NOTEBOOK, "nested too deeply to be a notebook")
    except Exception as e:  # valid JSON but not a notebook nbformat accepts
        first = (str(e).splitlines() or [type(e).__name__])[0]
        return None, (Status.INVALID_NOTEBOOK, f"not a Jupyter notebook ({first[:120]})")
    return nb, None


def plan_cells(nb, course: Assignment, seeds: dict[str, int]
               ) -> tuple[dict[int, CellPlan], list[tuple[str, str]]]:
    """What the grader does around each of the course's cells, by index, and the student's
    code cells to audit."""
    known = {restore.grade_id(c) for c in course.cells if restore.grade_id(c)}
    locked = {restore.grade_id(c) for c in course.cells
              if (c.metadata.get("nbgrader") or {}).get("locked")}
    plan, student = {}, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = restore.grade_id(cell)
        if gid in locked:
            tree = audit.parse(cell.source)
            plan[i] = CellPlan(test=gid in course.tests, seed=seeds.get(gid, 0),
                               binds=audit.bound_names(cell.source),
                               imports=sorted(audit.imports(tree)) if tree else [])
        else:
            student.append((gid if gid in known else f"cell {i}", cell.source))
    return plan, student


def verdicts(course: Assignment, reports: dict[str, str | None], expected: dict[str, Report]
             ) -> tuple[dict[str, float], dict[str, list[str]], list[str]]:
    """(points per test cell, what failed per cell, problems of the course's own checks):
    a cell's points when its check's observations pass against the reference's
    (grader/checks.py); nothing the kernel says about a cell's status counts."""
    scores = dict.fromkeys(course.points, 0.0)
    failed, problems = {}, []
    for gid in course.points:
        if gid not in course.checks:
            continue
        reference = expected.get(gid)
        why = checks.reference_problem(reference) if reference else "no reference report"
        if why:
            problems.append(f"{gid}: {why}")
            failed[gid] = ["the grader could not check this cell"]
            continue
        text = reports.get(gid)
        if text is None:
            failed[gid] = ["the checks did not run"]
            continue
        passed, failed_keys = checks.judge(reference, checks.parse_report(text))
        if passed:
            scores[gid] = course.points[gid]
        else:
            failed[gid] = failed_keys
    return scores, failed, problems


def _drain(fd: int, sink: bytearray) -> None:
    """Keep the last LOG_TAIL bytes of what the kernel writes to its stdout and stderr."""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            sink.extend(chunk)
            del sink[:-LOG_TAIL]


def new_result(student: str, assignment: str, points: dict | None = None) -> Result:
    """A result before anything has run: every cell at 0, no status yet."""
    return Result(student, assignment, cells=dict.fromkeys(points or {}, 0.0))


def zero_result(student: str, assignment: str, status: Status, detail: str,
                points: dict | None = None) -> Result:
    """The result of a submission that scores nothing: `status` and why."""
    result = new_result(student, assignment, points)
    result.flag(status, detail)
    return result


def _execute(job: JobSpec, nb, plan: dict[int, CellPlan], seed_sets: list[dict[str, int]],
             logger, result: Result):
    """The assembled notebook run in its sandboxed kernel, then the checks once per seed
    set: the GradingClient, or None (and a grading error in `result`)."""
    start = time.monotonic()
    limits, waits, box = job.limits, job.timeouts, job.sandbox
    scratch = Path(box.scratch)  # made, and removed, by the grader
    log = bytearray()
    try:
        scratch.chmod(0o711)  # the kernel's uid passes through to its socket directory
        ipc, stage = scratch / "ipc", scratch / "stage"
        ipc.mkdir(mode=0o700)
        stage.mkdir()
        spec = sandbox.launch_spec(
            box.bwrap, exposed=box.exposed, ipc_dir=str(ipc), stage_dir=str(stage),
            uid=box.uid, limits=limits, env=box.env)
        spec_file = scratch / "launch.json"
        spec_file.write_text(json.dumps(spec))
        spec_file.chmod(0o600)
        argv = sandbox.kernel_argv(str(spec_file), box.kernel_argv, as_root=box.uid is not None)
        course = job.course
        code = [c.source for c in course.cells if c.cell_type == "code"]
        client = GradingClient(
            nb, kernel_manager(argv, str(ipc)), plan=plan, guard_source=GUARD_SOURCE,
            guard_config={"modules": audit.modules_used(code)},
            checks=[(gid, src) for gid, src in course.checks.items()],
            seed_sets=seed_sets, observe_source=OBSERVE_SOURCE,
            max_output_chars=limits.max_output_chars,
            max_notebook_chars=limits.max_notebook_output_chars,
            deadline=start + limits.submission_timeout, time_limit=limits.submission_timeout,
            timeout=limits.cell_timeout, iopub_timeout=waits.iopub,
            startup_timeout=waits.kernel_startup, setup_timeout=waits.grader_setup,
            log=logger)
        r, w = os.pipe()
        drain = threading.Thread(target=_drain, args=(r, log), daemon=True)
        drain.start()
        try:
            client.execute(cwd=str(ROOT), stdout=w, stderr=w)
        finally:
            os.close(w)
            drain.join(timeout=5)
    except Exception as e:
        logger.exception("the notebook could not be run")  # for the instructor's job.log
        result.flag(Status.GRADING_ERROR, f"the notebook could not be run: "
                                          f"{type(e).__name__}: {str(e)[:300]}")
        result.kernel_log = log.decode(errors="replace")
        return None
    result.kernel_log = log.decode(errors="replace")
    return client


def _job_logger():
    """nbclient's log for this job alone (build/grading/<student>/<assignment>/job.log)."""
    log_text = io.StringIO()
    logger = logging.getLogger(f"grader.job.{id(log_text)}")
    logger.propagate, logger.handlers = False, [logging.StreamHandler(log_text)]
    logger.setLevel(logging.INFO)

    def close() -> str:
        logger.handlers.clear()
        logging.Logger.manager.loggerDict.pop(logger.name, None)  # workers live long
        return log_text.getvalue()[-LOG_TAIL:]
    return logger, close


def run(job: JobSpec) -> Result:
    """A student's submission: its notebook run, and what its checks reported (judged by
    judge() against the reference's reports for the same seeds)."""
    start = time.monotonic()
    course = job.course
    result = new_result(job.student, job.assignment, course.points)
    logger, close_log = _job_logger()

    def finish():
        result.job_log = close_log()
        result.seconds = time.monotonic() - start
        return result

    import nbformat

    student_nb, problem = parse_notebook(base64.b64decode(job.notebook))
    if problem:
        result.flag(*problem)
        return finish()
    nb, events = restore.assemble(student_nb, course)
    if not restore.attempted(nb, course):  # a blank hand-in is not wrong work: said apart
        result.flag(Status.NOT_ATTEMPTED, "no answer: every answer cell is as released")
    plan, student_cells = plan_cells(nb, course, job.seeds)
    result.review += audit.audit(student_cells, [c.source for c in course.cells
                                                    if c.cell_type == "code"])
    client = _execute(job, nb, plan, [job.seeds], logger, result)
    if client is None:
        return finish()
    # What the checks sent, as text: judged in the grader's client once the reference's
    # reports are in (judge below), so that the reference's run need not come first.
    result.reports = client.reports[0] if client.reports else {}
    for kind, detail in events + client.events:
        result.flag(kind, detail)
    result.review += client.review
    result.autograded = nbformat.writes(nb)
    return finish()


def judge(result: Result, course: Assignment, expected: dict[str, Report]) -> Result:
    """The verdicts of a result that ran, against the reference's reports for its seeds."""
    reports, result.reports = result.reports, None
    if reports is None:  # it never ran: its row already says why
        return result
    result.cells, result.failed, problems = verdicts(course, reports, expected)
    if problems:
        result.flag(Status.GRADING_ERROR, "the course's checks failed on the reference "
                                          "solution: " + "; ".join(problems)[:600])
    return result


def feedback_on_worker(page: Page) -> Result:
    """What a grading worker runs for a page: the result out with its page, and the status
    and detail the rendering added (a cut, a plain page), without the notebook and logs the
    client already has."""
    result = add_feedback(page.course, page.result)
    return replace(result, autograded=None, kernel_log="", job_log="")


def add_feedback(course: Assignment, result: Result) -> Result:
    """The student's page, rendered from the notebook as it ran and the verdicts (in a
    helper process of its own, with limits: grader/render.py)."""
    import nbformat

    if result.autograded is None:
        result.feedback = report.feedback_stub(result)
        return result
    nb = nbformat.reads(result.autograded, as_version=4)
    result.feedback = clean(report.feedback_html(nb, result, course))
    return result


def run_bounded(job: JobSpec) -> Result | ReferenceRun:
    """run() or run_reference() in a process of their own whose address space is capped at
    JOB_MEMORY: what a kernel sends is held by that process (zmq buffers a message whole,
    however many frames it has), so a flood costs that process, not the worker, and the row
    says so. (Only the soft limit: the sandbox's launcher sets the kernel's own.)"""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (JOB_MEMORY, resource.RLIM_INFINITY))

    seconds = job.limits.submission_timeout + 300  # start-up, replay and checks
    try:
        proc = subprocess.run([sys.executable, "-m", "grader.job"],
                              input=json.dumps(job.to_json()).encode(),
                              capture_output=True, preexec_fn=limit, timeout=seconds,
                              env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    except subprocess.TimeoutExpired:
        why = f"the grader's process for it ran longer than {seconds} s and was stopped"
    else:
        if proc.returncode == 0:
            try:
                data = json.loads(proc.stdout)
                return (ReferenceRun.from_json(data) if job.reference
                        else Result.from_json(data))
            except (ValueError, TypeError):
                pass
        code = proc.returncode
        how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
               else f"ended with status {code}")
        why = (f"the grader's process for it {how}, near its memory limit of "
               f"{JOB_MEMORY // 2**20} MB or past it: an output too large to hold? "
               f"({proc.stderr.decode(errors='replace').strip()[-200:]})")
    if job.reference:
        return ReferenceRun(problem=f"the reference solution could not be run: {why}")
    return zero_result(job.student, job.assignment, Status.GRADING_ERROR, why,
                       job.course.points)


def main() -> int:
    """`python -m grader.job`: a job as JSON on stdin, its result as JSON on stdout."""
    import sys

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may reach the result's channel
    job = JobSpec.from_json(json.loads(sys.stdin.buffer.read()))
    result = run_reference(job) if job.reference else run(job)
    # a result's strings cleaned here, where it leaves for the grader's client
    out.write(json.dumps(asdict(result) if isinstance(result, ReferenceRun)
                         else clean(result.to_json())).encode())
    out.flush()
    return 0


def run_reference(job: JobSpec) -> ReferenceRun:
    """The reference solution (the source notebook) run once, its checks once for each
    submission's seeds: reports by job key, {grade id: parsed report} each."""
    course = job.course
    logger, close_log = _job_logger()
    result = new_result(job.student, job.assignment, course.points)
    nb_source, problem = parse_notebook(base64.b64decode(job.notebook))
    if problem:
        return ReferenceRun(problem=f"the source notebook: {problem[1]}")
    nb, _ = restore.assemble(nb_source, course)
    plan, _ = plan_cells(nb, course, {})
    keys = [k for k, _ in job.seed_sets]
    client = _execute(job, nb, plan, [s for _, s in job.seed_sets], logger, result)
    log = close_log()
    if client is None or len(client.reports) != len(keys):
        why = "; ".join(result.detail + [e[1] for e in getattr(client, "events", [])])
        return ReferenceRun(problem=f"the reference solution could not be run: "
                                    f"{why or 'its kernel stopped'}"[:600],
                            kernel_log=result.kernel_log[-LOG_TAIL:], job_log=log)
    reports = {key: {gid: checks.parse_report(text) if text is not None else
                     Report({}, "did not run")
                     for gid, text in seeds.items()}
               for key, seeds in zip(keys, client.reports, strict=True)}
    return ReferenceRun(reports=reports)


def clean(value):
    """A result's strings made encodable (a lone surrogate from a kernel's output would
    stop the writing of every artifact)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    return value


_slots: dict = {}  # this worker process's uids, when it runs as root


def run_on_worker(job: JobSpec) -> Result | ReferenceRun:
    """What a grading worker runs for a job: a uid and a scratch folder of this worker's
    own, the job, then every process of that uid killed and the folder removed."""
    box, uid = job.sandbox, None
    if box.bwrap is not None and os.getuid() == 0:
        if "uids" not in _slots:
            try:
                from distributed import get_worker

                threads = get_worker().state.nthreads
            except (ImportError, ValueError):
                threads = 1
            _slots["uids"] = sandbox.UidSlots(box.uid_base, threads)
        uid = _slots["uids"].free.get()
    scratch = tempfile.mkdtemp(prefix="d2l-grading-")
    result = None
    try:
        result = run_bounded(replace(job, sandbox=replace(box, uid=uid, scratch=scratch)))
    except Exception as e:  # our own bug: still a result, still the next job
        if job.reference:
            result = ReferenceRun(problem=f"the reference solution could not be run: the "
                                          f"grading job failed: {type(e).__name__}: "
                                          f"{str(e)[:300]}")
        else:
            result = zero_result(job.student, job.assignment, Status.GRADING_ERROR,
                                 f"the grading job failed: {type(e).__name__}: {str(e)[:300]}",
                                 job.course.points)
    finally:
        if uid is not None:
            left = sandbox.sweep(uid)
            if left and isinstance(result, Result):  # never in silence
                result.review.append(f"processes of its grading uid outlived the job and "
                                     f"every kill (pids {left[:10]})")
            _slots["uids"].free.put(uid)
        shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
