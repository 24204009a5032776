"""Grading on a Dask cluster of its own, started exactly as the instructor's guide says.

The guide's commands (exercises/README.md: `dask scheduler`, `dask worker ADDRESS ...`,
`make grade ... SCHEDULER=ADDRESS`) are read from the guide itself and run as written, from
the checkout's root and with no PYTHONPATH: the scheduler unpickles the task graph and the
workers run it, so both must import the grader by `make setup` alone. The only options added
keep the cluster on loopback (`--host 127.0.0.1`, a free port, no dashboard).

Part of the sample class is graded on this cluster of three workers, where one worker is
killed once grading is under way. Every submission must still get its row, with real
grades, and each row must be the one the default path (a local cluster, JOBS=2:
conftest.py's `sample_run`) wrote, byte for byte. Meanwhile the workers' memory is
measured: a normal job must stay far under the workers' limit.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from dask.utils import parse_bytes
from sample_grading import copy_class, csv_lines

from grader import cluster
from grader.errors import UsageError
from grader.model import Result, Status

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "exercises" / "README.md"
SAMPLE = ROOT / "tests" / "grading" / "sample_class"
# Quick students of the sample class, of every framework (eve's and mia's cells wait out
# their timeouts, gus's fills its memory: the default path shows those).
STUDENTS = ("ada", "ben", "cleo", "dev", "fay", "hal", "ivy", "jon", "leo")
PLACEHOLDER = "tcp://host:8786"  # the scheduler's address, as the guide writes it
LOOPBACK = ["--host", "127.0.0.1", "--no-dashboard"]  # the test's own additions


def framework(student: str) -> str:
    return next((SAMPLE / student).iterdir()).name.removeprefix("lazy-init-")


def guide_section() -> str:
    """The guide's part on Dask clusters: from "Several machines" to the next paragraph
    that is not a list item."""
    text = GUIDE.read_text()
    start = text.index("- **Several machines**")
    end = text.index("\nA worker that dies mid-job", start)
    return text[start:end]


def guide_commands() -> dict[str, list[str]]:
    """The shell commands of the guide's cluster recipe: scheduler, worker and grade."""
    [block] = re.findall(r"```sh\n(.*?)```", guide_section(), re.S)
    commands = {}
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if argv[:1] == ["make"]:
            commands["grade"] = argv
        elif argv:
            commands[argv[1] if argv[0].endswith("/dask") else argv[0]] = argv
    return commands


def clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH: the guide sets none."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_guide_starts_the_cluster_with_no_pythonpath_and_the_graders_memory_limit():
    commands = guide_commands()
    assert sorted(commands) == ["grade", "scheduler", "worker"], commands
    assert commands["scheduler"] == [".venvs/tools/bin/dask", "scheduler"]
    worker = commands["worker"]
    assert worker[:3] == [".venvs/tools/bin/dask", "worker", PLACEHOLDER], worker
    options = dict(zip(worker[3::2], worker[4::2], strict=True))
    assert options == {"--nthreads": "1", "--memory-limit": cluster.MEMORY_LIMIT}, worker
    assert commands["grade"][:2] == ["make", "grade"]
    assert f"SCHEDULER={PLACEHOLDER}" in commands["grade"]
    # dask-jobqueue's workers too: the tools env's Python finds the grader by itself
    section = guide_section()
    assert "PYTHONPATH=" not in section
    assert f'memory="{cluster.MEMORY_LIMIT}"' in section


