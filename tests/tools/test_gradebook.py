"""grader/gradebook.py, grader/report.py's CSV and grader/export.py on results made here:
the gradebook, grades.csv and the LMS files, with no kernel and no grading run (the class
gradings show the same end to end: test_grading_course.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from grader import export, gradebook, late, report
from grader.course import course_model
from grader.model import Deadlines, Result, Status

ROOT = Path(__file__).resolve().parents[2]
NB = "lazy-init-pytorch"
DUE = datetime(2026, 12, 1, 17, tzinfo=UTC)
RULES = Deadlines(due={NB: DUE}, penalty="per_hour", points=1.0)


def graded(model, student: str, lose: tuple[str, ...] = (), handed_in: datetime | None = None,
           **more) -> Result:
    points = model[NB].points
    r = Result(student, NB, cells={g: 0.0 if g in lose else p for g, p in points.items()},
               **more)
    r.late = late.assess(RULES, NB, handed_in, r.score)
    return r


def rows_of(build: Path, model) -> dict[tuple[str, str], dict]:
    """The rows by (student, assignment), each as the CSV's columns."""
    return {(r.student, r.assignment): r.as_csv() for r in gradebook.rows(build, model)}


def test_rows_hold_the_scores_after_the_penalty_per_exercise_and_everyone_known(build):
    from nbgrader.api import Gradebook

    model = course_model(ROOT / "exercises", build)
    with Gradebook(f"sqlite:///{build / 'gradebook.db'}") as gb:
        gb.add_student("zed")  # enrolled, never handed anything in
    ada = graded(model, "ada")
    late_ada = graded(model, "ada-late", handed_in=datetime(2026, 12, 1, 19, 30, tzinfo=UTC))
    leo = graded(model, "leo", lose=("ex2-visible", "ex2-hidden"))
    leo.flag(Status.TESTS_RESTORED, "restored test cells: ex2-hidden (edited)")
    gradebook.record(build, [leo, late_ada, ada], model)
    rows = rows_of(build, model)
    assert set(rows) == {("ada", NB), ("ada-late", NB), ("leo", NB), ("zed", "")}
    assert [rows["ada", NB][k] for k in ("score", "max_score", "ex1", "ex2", "ex3", "status",
                                         "late")] == ["15", "15", "5", "5", "5", "ok", ""]
    assert (rows["ada-late", NB]["score"], rows["ada-late", NB]["late"]) == (
        "12", "2.5 h late, -3 points"), "a started hour costs a point, once"
    assert [rows["leo", NB][k] for k in ("score", "ex2", "status", "detail")] == [
        "11", "1", "tests restored", "restored test cells: ex2-hidden (edited)"]
    assert [rows["zed", ""][k] for k in ("score", "status")] == ["0", "no submission"]
    with Gradebook(f"sqlite:///{build / 'gradebook.db'}") as gb:  # nbgrader's own tools agree
        nb = gb.find_submission_notebook(NB, NB, "ada-late")
        assert (nb.score, nb.late_submission_penalty) == (15, 3)
    out = build / "grades.csv"
    report.write_csv(out, gradebook.rows(build, model), gradebook.exercises(model))
    header = out.read_text().splitlines()[0]
    assert header == "student,assignment,score,max_score,ex1,ex2,ex3,status,review,late,detail"


def test_recording_some_students_again_leaves_the_others_rows_as_they_were(build):
    model = course_model(ROOT / "exercises", build)
    gradebook.record(build, [graded(model, "ada"), graded(model, "ben", lose=("ex3-hidden",))],
                     model)
    before = rows_of(build, model)
    gradebook.record(build, [graded(model, "ben")], model)  # ben's resubmission, all right
    after = rows_of(build, model)
    assert after["ada", NB] == before["ada", NB]
    assert (before["ben", NB]["score"], after["ben", NB]["score"]) == ("13", "15")


ROSTER = """student,name,lms_id,section
ada,"Lovelace, Ada",S001,A
ghost,Nobody Home,S099,B
"""


@pytest.mark.parametrize("lms", ["canvas", "moodle"])
def test_the_export_writes_the_gradebooks_scores_as_the_lms_imports_them(build, tmp_path,
                                                                         lms, capsys):
    model = course_model(ROOT / "exercises", build)
    gradebook.record(build, [graded(model, "ada"), graded(model, "leo", lose=("ex1-hidden",))],
                     model)
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    assert export.export(ROOT / "exercises", build, lms, roster) == 0
    lines = list(csv.reader(io.StringIO((build / f"grades-{lms}.csv").read_text())))
    names = sorted(model)
    col = names.index(NB)
    if lms == "canvas":
        assert lines[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *names]
        assert lines[1] == ["    Points Possible", "", "", "", "", *(["15"] * len(names))]
        by_id = {line[2]: line[5:] for line in lines[2:]}
    else:
        assert lines[0] == ["ID number", "Email address", "Full name", "Section", *names]
        by_id = {line[0]: line[4:] for line in lines[1:]}
    assert by_id["S001"][col] == "15"
    assert by_id["S099"] == [""] * len(names), "no grade: left as the LMS has it"
    said = capsys.readouterr().out
    assert "never graded" in said and "ghost" in said
    assert "leo" in said.split("not on the roster")[1], "graded, not on the roster: named"
