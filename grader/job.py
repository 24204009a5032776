"""One grading job: a submission's bytes and its assignment's cells in, a result out.

A pure function of its input (a JSON-able dict); the result holds the scores, statuses,
review findings and the artifacts as text: the autograded notebook and the feedback page.
It reads no gradebook and writes nothing but the sandbox's socket directory, so it runs on
any worker that has the same checkout and envs. A submission that runs past its time limit
has its kernel killed and its later cells marked as not run.

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
from pathlib import Path

from grader import audit, report, restore, sandbox
from grader.execute import GradingClient, kernel_manager

ROOT = Path(__file__).resolve().parent.parent
GUARD_SOURCE = (Path(__file__).parent / "kernel_guard.py").read_text()
LOG_TAIL = 20_000


def parse_notebook(data: bytes):
    """The notebook, or (status, detail) saying why it is not one."""
    import nbformat

    try:
        text = data.decode("utf-8")
        json.loads(text)
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError:
        return None, ("invalid notebook", "not UTF-8 text")
    except json.JSONDecodeError as e:
        return None, ("invalid notebook", f"not valid JSON ({e.msg}, line {e.lineno})")
    except RecursionError:
        return None, ("invalid notebook", "nested too deeply to be a notebook")
    except Exception as e:  # valid JSON but not a notebook nbformat accepts
        first = (str(e).splitlines() or [type(e).__name__])[0]
        return None, ("invalid notebook", f"not a Jupyter notebook ({first[:120]})")
    return nb, None


def plan_cells(nb, course: dict, seeds: dict) -> tuple[dict, list[tuple[str, str]]]:
    """What the grader does around each cell, and the student's code cells to audit."""
    known = {restore.grade_id(c) for c in course["cells"] if restore.grade_id(c)}
    locked = {restore.grade_id(c) for c in course["cells"]
              if (c.metadata.get("nbgrader") or {}).get("locked")}
    plan, student = {}, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = restore.grade_id(cell)
        if gid in locked:
            tree = audit.parse(cell.source)
            plan[i] = {"course": True, "binds": audit.bound_names(cell.source),
                       "imports": sorted(audit.imports(tree)) if tree else [],
                       "test": gid in course["tests"], "hidden": gid in course["hidden"],
                       "seed": seeds.get(gid, 0)}
            if plan[i]["hidden"]:
                plan[i]["imports"] = []
        else:
            student.append((gid if gid in known else f"cell {i}", cell.source))
    return plan, student


def verdicts(nb, client: GradingClient, course: dict) -> dict[str, float]:
    """Points per test cell: all of them when the kernel said the cell ran without error
    and no error was shown, none otherwise (nbgrader's partial credit from an
    execute_result is not used: code in the kernel could forge one)."""
    scores = dict.fromkeys(course["points"], 0.0)
    for i, cell in enumerate(nb.cells):
        gid = restore.grade_id(cell)
        if gid not in course["points"] or cell.cell_type != "code":
            continue
        failed = any(o.output_type == "error" for o in cell.get("outputs", []))
        if client.replies.get(i) == "ok" and not failed:
            scores[gid] = course["points"][gid]
    return scores


def _drain(fd: int, sink: bytearray) -> None:
    """Keep the last LOG_TAIL bytes of what the kernel writes to its stdout and stderr."""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            sink.extend(chunk)
            del sink[:-LOG_TAIL]


def zero_result(item: dict, status: str, detail: str, points: dict | None = None) -> dict:
    """The result of a submission that scores nothing: `status` and why."""
    return {"student": item["student"], "assignment": item["assignment"], "status": [status],
            "detail": [detail], "review": [], "cells": dict.fromkeys(points or {}, 0.0),
            "seconds": 0.0, "autograded": None, "feedback": None}


