"""The verdicts: a test cell's observations compared, in the grader's process, with the
reference solution's.

Every test cell of the course has a check: the code of its hidden region, which observes
the student's work (grader/observe.py runs it in the kernel). The same check runs on the
reference solution, in a kernel of its own, with the same seed. A cell earns its points when
the student's check ran to its end and every observation the reference made was made too,
with a value the judge accepts:

  equal      the same plain data (numbers within 1e-6, relatively)
  close      numbers within the tolerance the check gave, relative and absolute
  contains   a string that contains the reference's, and is not much longer (a message
             holding every possible answer is not one)
  agree      a list of values that agree with each other, within a tolerance (what a
             visible test asks of the student's own network; the reference's values
             are not compared)

The student's kernel reports its observations as JSON, which it can forge; but a forged
value must still be the one the reference computed from inputs drawn from a secret seed,
so forging one means computing the answer. (An `agree` observation asks no more than the
visible test it stands for, which a student could pass in the same way.) Nothing the kernel
sends decides which judge applies: the reference's record does.
"""

from __future__ import annotations

import json
import math

from grader.model import Report

HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"
END_MARKER = "### END HIDDEN TESTS"
MAX_REPORT_CHARS = 4_000_000  # one check's observations, as JSON
MAX_SHOWN = 10  # failed observations named in the feedback, per cell


def split_regions(cell_source: str) -> tuple[list[str], list[str] | None]:
    """A test cell's lines outside its hidden region(s) (what students see and run) and
    inside them (None if it has none), the markers left out."""
    visible, hidden, inside = [], None, False
    for line in cell_source.splitlines():
        if line.strip().startswith(HIDDEN_MARKER):
            inside, hidden = True, hidden if hidden is not None else []
        elif line.strip().startswith(END_MARKER):
            inside = False
        else:
            (hidden if inside else visible).append(line)
    return visible, hidden


def check_source(cell_source: str) -> str | None:
    """The code of a test cell's hidden region(s), or None if it has none."""
    hidden = split_regions(cell_source)[1]
    return None if hidden is None else "\n".join(hidden) + "\n"


def parse_report(text) -> Report:
    """A check's report as sent by a kernel, JSON: {"observations": {key: record}, "error":
    str|None}. Anything malformed is a report with no observations."""
    bad = Report({}, "unreadable report")
    if type(text) is not str or len(text) > MAX_REPORT_CHARS:
        return bad
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return bad
    if type(data) is not dict or type(data.get("observations")) is not dict:
        return bad
    records = {k: r for k, r in data["observations"].items()
               if type(k) is str and type(r) is dict and "value" in r}
    error = data.get("error")
    return Report(records, error if type(error) is str else None)


def _numbers_close(a, b, rtol: float, atol: float) -> bool:
    if type(a) is bool or type(b) is bool:
        return a is b
    if type(a) in (int, float) and type(b) in (int, float):
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= atol + rtol * abs(b)
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(
            _numbers_close(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_numbers_close(a[k], b[k], rtol, atol) for k in a)
    return type(a) is type(b) and a == b  # str, None


def _plain(value) -> bool:
    """No {"not plain": ...} anywhere inside: the reference's must be fully plain."""
    if type(value) is dict:
        return "not plain" not in value and all(_plain(v) for v in value.values())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return True


def accepts(reference: dict, student: dict | None) -> bool:
    """Does the student's record pass the reference's judge?"""
    if type(student) is not dict or "value" not in student:
        return False
    want, got = reference["value"], student["value"]
    if not _plain(got):
        return False
    tol = reference.get("close")
    tol = float(tol) if type(tol) in (int, float) else None
    if reference.get("agree"):
        return (type(got) is list and len(got) >= 2 and all(
            _numbers_close(v, got[0], tol or 1e-6, tol or 0.0) for v in got[1:]))
    if reference.get("contains"):
        return (type(want) is str and type(got) is str and want in got
                and len(got) <= 4 * len(want) + 200)
    if tol is not None:
        return _numbers_close(got, want, tol, tol)
    return _numbers_close(got, want, 1e-6, 0.0)


def judge(reference: Report, student: Report) -> tuple[bool, list[str]]:
    """(passed, what failed, in the course's words) for one test cell."""
    failed = []
    for key, record in reference.observations.items():
        if key not in student.observations:
            if student.error is not None:
                failed.append(f"the checks stopped with an error before: {key}")
                break
            failed.append(f"not observed: {key}")
        elif not accepts(record, student.observations[key]):
            failed.append(key)
    if not failed and student.error is not None:
        failed.append("the checks stopped with an error")
    return not failed, failed[:MAX_SHOWN]


def reference_problem(report: Report) -> str | None:
    """Why a reference report cannot judge anything (a bug of the course), or None."""
    if report.error is not None:
        return f"the reference solution's check raised {report.error}"
    if not report.observations:
        return "the reference solution's check observed nothing"
    for key, record in report.observations.items():
        if not _plain(record["value"]):
            return f"the reference solution's observation {key!r} is not plain data"
    return None
