"""Benchmarks of what users wait for, each as a ratio against a baseline timed in the same run.

Usage (from the tools env): python ci/bench.py [--only NAME,...|all]
(`make bench`, `make bench BENCH=grading,cluster`, `make bench BENCH=all`)

By default the quick four, about 7 minutes on this project's 2-core machines: run-all,
overhead, shapes, book. The others only when named: each grades a whole class one to four
times, builds every env from scratch, starts 48 framework processes, or (similarity) pairs
a class's answers (all twelve: about 50 minutes). The minutes are estimates from the times
each part measures (its own figures in earlier runs, and the per-process times below); each
run writes what every part took ("bench_s" in build/bench.json, and the last line).

  default:
  run-all     (~2 min) `make run-all` (default JOBS) vs the same notebooks one by one with
              `jupyter nbconvert --execute`; floor: each framework's import + kernel start
  overhead    (~1.5 min) one submission graded on a warm worker (JOBS=1) vs the floor: the
              same notebook executed by nbclient in a fresh sandboxed kernel, nothing else
  shapes      (~1 min) sizing a 10.7e9-parameter model without memory vs eagerly creating
              one 100x smaller, per framework (ci/bench_shapes.py; 8 processes)
  book        (~2 min) `make book` with nothing changed vs a cold build (every notebook
              executed, the site rendered), in a temporary build folder; then after one
              markdown cell's edit: how many notebooks it executed (target 0) and its time

  on request:
  apply-init  (~5 min) d2l_shim's apply_init vs the book's plain dry run, dummy batches
              1/64/4096: 48 processes, 2-10 s each (framework import included)
  grading     (~9 min) `make grade` JOBS=2 vs JOBS=1, 8 students x 4 frameworks, grades
              compared, best of two (about 95 s and 155 s a run)
  sandbox     (~9 min) the sample class graded (JOBS=2) by today's grader vs the grader
              before the bubblewrap sandbox (commit SANDBOX_BASELINE, from a git worktree),
              best of two
  verdicts    (~9 min) the sample class graded by today's grader vs the one whose verdicts
              came from the student's kernel (VERDICTS_BASELINE), best of two
  cluster     (~4 min) the grading class on a Dask cluster on loopback (`dask scheduler`, two
              `dask worker`s) vs the default path (a local cluster, JOBS=2), best of two
  rerun       (~4 min) `make grade` again with nothing changed vs grading the class (8
              students x 4 frameworks); then with 1 of the 32 changed vs that one alone
              (STUDENTS=)
  setup       (~2 min) `make setup` from scratch (into a temporary D2L_VENVS), warm pip cache
  similarity  (~0.3 min) the similarity report's time per pair, a class of 60 (1,770 pairs) vs
              one of 15 (105 pairs): its cost should grow with the pairs, not faster

These machines are noisy, so every figure is a ratio to a baseline measured minutes apart
on the same machine, and nothing here is asserted in a test. Writes build/bench.json and a
plot, build/bench.png, and prints a table with each target.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
VENVS = ROOT / ".venvs"
TOOLS_PY = VENVS / "tools" / "bin" / "python"
GRADER = [str(TOOLS_PY), "-m", "grader"]
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
IMPORTS = {"pytorch": "import torch", "tensorflow": "import tensorflow, keras",
           "mxnet": "import mxnet", "jax": "import jax, flax.linen"}


def timed(cmd: list[str], cwd: Path = ROOT, **kwargs) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=cwd, **kwargs)
    return time.monotonic() - start


def quiet(cmd: list[str], **kwargs) -> float:
    return timed(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


def kernel_start_seconds(fw: str) -> float:
    """Start the d2l-<fw> kernel and wait until it answers, as a notebook run must."""
    from jupyter_client.manager import start_new_kernel

    start = time.monotonic()
    km, kc = start_new_kernel(kernel_name=f"d2l-{fw}", stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return seconds


def bench_run_all() -> dict:
    notebooks = sorted((ROOT / "notebooks").glob("lazy-init-*.ipynb"))
    with tempfile.TemporaryDirectory() as tmp:
        serial = sum(quiet([str(VENVS / "tools" / "bin" / "jupyter"), "nbconvert", "--to",
                            "notebook", "--execute", "--ExecutePreprocessor.timeout=600",
                            "--output-dir", tmp, str(nb)]) for nb in notebooks)
        run_all = quiet([str(TOOLS_PY), "ci/run_all.py", "--out", tmp, *map(str, notebooks)])
    floor = {}
    for fw in FRAMEWORKS:
        imp = quiet([str(VENVS / fw / "bin" / "python"), "-c", IMPORTS[fw]],
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        floor[fw] = {"import_s": round(imp, 2),
                     "kernel_start_s": round(kernel_start_seconds(fw), 2)}
    return {"serial_nbconvert_s": round(serial, 1), "run_all_s": round(run_all, 1),
            "jobs": os.cpu_count(), "ratio": round(run_all / serial, 2), "target": "<= 0.6",
            "met": run_all / serial <= 0.6, "floor_per_framework": floor,
            "floor_serial_s": round(sum(f["import_s"] + f["kernel_start_s"]
                                        for f in floor.values()), 1)}


def bench_apply_init() -> dict:
    rows = []
    for fw in FRAMEWORKS:
        for model in ("mlp", "lenet"):
            for batch in (1, 64, 4096):
                for variant in ("shim", "book"):
                    out = subprocess.run(
                        [str(VENVS / fw / "bin" / "python"), "ci/bench_apply_init.py", fw,
                         model, str(batch), variant], capture_output=True, text=True,
                        check=True, cwd=ROOT).stdout
                    rows.append({"framework": fw, "model": model, "batch": batch,
                                 "variant": variant, **json.loads(out.splitlines()[-1])})
    summary = []
    for fw in FRAMEWORKS:
        for model in ("mlp", "lenet"):
            r = {(x["variant"], x["batch"]): x for x in rows
                 if x["framework"] == fw and x["model"] == model}
            identical = all(r["shim", b]["shapes"] == r["book", b]["shapes"] and
                            abs(r["shim", b]["checksum"] - r["book", b]["checksum"])
                            <= 1e-6 * abs(r["book", b]["checksum"]) for b in (1, 64, 4096))
            ratio = r["shim", 4096]["seconds"] / r["shim", 1]["seconds"]
            summary.append({
                "framework": fw, "model": model,
                "shim_4096_over_1": round(ratio, 2),
                "book_4096_over_1": round(r["book", 4096]["seconds"] / r["book", 1]["seconds"], 2),
                "shim_peak_mb_4096_minus_1": round(r["shim", 4096]["peak_mb"]
                                                   - r["shim", 1]["peak_mb"], 1),
                "book_peak_mb_4096_minus_1": round(r["book", 4096]["peak_mb"]
                                                   - r["book", 1]["peak_mb"], 1),
                "identical_results": identical, "met": ratio <= 1.2 and identical})
    return {"target": "shim 4096/1 <= 1.2, identical shapes and initializer results",
            "summary": summary, "runs": rows}


def grading_class(folder: Path, build: Path, students: int) -> None:
    """`students` x 4 frameworks: even-numbered students hand in the solved source notebook,
    odd ones the blank student version, so the class has full and zero scores."""
    assignments = sorted(p.name for p in (ROOT / "exercises" / "source").iterdir())
    for i in range(students):
        for a in assignments:
            source = (ROOT / "exercises" / "source" / a / f"{a}.ipynb" if i % 2 == 0
                      else build / "release" / a / f"{a}.ipynb")
            target = folder / f"student{i:02d}" / a / f"{a}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)


def bench_overhead(repeats: int = 5) -> dict:
    """Per submission: a warm worker's whole job vs executing the notebook alone.

    The floor runs the notebook the job runs (the answered notebook with the course's cells
    restored) with nbclient in a fresh kernel in the same sandbox, and nothing else: no
    audit, no guard, no verdicts, no feedback page. Both alternate, `repeats` times each;
    the medians count.
    """
    import base64
    import statistics

    sys.path.insert(0, str(ROOT))
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    from grader import cluster, restore, sandbox
    from grader.config import grading_settings
    from grader.course import course_model, grading_secret, load_config, seed
    from grader.execute import kernel_manager
    from grader.grade import kernel_setup, sandbox_part
    from grader.model import JobSpec, SandboxPlan

    course = ROOT / "exercises"
    name = "lazy-init-pytorch"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quiet([*GRADER, "release", "--build", str(tmp)])
        settings = grading_settings(load_config(course, tmp))
        model = course_model(course, tmp)[name]
        data = (ROOT / "exercises" / "source" / name / f"{name}.ipynb").read_bytes()
        kernel = kernel_setup(model.kernel, unsandboxed=False)
        bwrap = sandbox.find_bwrap().path
        secret = grading_secret(tmp)
        box = SandboxPlan(bwrap=bwrap, root=os.getuid() == 0, description="")
        job = JobSpec("bench", name, base64.b64encode(data).decode(), model,  # as plan_jobs
                      settings.limits, settings.timeouts,
                      seeds={g: seed(secret, "bench", name, g, "bench") for g in model.tests},
                      sandbox=sandbox_part(box, settings, kernel))
        graded, _ = restore.assemble(nbformat.reads(data.decode(), as_version=4), model)
        uids = sandbox.UidSlots(settings.uid_base + 20_000, 1) if os.getuid() == 0 else None

        def floor() -> float:
            uid = uids.free.get() if uids else None
            scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-bench-"))
            try:
                scratch.chmod(0o711)
                (scratch / "ipc").mkdir(mode=0o700)
                (scratch / "stage").mkdir()
                spec = sandbox.launch_spec(bwrap, exposed=kernel.exposed,
                                           ipc_dir=str(scratch / "ipc"),
                                           stage_dir=str(scratch / "stage"), uid=uid,
                                           limits=settings.limits, env=kernel.env)
                (scratch / "launch.json").write_text(json.dumps(spec))
                argv = sandbox.kernel_argv(str(scratch / "launch.json"),
                                           kernel.kernel_argv, as_root=uid is not None)
                km = kernel_manager(argv, str(scratch / "ipc"))
                start = time.monotonic()
                client = NotebookClient(nbformat.from_dict(json.loads(json.dumps(graded))),
                                        km=km, timeout=30, allow_errors=True)
                try:
                    client.execute(cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                finally:
                    run_sync(km.shutdown_kernel)(now=True)  # an async manager
                return time.monotonic() - start
            finally:
                if uid is not None:
                    sandbox.sweep(uid)
                    uids.free.put(uid)
                shutil.rmtree(scratch, ignore_errors=True)

        pool = cluster.Pool(1)
        count = iter(range(10**6))
        try:
            def whole() -> float:
                start = time.monotonic()
                results = []
                pool.run(collections.deque([(f"bench-{next(count)}", "bench", job)]),
                         lambda k, r: results.append(r), window=1)
                assert not isinstance(results[0], Exception), results[0]
                return time.monotonic() - start

            whole()  # the worker's first job pays its imports
            runs = {"job": [], "floor": []}
            for _ in range(repeats):
                runs["floor"].append(floor())
                runs["job"].append(whole())
        finally:
            pool.close()
    ratio = statistics.median(runs["job"]) / statistics.median(runs["floor"])
    return {"notebook": name, "job_s": round(statistics.median(runs["job"]), 2),
            "floor_s": round(statistics.median(runs["floor"]), 2), "ratio": round(ratio, 2),
            "runs": runs, "target": "<= 1.3", "met": ratio <= 1.3}


def bench_cluster(students: int = 4, rounds: int = 2) -> dict:
    """The same class on a Dask cluster of our own on loopback vs the default path."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        release = tmp / "release-build"
        quiet([*GRADER, "release", "--build", str(release)])
        submitted = tmp / "submitted"
        grading_class(submitted, release, students)
        dask = VENVS / "tools" / "bin" / "dask"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port",
                                   "0", "--no-dashboard", "--scheduler-file",
                                   str(tmp / "scheduler.json")], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            for _ in range(600):
                if (tmp / "scheduler.json").exists():
                    break
                time.sleep(0.1)
            address = json.loads((tmp / "scheduler.json").read_text())["address"]
            procs += [subprocess.Popen([str(dask), "worker", address, "--nthreads", "1",
                                        "--no-dashboard", "--memory-limit", "0"], cwd=ROOT,
                                       env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for _ in range(2)]
            extras = {"default": ["--jobs", "2"], "cluster": ["--scheduler", address]}
            for name in extras:
                shutil.copytree(release, tmp / f"build-{name}")
            runs = best_of(rounds, {name: lambda name=name: quiet(
                [*GRADER, "grade", "--submissions", str(submitted), "--force",
                 "--build", str(tmp / f"build-{name}"), *extras[name]]) for name in extras})
            seconds = {name: min(times) for name, times in runs.items()}
            csvs = {name: (tmp / f"build-{name}" / "grades.csv").read_text() for name in extras}
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    ratio = seconds["cluster"] / seconds["default"]
    return {"submissions": students * 4, "default_s": round(seconds["default"], 1),
            "cluster_s": round(seconds["cluster"], 1), "ratio": round(ratio, 2),
            "identical_grades": csvs["default"] == csvs["cluster"],
            # The cluster's workers start before the clock; the default path starts its own.
            "target": "at most 10% slower than the default path", "met": ratio <= 1.10}


def best_of(rounds: int, runs: dict) -> dict[str, list[float]]:
    """Each command of `runs` (name -> callable returning seconds), alternating, `rounds`
    times: these machines are shared, and the best time of each is the one to compare."""
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name].append(run())
    return seconds


