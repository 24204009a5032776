"""Grading on a Dask cluster of its own: a scheduler and two worker processes on loopback,
started the way the instructor's guide says (`dask scheduler`, `dask worker ADDRESS`).

The same class is graded twice: by the default path (a local cluster, JOBS=2) and on this
cluster, where one worker is killed once grading is under way. Every submission must still
get its row, and grades.csv must be the same, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "grading" / "sample_class"
# Quick students of the sample class, of every framework; eve's cell waits out its timeout.
STUDENTS = ("ada", "ben", "cleo", "dev", "eve", "fay", "hal", "ivy", "jon", "leo")
DASK = Path(sys.executable).parent / "dask"


def framework(student: str) -> str:
    return next((SAMPLE / student).iterdir()).name.removeprefix("lazy-init-")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = []

    def start(*args: str, log: str) -> subprocess.Popen:
        proc = subprocess.Popen([str(DASK), *args], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL,
                                stderr=(folder / log).open("w"))
        started.append(proc)
        return proc

    start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
          "--scheduler-file", str(folder / "scheduler.json"), log="scheduler.log")
    for _ in range(600):
        if (folder / "scheduler.json").exists():
            break
        time.sleep(0.1)
    address = json.loads((folder / "scheduler.json").read_text())["address"]
    assert address.startswith("tcp://127.0.0.1:"), address
    workers = [start("worker", address, "--nthreads", "1", "--no-dashboard", "--host",
                     "127.0.0.1", "--memory-limit", "0", log=f"worker{i}.log")
               for i in range(2)]
    yield {"address": address, "workers": workers, "logs": folder}
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="module")
def submissions(frameworks, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("class")
    for student in STUDENTS:
        if framework(student) in frameworks:
            shutil.copytree(SAMPLE / student, folder / student)
    return folder


def grade(submissions: Path, build: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grader", "grade", "--submissions",
                             str(submissions), "--build", str(build), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_cluster_grades_as_the_default_path_though_a_worker_dies(scheduler, submissions,
                                                                  tmp_path):
    default = grade(submissions, tmp_path / "default", "--jobs", "2")
    out_default, _ = default.communicate(timeout=1200)
    assert default.returncode == 0, out_default[-3000:]
    assert "on a local Dask cluster of 2 worker(s)" in out_default

    run = grade(submissions, tmp_path / "cluster", "--scheduler", scheduler["address"])
    lines, killed = [], False
    for line in run.stdout:
        lines.append(line)
        if not killed and re.match(r"\[ *1/", line):  # grading is under way: a worker goes
            os.killpg(scheduler["workers"][0].pid, signal.SIGKILL)
            killed = True
    run.wait(timeout=1200)
    out = "".join(lines)
    assert run.returncode == 0, out[-3000:]
    assert killed and f"on the Dask cluster at {scheduler['address']}" in out
    default_csv = (tmp_path / "default" / "grades.csv").read_text()
    cluster_csv = (tmp_path / "cluster" / "grades.csv").read_text()
    graded = sorted(p.name for p in submissions.iterdir())
    assert sorted(line.split(",")[0] for line in cluster_csv.splitlines()[1:]) == graded
    assert cluster_csv == default_csv