def run(job: dict) -> dict:
    start = time.monotonic()
    course, limits = job["course"], job["limits"]
    result = {"student": job["student"], "assignment": job["assignment"], "status": [],
              "detail": [], "review": [], "cells": dict.fromkeys(course["points"], 0.0),
              "autograded": None, "feedback": None, "kernel_log": ""}

    # nbclient's log for this job alone (build/grading/<student>/<assignment>/job.log)
    log_text = io.StringIO()
    logger = logging.getLogger(f"grader.job.{id(log_text)}")
    logger.propagate, logger.handlers = False, [logging.StreamHandler(log_text)]
    logger.setLevel(logging.INFO)

    def finish():
        result["job_log"] = log_text.getvalue()[-LOG_TAIL:]
        logger.handlers.clear()
        logging.Logger.manager.loggerDict.pop(logger.name, None)  # workers live long
        result["seconds"] = time.monotonic() - start
        if result["feedback"] is None:
            result["feedback"] = report.feedback_stub(result)
        return result

    import nbformat

    student_nb, problem = parse_notebook(base64.b64decode(job["notebook"]))
    if problem:
        result["status"].append(problem[0])
        result["detail"].append(problem[1])
        return finish()
    course["cells"] = [nbformat.from_dict(c) for c in course["cells"]]
    course["released"] = {k: nbformat.from_dict(c) for k, c in course["released"].items()}
    nb, events = restore.assemble(student_nb, course)
    plan, student_cells = plan_cells(nb, course, job["seeds"])
    result["review"] += audit.audit(student_cells, [c.source for c in course["cells"]
                                                    if c.cell_type == "code"])

    box = job["sandbox"]
    scratch = Path(box["scratch"])  # made, and removed, by the grader
    log = bytearray()
    try:
        scratch.chmod(0o711)  # the kernel's uid passes through to its socket directory
        ipc, stage = scratch / "ipc", scratch / "stage"
        ipc.mkdir(mode=0o700)
        stage.mkdir()
        spec = sandbox.launch_spec(
            box["bwrap"], exposed=box["exposed"], ipc_dir=str(ipc), stage_dir=str(stage),
            uid=box["uid"], limits=limits, env=box["env"])
        spec_file = scratch / "launch.json"
        spec_file.write_text(json.dumps(spec))
        spec_file.chmod(0o600)
        argv = sandbox.kernel_argv(str(spec_file), box["kernel_argv"],
                                   as_root=box["uid"] is not None)
        client = GradingClient(
            nb, kernel_manager(argv, str(ipc)), plan=plan, guard_source=GUARD_SOURCE,
            guard_config={"modules": audit.modules_used(
                [c.source for c in course["cells"] if c.cell_type == "code"])},
            max_output_chars=limits["max_output_chars"],
            max_notebook_chars=limits["max_notebook_output_chars"],
            deadline=start + limits["submission_timeout"],
            time_limit=limits["submission_timeout"],
            timeout=limits["cell_timeout"], iopub_timeout=8, startup_timeout=120, log=logger)
        r, w = os.pipe()
        drain = threading.Thread(target=_drain, args=(r, log), daemon=True)
        drain.start()
        try:
            client.execute(cwd=str(ROOT), stdout=w, stderr=w)
        finally:
            os.close(w)
            drain.join(timeout=5)
    except Exception as e:
        result["status"].append("grading error")
        result["detail"].append(f"the notebook could not be run: {type(e).__name__}: "
                                f"{str(e)[:300]}")
        result["kernel_log"] = log.decode(errors="replace")
        return finish()
    result["kernel_log"] = log.decode(errors="replace")
    result["cells"] = verdicts(nb, client, course)
    for kind, detail in events + client.events:
        if kind not in result["status"]:
            result["status"].append(kind)
        result["detail"].append(detail)
    result["review"] += client.review
    result["autograded"] = nbformat.writes(nb)
    result["feedback"] = report.feedback_html(nb, result, course,
                                              late_penalty=job.get("late_penalty", 0.0))
    return finish()


_slots: dict = {}  # this worker process's uids, when it runs as root


def run_on_worker(job: dict) -> dict:
    """What a grading worker runs for a job: a uid and a scratch folder of this worker's
    own, the job, then every process of that uid killed and the folder removed."""
    box, uid = job["sandbox"], None
    if box["bwrap"] is not None and os.getuid() == 0:
        if "uids" not in _slots:
            try:
                from distributed import get_worker

                threads = get_worker().state.nthreads
            except (ImportError, ValueError):
                threads = 1
            _slots["uids"] = sandbox.UidSlots(box["uid_base"], threads)
        uid = _slots["uids"].free.get()
    scratch = tempfile.mkdtemp(prefix="d2l-grading-")
    result = None
    try:
        result = run({**job, "sandbox": {**box, "uid": uid, "scratch": scratch}})
    except Exception as e:  # our own bug: still a result, still the next job
        result = zero_result(job, "grading error",
                             f"the grading job failed: {type(e).__name__}: {str(e)[:300]}",
                             job["course"]["points"])
    finally:
        if uid is not None:
            left = sandbox.sweep(uid)
            if left and result is not None:  # never in silence
                result["review"].append(f"processes of its grading uid outlived the job and "
                                        f"every kill (pids {left[:10]})")
            _slots["uids"].free.put(uid)
        shutil.rmtree(scratch, ignore_errors=True)
    return result