def bench_grading(students: int = 8, rounds: int = 2) -> dict:
    """`make grade` with JOBS=2 against JOBS=1 on a class of `students` x 4 frameworks.

    Even-numbered students hand in the solved source notebook, odd ones the blank student
    version, so the class has full and zero scores; each run has a build dir of its own.
    """
    assignments = sorted(p.name for p in (ROOT / "exercises" / "source").iterdir())
    grading = GRADER
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        builds = {jobs: tmp / f"build-jobs{jobs}" for jobs in (1, 2)}
        for build in builds.values():
            quiet([*grading, "release", "--build", str(build)])
        submitted = tmp / "submitted"
        grading_class(submitted, builds[1], students)
        runs = best_of(rounds, {jobs: lambda jobs=jobs, build=build: quiet(  # --force: all
            [*grading, "grade", "--submissions", str(submitted), "--jobs", str(jobs),
             "--build", str(build), "--force"]) for jobs, build in builds.items()})
        seconds = {jobs: min(times) for jobs, times in runs.items()}
        identical = ((builds[1] / "grades.csv").read_text()
                     == (builds[2] / "grades.csv").read_text())
    speedup = seconds[1] / seconds[2]
    return {"submissions": students * len(assignments), "jobs1_s": round(seconds[1], 1),
            "jobs2_s": round(seconds[2], 1), "speedup": round(speedup, 2),
            "identical_grades": identical, "target": ">= 1.8 with identical grades",
            "per_submission_jobs1_s": round(seconds[1] / (students * len(assignments)), 2),
            "met": speedup >= 1.8 and identical}


