"""The statuses a row can carry: one enum says them all, the instructor's guide says the same,
and no module of the grader spells one out by hand."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from collections import Counter

from grader import report
from grader.model import MEANINGS, Lateness, Result, Status, part_kind, part_name
from grader.paths import ROOT

# String constants that happen to read like a status but are none (file, text: count).
NOT_STATUSES = {("execute.py", "timeout"): 4,  # the state of a silent call into the kernel
                ("config.py", "timeout"): 2}  # nbgrader's Execute.timeout key


def guide_table() -> dict[str, str]:
    """status -> 'what happened', from exercises/README.md's table of statuses."""
    text = (ROOT / "exercises" / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \| [^|]+ \|$", text, re.M)
    return dict(rows)


def test_every_status_has_its_meaning_in_the_guide():
    table = guide_table()
    assert set(table) == {"ok", *Status}, set(table) ^ {"ok", *Status}
    for status in Status:
        assert table[status] == status.meaning, status
    assert set(MEANINGS) == set(Status)


def test_a_status_is_written_as_its_words():
    """grades.csv and JSON get the words, not the enum's name."""
    row = Result("ada", "a", status=[Status.GRADING_ERROR, Status.UNSANDBOXED])
    assert report.status_text(row) == "unsandboxed; grading error"
    assert json.loads(json.dumps(row.to_json(("status",)))) == {
        "status": ["grading error", "unsandboxed"]}
    out = io.StringIO()
    csv.writer(out).writerow([report.csv_cell(Status.KERNEL_DIED)])
    assert out.getvalue().strip() == "kernel died"


def test_no_module_spells_a_status_by_hand():
    words = {s.value for s in Status}
    found = Counter()
    for path in (ROOT / "grader").rglob("*.py"):
        if path.name == "model.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in words:
                found[(path.name, node.value)] += 1
    assert dict(found) == NOT_STATUSES


def test_a_result_survives_its_json_as_it_was():
    """The job's own process sends its Result as JSON; what arrives is the same Result."""
    sent = Result("ada", "a", cells={"ex1-hidden": 2.0}, failed={"ex1-hidden": ["why"]},
                  late=Lateness("2026-12-01T19:30:00+00:00", "2026-12-01T17:00:00+00:00",
                                9000.0, 3.0), seconds=1.5)
    sent.flag(Status.TESTS_RESTORED, "restored test cells: ex1")
    sent.flag(Status.TESTS_RESTORED, "restored test cells: ex2")  # one status, two details
    sent.flag(Status.UNSANDBOXED, "graded without the sandbox", first=True)
    back = Result.from_json(json.loads(json.dumps(sent.to_json())))
    assert back == sent
    assert back.status == [Status.UNSANDBOXED, Status.TESTS_RESTORED]
    assert back.detail[0] == "graded without the sandbox" and len(back.detail) == 3
    assert back.score == 2.0 and back.penalty == 3.0


def test_a_part_is_named_by_its_exercise_and_kind():
    assert part_name("ex2-hidden") == "Exercise 2, hidden tests"
    assert part_name("ex1-prediction-check") == "Exercise 1, prediction check"
    assert part_name("ex3-visible") == "Exercise 3, visible tests"
    assert part_name("ex12-extra-credit") == "Exercise 12, extra credit"
    assert part_name("setup") == "setup" and part_name("exam-hidden") == "exam-hidden"
    assert (part_kind("ex2-hidden"), part_kind("setup")) == ("hidden tests", None)