@contextlib.contextmanager
def guide_cluster(folder: Path, workers: int, pythonpath: dict[str, Path] | None = None):
    """The guide's scheduler and `workers` of its workers, from the checkout's root; each
    role with PYTHONPATH set only where `pythonpath` says (to break them on purpose)."""
    commands = guide_commands()
    started = []

    def start(role: str, argv: list[str], log: str) -> subprocess.Popen:
        env = clean_env()
        if role in (pythonpath or {}):
            env["PYTHONPATH"] = str(pythonpath[role])
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=(folder / log).open("w"))
        started.append(proc)
        return proc

    try:
        start("scheduler", [*commands["scheduler"], *LOOPBACK, "--port", "0",
                            "--scheduler-file", str(folder / "scheduler.json")],
              log="scheduler.log")
        for _ in range(600):
            if (folder / "scheduler.json").exists():
                break
            time.sleep(0.1)
        address = json.loads((folder / "scheduler.json").read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        worker = [address if arg == PLACEHOLDER else arg for arg in commands["worker"]]
        yield {"address": address, "logs": folder,
               "workers": [start("worker", [*worker, *LOOPBACK], log=f"worker{i}.log")
                           for i in range(workers)]}
    finally:
        for proc in started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    # Three of the guide's workers: one is killed once grading is under way, and the two
    # left grade the rest side by side, as a two-worker cluster would (with two, the one
    # left graded the rest alone: twice as long, for the same check).
    with guide_cluster(tmp_path_factory.mktemp("dask"), workers=3) as started:
        yield started


@pytest.fixture(scope="module")
def submissions(frameworks, tmp_path_factory) -> Path:
    return copy_class([s for s in STUDENTS if framework(s) in frameworks],
                      tmp_path_factory.mktemp("class"))


def guide_grade_command(submissions: Path, address: str, build: Path) -> list[str]:
    """What the guide's `make grade ... SCHEDULER=...` runs (make -n says), into `build`."""
    argv = [address if arg == f"SCHEDULER={PLACEHOLDER}" else arg
            for arg in guide_commands()["grade"]]
    argv = [f"SCHEDULER={address}" if arg == address else
            f"SUBMISSIONS={submissions}" if arg.startswith("SUBMISSIONS=") else arg
            for arg in argv]
    out = subprocess.run([*argv[:1], "-n", *argv[1:]], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    [line] = [ln for ln in out.replace("\\\n", " ").splitlines() if " -m grader grade " in ln]
    command = shlex.split(line)
    assert command[command.index("--scheduler") + 1] == address, command
    return [*command, "--build", str(build)]


class WorkerMemory:
    """The largest resident size seen of the worker processes under the given nannies."""

    def __init__(self, nannies: list[int]):
        self.nannies, self.peak, self.samples = nannies, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.stop.wait(0.2):
            for pid in self.nannies:
                try:
                    workers = psutil.Process(pid).children()  # the worker; its kernels below
                    rss = max((w.memory_info().rss for w in workers), default=0)
                except psutil.Error:
                    continue
                self.peak = max(self.peak, rss)
                self.samples += 1

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def test_a_cluster_grades_as_the_default_path_though_a_worker_dies(scheduler, submissions,
                                                                  sample_run, released_copy):
    assert "on a local Dask cluster of 2 worker(s)" in sample_run["out"]

    build = released_copy("cluster")
    command = guide_grade_command(submissions, scheduler["address"], build)
    memory = WorkerMemory([w.pid for w in scheduler["workers"]])
    run = subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines, killed = [], False
    for line in run.stdout:
        lines.append(line)
        if not killed and re.match(r"\[ *1/", line):  # grading is under way: a worker goes
            os.killpg(scheduler["workers"][0].pid, signal.SIGKILL)
            killed = True
    run.wait(timeout=1200)
    peak = memory.close()
    out = "".join(lines)
    assert run.returncode == 0, out[-3000:]
    assert killed and f"on the Dask cluster at {scheduler['address']}" in out
    cluster_csv = (build / "grades.csv").read_text()
    graded = sorted(p.name for p in submissions.iterdir())
    rows = list(csv.DictReader(cluster_csv.splitlines()))
    assert sorted(row["student"] for row in rows) == graded
    assert csv_lines(build / "grades.csv", graded) == \
        csv_lines(sample_run["build"] / "grades.csv", graded)
    # real grades, not a class of grading errors (a scheduler that cannot import the grader
    # fails every job alike)
    assert not [row for row in rows if "grading error" in row["status"]], cluster_csv
    if "ada" in graded:  # her notebook is complete and right
        assert [(r["score"], r["status"]) for r in rows if r["student"] == "ada"] == [
            ("15", "ok")], cluster_csv
    # a worker grading a submission stays far under the memory limit its nanny enforces
    assert memory.samples > 0
    assert peak < parse_bytes(cluster.MEMORY_LIMIT) / 4, f"a worker reached {peak} bytes"
    print(f"largest worker RSS while grading: {peak / 2**20:.0f} MiB "
          f"(limit {cluster.MEMORY_LIMIT})")


def test_a_job_past_the_memory_limit_restarts_its_worker_and_ends_as_a_killed_worker(
        monkeypatch):
    from distributed import KilledWorker

    limit = "400MiB"  # smaller than MEMORY_LIMIT, the same mechanism: the nanny's terminate
    monkeypatch.setattr(cluster, "MEMORY_LIMIT", limit)

    def flood() -> int:  # pickled by value: a worker need not import this test
        import time

        held = []
        for _ in range(40):  # 2 GB at most, 50 MB at a time, each byte written
            held.append(b"\1" * (50 * 2**20))
            time.sleep(0.05)
        return len(held)

    pool = cluster.Pool(1)
    try:
        [info] = pool.client.scheduler_info()["workers"].values()
        assert info["memory_limit"] == parse_bytes(limit)
        future = pool.client.submit(flood, pure=False)
        with pytest.raises(KilledWorker):
            future.result(timeout=300)
        for _ in range(50):  # the nanny's events reach the scheduler in a batch
            restarts = pool.client.get_events("worker-restart-memory")
            if len(restarts) >= 3:
                break
            time.sleep(0.1)
        # tried 1 + allowed-failures times, each ended by the nanny past 95% of the limit
        assert len(restarts) == 3, restarts
        assert all(event["rss"] > 0.95 * parse_bytes(limit) for _, event in restarts), restarts
        # and the worker is back for the next job
        assert pool.client.submit(sum, [1, 2], pure=False).result(timeout=120) == 3
    finally:
        pool.close()


def test_a_cluster_that_cannot_import_this_grader_stops_the_run_in_one_sentence(tmp_path):
    """A machine whose tools env lacks the checkout (no `make setup` there) would fail every
    job alike, or run another checkout's grader: the grader asks before the first job."""
    for case, job_py in (("elsewhere", ""), ("broken", "raise ImportError('half a grader')")):
        (tmp_path / case / "grader").mkdir(parents=True)
        (tmp_path / case / "grader" / "__init__.py").write_text("")
        (tmp_path / case / "grader" / "job.py").write_text(job_py)
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()

    with guide_cluster(tmp_path / "1", 1, {"scheduler": tmp_path / "broken"}) as started:
        with pytest.raises(UsageError) as e:
            cluster.Pool(1, started["address"])
    assert str(e.value) == (
        f"grade: the scheduler at {started['address']} cannot import the grader (ImportError: "
        "half a grader): run `make setup` in that machine's checkout (it puts the checkout on "
        "the tools env's path) and restart it as exercises/README.md shows.")

    with guide_cluster(tmp_path / "2", 1, {"worker": tmp_path / "elsewhere"}) as started:
        with pytest.raises(UsageError) as e:
            cluster.Pool(1, started["address"])
    message = str(e.value)
    assert re.fullmatch(r"grade: the worker at tcp://127\.0\.0\.1:\d+ imports the grader from "
                        + re.escape(f"{tmp_path / 'elsewhere'}, but this checkout is {ROOT}: ")
                        + "every machine of the cluster needs the same checkout at the same "
                        "path.", message), message


# ------------------------------------------------------------------------------------------
# all_failed_message: grade.py exits non-zero with it when no job could grade anything


def result(status: list[str], detail: list[str]) -> Result:
    return Result("s", "a", status=[Status(s) for s in status if s != "ok"], detail=detail)


def test_every_job_failed_is_one_line_with_the_most_common_reason():
    why = ("the notebook could not be run: RuntimeError: Error during deserialization of\n"
           "the task graph")
    results = [result(["grading error"], [why]) for _ in range(9)]
    results.append(result(["unsandboxed", "grading error"],
                          ["graded without the sandbox, as asked", "KilledWorker"]))
    message = cluster.all_failed_message(results)
    assert message == ("grade: every one of the 10 jobs failed (grading error): the notebook "
                       "could not be run: RuntimeError: Error during deserialization of the "
                       "task graph (9 of them; 1 other reason(s))")
    same = [result(["grading error"], ["the worker grading it died, each time it was tried"])] * 3
    assert cluster.all_failed_message(same) == (
        "grade: every one of the 3 jobs failed (grading error): the worker grading it died, "
        "each time it was tried")
    assert cluster.all_failed_message(same[:1]).startswith(
        "grade: the one job failed (grading error): the worker")


def test_a_run_with_one_real_grade_or_none_at_all_is_no_failure():
    failed = result(["grading error"], ["boom"])
    assert cluster.all_failed_message([]) is None
    assert cluster.all_failed_message([failed, result(["ok"], [])]) is None
    assert cluster.all_failed_message([failed, result(["timeout"], ["ex2 ran long"])]) is None
    # zero for another reason (not a notebook, missing) is a grade, not a grading error
    assert cluster.all_failed_message([result(["invalid notebook"], ["not valid JSON"])]) is None


def test_the_reason_given_is_one_printable_line():
    hostile = "\x1b[2J\x1b]0;pwned\x07" + "x" * 1000 + "\r\nsecond line"
    message = cluster.all_failed_message([result(["grading error"], [hostile])])
    assert "\n" not in message and "\x1b" not in message and "\r" not in message
    assert message.isprintable() and len(message) < 400
    assert cluster.all_failed_message([result(["grading error"], [])]).endswith(
        "no detail given")