def bench_rerun(students: int = 8) -> dict:
    """What a rerun costs: `make grade` again with nothing changed, against grading the
    class (students x 4 frameworks); then with one submission changed, against grading that
    one alone with STUDENTS= (its student's other three unchanged)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build, submitted = tmp / "build", tmp / "submitted"
        quiet([*GRADER, "release", "--build", str(build)])
        grading_class(submitted, build, students)
        grade = [*GRADER, "grade", "--submissions", str(submitted), "--jobs", "2",
                 "--build", str(build)]
        changed = submitted / "student00" / "lazy-init-pytorch" / "lazy-init-pytorch.ipynb"

        def change(note: str) -> None:
            nb = json.loads(changed.read_text())
            nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": note})
            changed.write_text(json.dumps(nb))

        whole = quiet(grade)
        before = (build / "grades.csv").read_text()
        nothing = quiet(grade)
        unchanged = (build / "grades.csv").read_text() == before
        change("a resubmission")
        one_of_all = quiet(grade)
        change("and another")
        alone = quiet([*grade, "--students", "student00"])
    submissions = students * 4
    return {"submissions": submissions, "whole_s": round(whole, 1),
            "nothing_changed_s": round(nothing, 1), "one_changed_s": round(one_of_all, 1),
            "one_alone_s": round(alone, 1), "unchanged_grades": unchanged,
            "nothing_ratio": round(nothing / whole, 3),
            "one_ratio": round(one_of_all / alone, 2),
            "target": "nothing changed <= 0.05 of the whole; 1 of all <= 1.3 x it alone",
            "met": nothing / whole <= 0.05 and one_of_all / alone <= 1.3 and unchanged}


# The last commit whose grader had no bubblewrap sandbox (ci/grading.py, namespaces by hand).
SANDBOX_BASELINE = "8703d55"


def worktree(rev: str, where: Path) -> tuple[Path, dict | None]:
    """A git worktree of an earlier commit, to benchmark against in the same run; or the
    error a benchmark reports when there is none (a shallow clone)."""
    done = subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return where, {"error": f"git worktree add {rev} failed (a shallow clone? fetch the "
                                f"history): {done.stderr.strip()[-200:]}", "met": False}
    return where, None


def sample_class_runs(rev: str, tmp: Path, rounds: int, old_grader: list[str] = GRADER,
                      prepare=None) -> tuple[dict[str, list[float]], dict | None]:
    """The sample class graded by the grader of commit `rev` (a worktree, `prepare`d) and by
    this one, alternating, `rounds` times each, each run releasing into a build folder of its
    own (tmp/build-<before|after>-<round>): the seconds of each side's runs, or an error."""
    sample = ROOT / "tests" / "grading" / "sample_class"
    before, error = worktree(rev, tmp / "before")
    if error:
        return {}, error
    try:
        if prepare:
            prepare(before)
        commands = {"before": (old_grader, before), "after": (GRADER, ROOT)}
        seconds: dict[str, list[float]] = {k: [] for k in commands}
        for r in range(rounds):
            for name, (grader, cwd) in commands.items():
                build = tmp / f"build-{name}-{r}"
                quiet([*grader, "release", "--build", str(build)], cwd=cwd)
                seconds[name].append(quiet(
                    [*grader, "grade", "--submissions", str(sample), "--jobs", "2",
                     "--build", str(build)], cwd=cwd))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT,
                       capture_output=True)
    return seconds, None


