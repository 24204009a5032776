"""grader/override.py without a kernel: what counts as "the answers changed", and how a
grading run keeps or drops an override. The whole round trip (the row, the page and the
export at once; a FORCE=1 regrade keeps it; a changed resubmission drops it) is in
test_grading_course.py."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader import override
from grader.model import Assignment, Manual, Result


def cell(kind, source, **nbgrader):
    c = (new_code_cell if kind == "code" else new_markdown_cell)(source)
    if nbgrader:
        c.metadata["nbgrader"] = nbgrader
    return c


RELEASED = {
    "ex1-solution": cell("code", "def f():\n    raise NotImplementedError",
                         grade_id="ex1-solution", solution=True),
    "ex1-hidden": cell("code", "assert f() == 1", grade_id="ex1-hidden", grade=True,
                       locked=True, points=2),
}
COURSE = Assignment(name="hw", notebook="hw", points={"ex1-hidden": 2.0}, cells=[],
                    released=RELEASED, tests=["ex1-hidden"], hidden=["ex1-hidden"], checks={},
                    kernelspec={"name": "py"}, source_file="")


def submission(answer="def f():\n    return 1", test="assert f() == 1", extra=()) -> dict:
    nb = new_notebook(cells=[cell("markdown", "# Exercise 1"),
                             cell("code", answer, grade_id="ex1-solution", solution=True),
                             cell("code", test, grade_id="ex1-hidden", grade=True, locked=True),
                             *extra])
    return nb


def digest(nb) -> str:
    return override.answers_digest(nbformat.writes(nb).encode(), COURSE)


def test_running_the_notebook_again_changes_no_answer():
    base = submission()
    ran = submission()
    ran.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    ran.cells[1].execution_count = 7
    ran.cells[1].metadata["collapsed"] = True
    ran.metadata["kernelspec"] = {"name": "other"}
    assert digest(ran) == digest(base)


def test_an_edited_test_cell_is_no_answer_the_grader_puts_it_back():
    assert digest(submission(test="assert True")) == digest(submission())


@pytest.mark.parametrize("changed", [
    submission(answer="def f():\n    return 2"),
    submission(extra=[cell("code", "f = lambda: 1")]),  # an answer in a cell of one's own
    submission(extra=[cell("markdown", "my reasoning")]),
])
def test_what_the_student_wrote_is_the_answer(changed):
    assert digest(changed) != digest(submission())


def test_a_file_that_is_no_notebook_is_its_bytes():
    assert override.answers_digest(b"{not json", COURSE) != \
        override.answers_digest(b"{not json!", COURSE)


def test_a_grading_run_keeps_an_override_for_the_same_answers_and_drops_it_for_others(tmp_path):
    override.save(tmp_path, {"ada/hw": {"ex1-hidden": {
        "points": 1.5, "note": "half right", "answers": "A", "set": "2026-12-03T10:00:00+00:00"}}})
    same = Result("ada", "hw", cells={"ex1-hidden": 0.0})
    override.apply(tmp_path, same, "A")
    assert same.manual == {"ex1-hidden": Manual(points=1.5, note="half right")}
    assert same.score == 1.5 and same.cells == {"ex1-hidden": 0.0}, "the auto score stays"
    assert "ada/hw" in override.load(tmp_path)

    changed = Result("ada", "hw", cells={"ex1-hidden": 0.0})
    override.apply(tmp_path, changed, "B")
    assert changed.manual == {} and changed.score == 0
    assert changed.detail == ["ex1-hidden: the instructor's 1.50 points (half right) were "
                              "dropped: the answers changed since they were given"]
    assert override.load(tmp_path) == {}, "dropped for good"
    assert json.loads((tmp_path / override.FILE).read_text()) == {}
