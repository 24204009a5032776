"""The grader's parts that need no kernel: the audit, the restore, ids, CSV and feedback pages.

Each rule is shown both ways: what it must catch, and everyday code it must leave alone
(the reference solutions of all four frameworks among it).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import html.parser
import io
import json

import nbformat
import pytest
from traitlets.config import Config

from grader import audit, collect, report, restore
from grader.config import grading_settings
from grader.course import seed
from grader.model import Assignment, GradeRow, JobSandbox, JobSpec, Result
from grader.paths import DEFAULT_COURSE

FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")


def source(fw: str):
    name = f"lazy-init-{fw}"
    return nbformat.read(DEFAULT_COURSE / "source" / name / f"{name}.ipynb", as_version=4)


def course_code(fw: str) -> list[str]:
    return [c.source for c in source(fw).cells if c.cell_type == "code"
            and not (c.metadata.get("nbgrader") or {}).get("solution")]


def findings(code: str, fw: str = "pytorch") -> list[str]:
    return audit.audit([("cell", code)], course_code(fw))


# ------------------------------------------------------------------------------- the audit

@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_the_reference_solutions_raise_no_finding(fw):
    cells = [(c.metadata.nbgrader["grade_id"], c.source) for c in source(fw).cells
             if (c.metadata.get("nbgrader") or {}).get("solution")]
    assert len(cells) >= 3
    assert audit.audit(cells, course_code(fw)) == []


@pytest.mark.parametrize("code, reason", [
    ("import ctypes", "imports ctypes"),
    ("from IPython import get_ipython", "imports IPython"),
    ("import subprocess as sp", "imports subprocess"),
    ("import importlib\nimportlib.import_module('os')", "imports importlib"),
    ("import socket", "opens network connections"),
    ("import sys\nsys.settrace(None)", "uses sys.settrace"),
    ("import sys\nsys.modules['torch'] = None", "uses sys.modules"),
    ("import os\nos.system('ls')", "uses os.system"),
    ("from os import fork", "imports os.fork"),
    ("exec('x = 1')", "uses exec()"),
    ("f = eval", "uses eval()"),
    ("x = getattr(torch, 'all' + 'close')", "getattr() with a computed attribute name"),
    ("g = globals()", "uses globals()"),
    ("x = ().__class__.__bases__[0].__subclasses__()", "reaches `__class__`"),
    ("def f():\n    return f.__globals__", "reaches `__globals__`"),
    ("import sys\nframe = sys._getframe().f_back", "reaches `f_back`"),
    ("x = getattr(torch, '__dict__')", "names '__dict__' in a string"),
    ("open('/proc/self/mem')", "names '/proc' in a string"),
    ("print(In[-1])", "uses `In`"),
    ("get_ipython().events.register('post_run_cell', print)", "uses `get_ipython`"),
    ("!ls /", "runs a shell command"),
    ("%load_ext autoreload", "uses the %load_ext magic"),
    ("%time torch.allclose = lambda *a: True", "rebinds torch.allclose"),
    ("torch.allclose = lambda *a, **k: True", "rebinds torch.allclose"),
    ("nn.Module.__call__ = print", "rebinds nn.Module.__call__"),
    ("T = torch\nT.rand = print", "rebinds T.rand"),
    ("setattr(torch, 'allclose', print)", "setattr() on torch"),
    ("torch = None", "rebinds `torch`"),
    ("import numpy as torch", "rebinds `torch`"),
    ("def f():\n    global nn\n    nn = None", "rebinds `nn`"),
    ("from torch import *", "can rebind names the tests use"),
])
def test_the_audit_flags(code, reason):
    found = findings(code)
    assert any(reason in f for f in found), found


@pytest.mark.parametrize("code", [
    "for _ in range(3):\n    pass",
    "import sys\nprint('note', file=sys.stderr)",
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.output = nn.LazyLinear(3)",
    "from IPython.display import display, HTML\ndisplay(HTML('<b>x</b>'))",
    "%time x = torch.rand(3)",
    "%matplotlib inline",
    "import torch\nfrom torch import nn\nimport random",
    "x = getattr(net, 'weight')",
    "def forward(self, X):\n    torch = X  # a local name\n    return torch",
    "import math, itertools, functools, collections, numpy",
    "X[:, 0] = 1.0",
    "import warnings\nwarnings.warn('x', DeprecationWarning)",
])
def test_the_audit_leaves_everyday_code_alone(code):
    assert findings(code) == []


def test_the_audit_does_not_stop_at_code_that_does_not_parse():
    assert findings("def broken(:\n") == []
    assert findings("x = 1\n") == []


def test_course_modules_and_names():
    assert {"torch", "torch.nn"} <= set(audit.modules_used(course_code("pytorch")))
    assert "jax.random" in audit.modules_used(course_code("jax"))
    assert audit.bound_names("import random\nrng = random.Random(1)\nn, h = 1, 2\n"
                             "def f(x):\n    y = x\n") == ["f", "h", "n", "random", "rng"]


# ------------------------------------------------------------------------------ the restore

@pytest.fixture(scope="module")
def course():
    nb = source("pytorch")
    released = copy.deepcopy(nb)
    for cell in released.cells:  # as students get them: the hidden tests cut out
        if "BEGIN HIDDEN TESTS" in cell.source:
            cell.source = "# hidden"
    tests = [restore.grade_id(c) for c in nb.cells
             if (c.metadata.get("nbgrader") or {}).get("grade")]
    return Assignment(
        name="lazy-init-pytorch", notebook="lazy-init-pytorch",
        points={gid: float(c.metadata.nbgrader.get("points", 0)) for gid, c in
                ((restore.grade_id(c), c) for c in nb.cells) if gid in tests},
        cells=nb.cells, released={restore.grade_id(c): c for c in released.cells
                                  if restore.grade_id(c)},
        tests=tests, hidden=["ex1-hidden", "ex2-hidden", "ex3-hidden"], checks={},
        kernelspec=dict(nb.metadata.kernelspec), source_file="")


def student_copy(course) -> nbformat.NotebookNode:
    cells = [copy.deepcopy(course.released.get(restore.grade_id(c), c))
             for c in course.cells]
    return nbformat.v4.new_notebook(cells=cells)


def by_id(nb) -> dict:
    return {restore.grade_id(c): c for c in nb.cells if restore.grade_id(c)}


def test_an_untouched_notebook_is_graded_as_the_course_wrote_it(course):
    nb, events = restore.assemble(student_copy(course), course)
    assert events == []
    # test cells as released (their checks run after the last cell), solutions as written
    assert [c.source for c in nb.cells] == [c.source for c in student_copy(course).cells]
    assert not any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells)


def test_test_cells_come_back_whole(course):
    student = student_copy(course)
    cells = by_id(student)
    cells["ex1-visible"].metadata["tags"] = ["raises-exception"]
    cells["ex1-hidden"].metadata["tags"] = ["skip-execution"]
    cells["ex2-visible"].cell_type = "markdown"
    cells["ex2-visible"].pop("outputs")
    cells["ex2-visible"].pop("execution_count")
    cells["ex3-visible"].source = "pass"
    student.cells.remove(cells["ex3-hidden"])
    student.cells.remove(cells["ex3-solution"])
    nb, events = restore.assemble(student, course)
    restored = by_id(nb)
    original = course.released
    for gid in ("ex1-visible", "ex1-hidden", "ex2-visible", "ex3-visible", "ex3-hidden"):
        assert restored[gid] == original[gid] | {"outputs": [], "execution_count": None}, gid
    assert events == [("tests restored", "restored test cells: ex1-visible (edited), "
                       "ex1-hidden (edited), ex2-visible (edited), ex3-visible (edited), "
                       "ex3-hidden (deleted)")]
    ids = [restore.grade_id(c) for c in nb.cells if restore.grade_id(c)]
    assert ids.index("ex3-hidden") == ids.index("ex3-visible") + 1, "put back in its place"


def test_unknown_and_duplicate_test_cells_are_dropped_and_said(course):
    student = student_copy(course)
    cells = by_id(student)
    fake = copy.deepcopy(cells["ex1-visible"])
    fake.source = "pass"
    bonus = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
        "grade": True, "grade_id": "ex9-bonus", "points": 100, "locked": True,
        "solution": False, "schema_version": 3}})
    student.cells[0:0] = [fake, bonus]
    own = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["raises-exception"]})
    student.cells.append(own)
    nb, events = restore.assemble(student, course)
    assert ("cells dropped", "dropped cells: ex9-bonus (not a cell of this assignment), "
            "ex1-visible (a second copy)") in events
    assert sum(restore.grade_id(c) == "ex1-visible" for c in nb.cells) == 1
    assert by_id(nb)["ex1-visible"].source == by_id(student_copy(course))["ex1-visible"].source
    assert nb.cells[-1].source == "x = 1" and nb.cells[-1].metadata == {}


def test_a_notebook_handed_in_as_released_is_not_attempted(course):
    stubs = copy.deepcopy(course.released)
    for cell in stubs.values():  # as nbgrader releases an answer cell
        if cell.metadata.nbgrader.get("solution"):
            cell.source = "# YOUR CODE HERE\nraise NotImplementedError()"
    released = dataclasses.replace(course, released=stubs)

    def attempted(change=None) -> bool:
        student = student_copy(released)
        if change:
            change(student)
        return restore.attempted(restore.assemble(student, released)[0], released)

    assert not attempted()
    assert not attempted(lambda nb: by_id(nb)["ex1-solution"].__setitem__(
        "source", "\n# YOUR CODE HERE   \n\nraise NotImplementedError()\n"))  # spaces only
    assert not attempted(lambda nb: nb.cells.extend([
        nbformat.v4.new_markdown_cell("my notes"), nbformat.v4.new_code_cell("  \n")]))
    assert attempted(lambda nb: by_id(nb)["ex2-prediction"].__setitem__("source", "(256, 20)"))
    assert attempted(lambda nb: nb.cells.append(nbformat.v4.new_code_cell("import torch")))
    assert restore.attempted(restore.assemble(student_copy(course), released)[0], released), \
        "the solved notebook"


# ------------------------------------------------------------------------ ids, CSV, pages

@pytest.mark.parametrize("raw, shown", [
    (b"ada", "ada"), (b"st\xffudent", "st\\xffudent"), (b"a\\xffb", "a\\\\xffb"),
    (b"x\x1b[2Jy", "x\\x1b[2Jy"), (b"=2+5", "=2+5"), ("émile".encode(), "émile"),
])
def test_folder_names_become_ids_that_print_safely(raw, shown):
    import os

    assert collect.safe_id(os.fsdecode(raw)) == shown


def test_csv_cells_are_never_formulas_nor_control_characters(tmp_path):
    rows = [GradeRow(s, "a", score="1", max_score="2", status="ok", detail=d)
            for s, d in (("=2+5", "x\x1b[31my"), ("+1", "a\nb"), ("-x", "\x07"), ("@SUM", ""),
                         ("ada", "fine"))]
    report.write_csv(tmp_path / "g.csv", rows, [])
    raw = (tmp_path / "g.csv").read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\x07" not in raw
    back = list(csv.DictReader(io.StringIO(raw)))
    assert [r["student"] for r in back] == ["'=2+5", "'+1", "'-x", "'@SUM", "ada"]
    assert back[0]["detail"] == "x\\x1b[31my" and back[1]["detail"] == "a b"


def test_hidden_tests_are_seeded_per_student_and_cell():
    key = bytes(32)
    assert seed(key, "ada", "a", "ex1-hidden") == seed(key, "ada", "a", "ex1-hidden")
    others = {seed(key, s, "a", c) for s in ("ada", "ben") for c in ("ex1-hidden", "ex2-hidden")}
    assert len(others) == 4
    assert seed(bytes([1] * 32), "ada", "a", "ex1-hidden") != seed(key, "ada", "a", "ex1-hidden")
    # a resubmission (another notebook digest) draws anew; the same file draws the same
    assert seed(key, "ada", "a", "ex1-hidden", "d1") == seed(key, "ada", "a", "ex1-hidden", "d1")
    assert seed(key, "ada", "a", "ex1-hidden", "d1") != seed(key, "ada", "a", "ex1-hidden", "d2")


class Live(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found, self.script = [], False

    def handle_starttag(self, tag, attrs):
        self.script = tag == "script"
        self.found += [f"{tag} {k}" for k, v in attrs
                       if k.startswith("on") or (v or "").lower().startswith("javascript:")]

    def handle_data(self, data):
        if self.script and "evil" in data:
            self.found.append(data[:60])


def test_feedback_pages_carry_no_live_script_and_no_hidden_test(course):
    nb, _ = restore.assemble(student_copy(course), course)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(
        "<script>evil()</script><img src=x onerror=evil()><a href='javascript:evil()'>x</a>"))
    hidden = next(c for c in nb.cells if restore.grade_id(c) == "ex1-hidden")
    hidden.outputs = [nbformat.v4.new_output("stream", name="stdout", text="secret printout"),
                      nbformat.v4.new_output("error", ename="AssertionError", evalue="",
                                             traceback=["assert created(net) == [True, True]"])]
    last = nb.cells[-1]
    source_hidden = next(c for c in course.cells if restore.grade_id(c) == "ex1-hidden")
    quoting = next(line.strip() for line in source_hidden.source.splitlines() if "mixed" in line)
    for cell in (last,):
        cell.cell_type = "code"
        cell.outputs = [
            nbformat.v4.new_output("display_data", data={
                "text/html": "<script>evil()</script><b onclick='evil()'>b</b>",
                "application/javascript": "evil()",
                "image/svg+xml": "<svg><script>evil()</script></svg>"}),
            nbformat.v4.new_output("stream", name="stdout", text=quoting + "\n")]
        cell.execution_count = None
    assert course.max_score == 15.0
    result = Result("ada", "lazy-init-pytorch", cells=dict.fromkeys(course.points, 0.0))
    page = report.feedback_html(nb, result, course)
    parser = Live()
    parser.feed(page)
    assert parser.found == [], parser.found
    assert "secret printout" not in page, "printed while a hidden test ran"
    assert "Hidden tests failed (0 of 2 points)" in page
    assert "Exercise 2, prediction check</a> (Score: 0.0 / 1.0)" in page
    assert quoting not in page and "quoted a hidden test" in page
    assert any("quoted a hidden test" in r for r in result.review)
    assert json.dumps(source_hidden.source[-80:])[1:-1] not in page


def test_progress_says_what_runs_and_how_long_is_left(monkeypatch, capsys):
    import time

    from grader import progress

    class Pool:
        def running(self):
            return {"k1": 42.0}

        def label(self, key):
            return "eve/lazy-init-pytorch"

        def workers(self):
            return 2

    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.2)
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.05)
    shown = progress.Progress(5)
    shown.watch(Pool())
    one_cell = Assignment(name="a", notebook="a", points={"x": 2.0}, cells=[], released={},
                          tests=["x"], hidden=[], checks={}, kernelspec={}, source_file="")
    shown.done(Result("ada", "a", cells={"x": 2.0}, seconds=60.0), one_cell)
    assert "(about 2 min left)" in capsys.readouterr().out  # 4 left x 60 s / 2 workers
    said, deadline = "", time.monotonic() + 30
    while "running:" not in said and time.monotonic() < deadline:  # after QUIET_SECONDS
        time.sleep(0.05)
        said += capsys.readouterr().out
    shown.stop()
    assert "grade: 1/5 done; running: eve/lazy-init-pytorch (42 s); about 2 min left" in said


def test_processes_that_outlive_the_sweep_reach_the_review_column(monkeypatch):
    """A process no kill could end (stuck in the kernel, say) is reported, never passed over."""
    import queue

    from grader import job, sandbox

    slots = type("Slots", (), {"free": queue.Queue()})()
    slots.free.put(4242)
    monkeypatch.setitem(job._slots, "uids", slots)
    monkeypatch.setattr(job.os, "getuid", lambda: 0)
    monkeypatch.setattr(sandbox, "sweep", lambda uid: [31337] if uid == 4242 else [])
    ran = []
    monkeypatch.setattr(job, "run_bounded", lambda j: ran.append(j) or job.new_result(
        j.student, j.assignment))
    course = Assignment(name="a", notebook="a", points={}, cells=[], released={}, tests=[],
                        hidden=[], checks={}, kernelspec={"name": "py"}, source_file="")
    limits = grading_settings(Config())
    one = JobSpec("ada", "a", "", course, limits.limits, limits.timeouts,
                  sandbox=JobSandbox(bwrap="/usr/bin/bwrap", uid_base=4242, kernel_argv=[],
                                     exposed=[], env={}))
    result = job.run_on_worker(one)
    assert ran[0].sandbox.uid == 4242 and ran[0].sandbox.scratch, "its slot and its folder"
    assert result.review == ["processes of its grading uid outlived the job and every "
                             "kill (pids [31337])"]
    assert slots.free.get_nowait() == 4242, "the uid goes back to the worker's slots"


def test_a_timestamp_is_read_as_an_untrusted_file(tmp_path):
    """A link to another date, a FIFO that would block a reader, a huge file: each is on time,
    with a word saying why, and none is followed or waited on."""
    import os

    from grader import late

    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("2020-01-01 00:00:00 UTC\n")
    kinds = {"link": lambda p: p.symlink_to(elsewhere), "fifo": lambda p: os.mkfifo(p),
             "huge": lambda p: p.write_text("2020-01-01 00:00:00 UTC" + " " * 4096)}
    for kind, make in kinds.items():
        (tmp_path / kind).mkdir()
        make(tmp_path / kind / "timestamp.txt")
        when, problem = late.read_timestamp(str(tmp_path / kind))
        assert when is None and "not a small regular file" in problem, kind
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "timestamp.txt").write_text("2020-01-01 00:00:00 UTC\n")
    assert late.read_timestamp(str(tmp_path / "plain"))[0].year == 2020
    assert late.read_timestamp(str(tmp_path)) == (None, None), "no timestamp: on time"