def bench_sandbox(rounds: int = 2) -> dict:
    """What the sandbox costs: the sample class graded by this grader and by the one before.

    Both run on the same class and the same kernels, alternating, `rounds` times each; the
    best time of each counts. Scores and statuses must agree.
    """
    def todays_exercises(before: Path) -> None:
        # Both grade today's course: the baseline's own exercises have since changed.
        shutil.rmtree(before / "exercises")
        shutil.copytree(ROOT / "exercises", before / "exercises")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds, error = sample_class_runs(SANDBOX_BASELINE, tmp, rounds,
                                           [str(TOOLS_PY), "ci/grading.py"], todays_exercises)
        if error:
            return error
        grades = {}
        for name in seconds:
            with (tmp / f"build-{name}-0" / "grades.csv").open() as f:
                grades[name] = {r["student"]: (r["score"], r["status"])
                                for r in csv.DictReader(f)}
    ratio = min(seconds["after"]) / min(seconds["before"])
    return {"baseline": SANDBOX_BASELINE, "before_s": round(min(seconds["before"]), 1),
            "after_s": round(min(seconds["after"]), 1), "ratio": round(ratio, 2),
            "runs": seconds, "same_grades": grades["before"] == grades["after"],
            "differing": {s: {"before": grades["before"].get(s), "after": g}
                          for s, g in grades["after"].items() if grades["before"].get(s) != g},
            "target": "<= 1.10", "met": ratio <= 1.10}


