"""grader/execute.py's client on a plain kernel: how a cell's end becomes an event.

The kernel is the tools env's own ipykernel, unsandboxed, with limits of a few seconds: the
framework and the sandbox are not the point here (the sample class's end-to-end run grades
the same endings, eve, mia, fay, gus and kim, in sandboxed framework kernels with the
course's limits). Each test runs a small notebook and reads the client's events, review
and outputs, as grader/job.py does.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader import checks
from grader.execute import GradingClient, kernel_manager
from grader.model import Status

GRADER = Path(__file__).resolve().parents[2] / "grader"
GUARD = (GRADER / "kernel_guard.py").read_text()
OBSERVE = (GRADER / "observe.py").read_text()
KERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


@pytest.fixture
def run():
    folders = []

    def execute(*sources: str, timeout: int = 2, max_output: int = 10_000,
                time_limit: int = 60, checks=(), seed_sets=(), modules=(), plan=None
                ) -> tuple[GradingClient, list]:
        # a short path of its own: a unix socket's path is at most 107 bytes
        ipc = Path(tempfile.mkdtemp(prefix="d2l-exec-"))
        folders.append(ipc)
        nb = new_notebook(cells=[new_code_cell(s) for s in sources])
        client = GradingClient(
            nb, kernel_manager(KERNEL, str(ipc)), plan=plan or {}, guard_source=GUARD,
            guard_config={"modules": list(modules)}, max_output_chars=max_output,
            max_notebook_chars=10 * max_output, deadline=time.monotonic() + time_limit,
            time_limit=time_limit, timeout=timeout, iopub_timeout=2, startup_timeout=60,
            setup_timeout=60, checks=checks, seed_sets=seed_sets, observe_source=OBSERVE)
        client.execute(cwd=str(ipc))
        return client, nb.cells

    yield execute
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def text(cell) -> str:
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)


def test_a_cell_past_its_time_is_interrupted_and_the_next_ones_still_run(run):
    client, cells = run("x = 41", "while True:\n    pass", "print(x + 1)")
    assert client.events == [(Status.TIMEOUT, "cell 1 ran longer than 2 s and was interrupted")]
    assert text(cells[2]).strip() == "42", "the kernel and what it held live on"
    assert client.review == []


def test_a_kernel_that_ignores_the_interrupt_is_stopped_and_later_cells_do_not_run(run):
    client, cells = run("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "while True:\n    pass", "print('after')")
    assert client.events == [(Status.TIMEOUT, "cell 0 ran longer than 2 s and ignored the "
                              "interrupt; the kernel was stopped and later cells did not run")]
    assert cells[1].outputs[0].ename == "NotRun" and "after" not in text(cells[1])


def test_a_kernel_that_dies_marks_the_later_cells_as_not_run(run):
    client, cells = run("x = 1", "import os\nos._exit(3)", "print('after')")
    assert client.events == [(Status.KERNEL_DIED, "the kernel died in cell 1 (exit status 3); "
                                                  "later cells did not run")]
    assert cells[1].outputs[-1].ename == "DeadKernelError"
    assert cells[2].outputs[0].ename == "NotRun"


def test_output_past_the_cap_is_cut_and_said(run):
    client, cells = run("print('x' * 5000)\nfor i in range(3000):\n    print(i)",
                        max_output=1000)
    assert client.events == [(Status.OUTPUT_TRUNCATED, "output of cell 0 cut to 1000 "
                                                       "characters")]
    shown = text(cells[0])
    assert len(shown) < 1200 and shown.endswith("[output cut by the grader at 1000 "
                                                "characters]\n")


def test_running_out_of_memory_is_named_as_such(run):
    client, _ = run("raise MemoryError()", "print('next')")
    assert client.events == [(Status.MEMORY_LIMIT, "cell 0 ran out of memory (MemoryError)")]


def test_a_submission_past_its_time_limit_is_stopped_wherever_it_is(run):
    client, cells = run("import time\ntime.sleep(30)", "print('after')", timeout=60,
                        time_limit=3)
    assert [kind for kind, _ in client.events] == [Status.SUBMISSION_TIMEOUT]
    assert "ran longer than 3 s: the kernel was stopped in cell 0" in client.events[0][1]
    assert cells[1].outputs[0].ename == "NotRun"


def test_the_checks_run_once_per_seed_set_after_the_cells_and_report_as_data(run):
    client, cells = run("x = 41", "print('visible')",
                        checks=[("t", "observe('x', x + 1)\nobserve('seed', rng.random() < 2)")],
                        seed_sets=[{"t": 1}, {"t": 2}])
    assert [checks.parse_report(r["t"]).observations["x"]["value"] for r in client.reports] \
        == [42, 42]
    assert text(cells[1]).strip() == "visible", "what the checks print reaches no cell"


def test_after_a_death_the_cells_before_it_are_replayed_for_the_checks(run):
    client, _ = run("x = 41", "import os\nos._exit(1)", "x = 0",
                    checks=[("t", "observe('x', x)")], seed_sets=[{"t": 1}])
    assert [kind for kind, _ in client.events] == [Status.KERNEL_DIED]
    report = checks.parse_report(client.reports[0]["t"])
    assert report.observations["x"]["value"] == 41 and report.error is None


def test_the_guard_reports_what_a_cell_changed_in_the_kernel_and_that_it_was_removed(run):
    """(kernel_guard.py; the hostile class shows each such trick in a sandboxed kernel.)"""
    client, _ = run("import math\nmath.isclose = lambda *a, **k: True",
                    "get_ipython().events.register('post_run_cell', lambda r: None)",
                    "x = 1", "import sys\ndel sys.modules['_d2l_grading_guard']",
                    "import math\nmath.sqrt = abs", modules=["math"])
    assert client.review[:2] == ["cell 0: module math: isclose replaced",
                                 "cell 1: IPython post_run_cell callbacks changed"]
    assert len(client.review) == 3 and client.review[2].startswith(
        "cell 3: the grader's checks stopped working in the kernel"), client.review