# The last commit whose verdicts came from the student's kernel (before the checks ran
# outside it, judged against the reference solution's run).
VERDICTS_BASELINE = "0220edc"


def bench_verdicts(rounds: int = 2) -> dict:
    """What judging outside the kernel costs: the sample class graded by this grader and by
    the one before, each with its own course (today's checks cannot run on the old grader),
    alternating, best of `rounds`. This grader's time includes the reference solution's run."""
    with tempfile.TemporaryDirectory() as tmp:
        seconds, error = sample_class_runs(VERDICTS_BASELINE, Path(tmp), rounds)
        if error:
            return error
    ratio = min(seconds["after"]) / min(seconds["before"])
    return {"baseline": VERDICTS_BASELINE, "before_s": round(min(seconds["before"]), 1),
            "after_s": round(min(seconds["after"]), 1), "ratio": round(ratio, 2),
            "runs": seconds, "target": "<= 1.3", "met": ratio <= 1.3}


def bench_setup() -> dict:
    """`make setup` from scratch into a temporary folder; pip's cache is warm by now."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "D2L_VENVS": tmp}
        # The Makefile passes the interpreter `make setup` uses.
        python = os.environ.get("PYTHON") or shutil.which("python3.11") or "python3"
        seconds = quiet([python, "ci/setup_envs.py"], env=env)
    return {"from_scratch_warm_cache_s": round(seconds, 1), "target": "<= 120 s",
            "met": seconds <= 120}


def bench_shapes() -> dict:
    """ci/bench_shapes.py in each framework env, each mode in a fresh process."""
    rows = []
    for fw in FRAMEWORKS:
        run = {mode: json.loads(subprocess.run(
            [str(VENVS / fw / "bin" / "python"), "ci/bench_shapes.py", fw, mode],
            capture_output=True, text=True, check=True, cwd=ROOT).stdout.splitlines()[-1])
            for mode in ("abstract", "eager")}
        a, e = run["abstract"], run["eager"]
        rows.append({"framework": fw, "abstract": a, "eager_100x_smaller": e,
                     "time_ratio": round(a["seconds"] / e["seconds"], 3),
                     "met": a["seconds"] < 1 and a["peak_mb_added"] < e["peak_mb_added"]})
    return {"target": "sized in < 1 s, with less memory than creating a 100x smaller model",
            "frameworks": rows}


def bench_book(rounds: int = 2) -> dict:
    """ci/book.py cold, unchanged (best of `rounds`), then after a markdown-only edit."""
    import nbformat

    def build(tmp: Path) -> tuple[float, str]:
        start = time.monotonic()
        out = subprocess.run([str(TOOLS_PY), "ci/book.py", "--build", str(tmp / "build"),
                              "--notebooks", str(tmp / "notebooks")], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        return time.monotonic() - start, out.strip().splitlines()[-1]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(ROOT / "notebooks", tmp / "notebooks")
        cold, cold_line = build(tmp)
        unchanged = min(build(tmp)[0] for _ in range(rounds))
        edited = tmp / "notebooks" / "lazy-init-jax.ipynb"
        nb = nbformat.read(edited, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "markdown" and "Summary" in c.source)
        cell.source += "\n\nOne more sentence, added by the benchmark."
        nbformat.write(nb, edited)
        after_edit, edit_line = build(tmp)
    executed = int(edit_line.split("executed ", 1)[1].split(",")[0])
    ratio = unchanged / cold
    return {"cold_s": round(cold, 1), "unchanged_s": round(unchanged, 2),
            "ratio": round(ratio, 3), "target": "<= 0.05", "met": ratio <= 0.05,
            "markdown_edit_s": round(after_edit, 2), "markdown_edit_executed": executed,
            "markdown_edit_over_unchanged": round(after_edit / unchanged, 2),
            "markdown_edit_met": executed == 0, "cold_report": cold_line,
            "markdown_edit_report": edit_line}


def bench_similarity(small: int = 15, large: int = 60) -> dict:
    """grader/similarity.py pairing a class of `large` against one of `small`, per pair
    compared (tests/tools/test_similarity.py's class_of: every pair in full), best of two."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "tools")]
    import test_similarity  # the test's own class, so that the two measure the same thing

    from grader import similarity

    def per_pair(size: int, tmp: Path) -> float:
        subs = test_similarity.class_of(size, tmp / str(size))
        released = tmp / "release.ipynb"
        released.write_text(json.dumps(test_similarity.RELEASED_NB))
        best = float("inf")
        for _ in range(2):
            start = time.monotonic()
            similarity.find_pairs(subs, {test_similarity.A: released})
            best = min(best, time.monotonic() - start)
        return best / (size * (size - 1) // 2)

    with tempfile.TemporaryDirectory() as tmp:
        small_s, large_s = per_pair(small, Path(tmp)), per_pair(large, Path(tmp))
    ratio = large_s / small_s
    return {"small": small, "large": large, "small_ms_per_pair": round(small_s * 1000, 3),
            "large_ms_per_pair": round(large_s * 1000, 3), "ratio": round(ratio, 2),
            "large_s": round(large_s * large * (large - 1) / 2, 2), "target": "<= 1.5",
            "met": ratio <= 1.5}


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, targets = [], [], []
    if "run-all" in results:
        labels.append("run-all / serial")
        values.append(results["run-all"]["ratio"])
        targets.append(0.6)
    if "grading" in results:
        labels.append("grade JOBS=1 / JOBS=2")
        values.append(results["grading"]["speedup"])
        targets.append(1.8)
    for s in results.get("apply-init", {}).get("summary", []):
        labels.append(f"apply_init {s['framework']} {s['model']} 4096/1")
        values.append(s["shim_4096_over_1"])
        targets.append(1.2)
    if "sandbox" in results and "ratio" in results["sandbox"]:
        labels.append("grading with bwrap / before")
        values.append(results["sandbox"]["ratio"])
        targets.append(1.1)
    if "book" in results:
        labels.append("book unchanged / cold")
        values.append(results["book"]["ratio"])
        targets.append(0.05)
    if "setup" in results:
        labels.append("setup s / 120 s")
        values.append(results["setup"]["from_scratch_warm_cache_s"] / 120)
        targets.append(1.0)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.2))
    ax.barh(labels, values, color="tab:blue")
    ax.scatter(targets, labels, marker="|", s=400, color="tab:red", label="target")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (grading: speed-up, higher is better; others: lower is better)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(BUILD / "bench.png", dpi=120)


# Every part, and whether `make bench` runs it without being named (the docstring says why).
PARTS = {"run-all": bench_run_all, "overhead": bench_overhead, "shapes": bench_shapes,
         "book": bench_book, "apply-init": bench_apply_init, "grading": bench_grading,
         "sandbox": bench_sandbox, "verdicts": bench_verdicts, "cluster": bench_cluster,
         "rerun": bench_rerun, "setup": bench_setup, "similarity": bench_similarity}
DEFAULT = ("run-all", "overhead", "shapes", "book")


class UsageError(Exception):
    pass


def chosen_parts(only: str | None) -> list[str]:
    """The parts --only names (comma-separated; 'all': every one; none: DEFAULT), in that
    order. An unknown name is a UsageError that lists the names."""
    if not only:
        return list(DEFAULT)
    if only.strip() == "all":
        return list(PARTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in PARTS]
    if unknown or not names:
        raise UsageError(
            f"{'unknown benchmark ' + ', '.join(unknown) if unknown else 'no benchmark named'}"
            f". The names: {', '.join(DEFAULT)} (run by default); "
            f"{', '.join(n for n in PARTS if n not in DEFAULT)} (only when named); all "
            "(every one). E.g. make bench BENCH=grading,cluster")
    return list(dict.fromkeys(names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"NAME,... or all; default: {','.join(DEFAULT)}; "
                                       f"names: {','.join(PARTS)}")
    args = parser.parse_args()
    try:
        chosen = chosen_parts(args.only)
    except UsageError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    BUILD.mkdir(exist_ok=True)
    results = {}
    start = time.monotonic()
    for name in chosen:
        print(f"bench: {name} ...", flush=True)
        began = time.monotonic()
        results[name] = {**PARTS[name](), "bench_s": round(time.monotonic() - began, 1)}
        print(f"bench: {name} took {results[name]['bench_s']:.0f} s", flush=True)
    (BUILD / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results)
    print(f"\n{'benchmark':<34}{'result':>22}  {'target':<14}met")
    if "run-all" in results:
        r = results["run-all"]
        print(f"{'run-all vs serial nbconvert':<34}{r['ratio']:>21.2f}x  {r['target']:<14}"
              f"{r['met']}  ({r['run_all_s']} s vs {r['serial_nbconvert_s']} s; floor: "
              f"imports + kernel starts {r['floor_serial_s']} s)")
    if "verdicts" in results and "error" not in results["verdicts"]:
        r = results["verdicts"]
        print(f"{'checks outside vs in the kernel':<34}{r['ratio']:>21.2f}x  {r['target']:<14}"
              f"{r['met']}  (sample class, JOBS=2, reference run included: {r['after_s']} s "
              f"vs {r['before_s']} s at {r['baseline']})")
    if "grading" in results:
        r = results["grading"]
        print(f"{'grading JOBS=2 vs JOBS=1':<34}{r['speedup']:>21.2f}x  {'>= 1.8':<14}"
              f"{r['met']}  ({r['submissions']} submissions: {r['jobs1_s']} s vs "
              f"{r['jobs2_s']} s; identical grades: {r['identical_grades']})")
    if "rerun" in results:
        r = results["rerun"]
        print(f"{'rerun, nothing changed':<34}{r['nothing_ratio']:>21.3f}x  {'<= 0.05':<14}"
              f"{r['met']}  ({r['nothing_changed_s']} s vs grading all {r['submissions']}: "
              f"{r['whole_s']} s; grades unchanged: {r['unchanged_grades']})")
        print(f"{'rerun, 1 submission changed':<34}{r['one_ratio']:>21.2f}x  {'<= 1.3':<14}"
              f"{r['met']}  ({r['one_changed_s']} s vs that one alone with STUDENTS=: "
              f"{r['one_alone_s']} s)")
    if "overhead" in results:
        r = results["overhead"]
        print(f"{'a submission vs the floor':<34}{r['ratio']:>21.2f}x  {r['target']:<14}"
              f"{r['met']}  ({r['notebook']}, warm worker: {r['job_s']} s vs nbclient in a "
              f"fresh sandboxed kernel {r['floor_s']} s)")
    if "cluster" in results:
        r = results["cluster"]
        print(f"{'grading on a loopback cluster':<34}{r['ratio']:>21.2f}x  {'<= 1.10':<14}"
              f"{r['met']}  ({r['submissions']} submissions: {r['cluster_s']} s vs "
              f"{r['default_s']} s; identical grades: {r['identical_grades']})")
    if "sandbox" in results:
        r = results["sandbox"]
        if "error" in r:
            print(f"{'grading with vs without bwrap':<34}{'-':>22}  {'<= 1.10':<14}False  "
                  f"({r['error']})")
        else:
            print(f"{'grading with vs without bwrap':<34}{r['ratio']:>21.2f}x  {r['target']:<14}"
                  f"{r['met']}  (sample class, JOBS=2: {r['after_s']} s vs {r['before_s']} s "
                  f"at {r['baseline']}; same grades: {r['same_grades']})")
    for s in results.get("apply-init", {}).get("summary", []):
        print(f"{'apply_init ' + s['framework'] + ' ' + s['model'] + ' 4096/1':<34}"
              f"{s['shim_4096_over_1']:>21.2f}x  {'<= 1.2':<14}{s['met']}  (book: "
              f"{s['book_4096_over_1']}x; identical: {s['identical_results']})")
    if "book" in results:
        r = results["book"]
        print(f"{'book unchanged vs cold build':<34}{r['ratio']:>21.3f}x  {r['target']:<14}"
              f"{r['met']}  ({r['unchanged_s']} s vs {r['cold_s']} s)")
        print(f"{'book after a markdown edit':<34}{r['markdown_edit_executed']:>15} executed"
              f"  {'0 executed':<14}{r['markdown_edit_met']}  ({r['markdown_edit_s']} s, "
              f"{r['markdown_edit_over_unchanged']}x the unchanged rebuild)")
    if "similarity" in results:
        r = results["similarity"]
        print(f"{'similarity per pair, 60 vs 15':<34}{r['ratio']:>21.2f}x  {r['target']:<14}"
              f"{r['met']}  ({r['large_ms_per_pair']} ms vs {r['small_ms_per_pair']} ms a "
              f"pair; the class of {r['large']}: {r['large_s']} s)")
    if "setup" in results:
        r = results["setup"]
        print(f"{'setup from scratch, warm cache':<34}{r['from_scratch_warm_cache_s']:>20.1f} s"
              f"  {r['target']:<14}{r['met']}")
    for r in results.get("shapes", {}).get("frameworks", []):
        a, e = r["abstract"], r["eager_100x_smaller"]
        print(f"{'shapes ' + r['framework'] + ' 10.7e9 vs 1.07e8 eager':<34}"
              f"{r['time_ratio']:>21.3f}x  {'< 1 s':<14}{r['met']}  ({a['seconds']} s, "
              f"+{a['peak_mb_added']} MB vs {e['seconds']} s, +{e['peak_mb_added']} MB)")
    print(f"\nbench: {', '.join(chosen)} in {(time.monotonic() - start) / 60:.1f} min ("
          + ", ".join(f"{n} {results[n]['bench_s']:.0f} s" for n in chosen)
          + f"); wrote {BUILD / 'bench.json'} and {BUILD / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
