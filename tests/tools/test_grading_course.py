"""Grading a course: per-exercise columns, regrading some students, deadlines, LMS exports.

A small PyTorch class is graded (JOBS=2) against a copy of the course whose config adds a
due date and a penalty of one point per started hour. Students: a correct one on time, the
same notebook 2.5 hours late, one with a timestamp that is not a date, a partial one, and
one who handed in the released notebook untouched; the gradebook also knows a student who
handed in nothing.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "grading" / "sample_class"
NB = "lazy-init-pytorch"
DUE = "2026-12-01 17:00:00 UTC"
RULES = f"""
c.GradingDeadlines.due = {{"{NB}": "{DUE}"}}
c.GradingDeadlines.penalty = "per_hour"
c.GradingDeadlines.points = 1
"""


def grader(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True,
                          text=True, timeout=1200, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def course(frameworks, tmp_path_factory) -> dict:
    if "pytorch" not in frameworks:
        pytest.skip("grades PyTorch notebooks; the env is not built")
    tmp = tmp_path_factory.mktemp("course")
    course = tmp / "course"
    shutil.copytree(ROOT / "exercises", course)
    with (course / "nbgrader_config.py").open("a") as f:
        f.write(RULES)
    build = tmp / "build"
    grader("release", "--course", str(course), "--build", str(build))
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{build / 'gradebook.db'}") as gb:
        gb.add_student("zed")  # enrolled, never handed anything in
    submitted = tmp / "submitted"
    for student, source, stamp in (("ada", "ada", None),
                                   ("ada-late", "ada", "2026-12-01 19:30:00 UTC"),
                                   ("ada-odd", "ada", "next tuesday, maybe"),
                                   ("leo", "leo", "2026-12-01 16:59:00 UTC")):
        shutil.copytree(SAMPLE / source, submitted / student)
        if stamp:
            (submitted / student / NB / "timestamp.txt").write_text(stamp + "\n")
    (submitted / "nia" / NB).mkdir(parents=True)  # as released, not a character changed
    shutil.copy(build / "release" / NB / f"{NB}.ipynb", submitted / "nia" / NB)
    graded = grader("grade", "--course", str(course), "--build", str(build), "--submissions",
                    str(submitted), "--jobs", "2")
    return {"course": course, "build": build, "submitted": submitted, "log": graded.stdout,
            "rows": {r["student"]: r for r in read(build / "grades.csv")}}


def test_the_csv_has_a_column_per_exercise_that_adds_up(course):
    header = (course["build"] / "grades.csv").read_text().splitlines()[0].split(",")
    assert header == ["student", "assignment", "score", "max_score", "ex1", "ex2", "ex3",
                      "status", "review", "late", "detail"]
    for student in ("ada", "ada-odd", "leo"):
        row = course["rows"][student]
        assert sum(float(row[e]) for e in ("ex1", "ex2", "ex3")) == float(row["score"]), row


def test_late_submissions_are_marked_and_penalized(course):
    rows = course["rows"]
    assert rows["ada"]["late"] == "" and rows["leo"]["late"] == ""
    late = rows["ada-late"]
    assert late["late"] == "2.5 h late, -3 points", late
    assert float(late["score"]) == float(rows["ada"]["score"]) - 3
    assert sum(float(late[e]) for e in ("ex1", "ex2", "ex3")) - 3 == float(late["score"])
    page = (course["build"] / "feedback" / "ada-late" / NB / f"{NB}.html").read_text()
    assert f"(Score: {float(late['score']):.1f} / 15.0)" in page, "the student sees it too"
    assert "Late submission penalty (Score: -3.0)" in page
    progress = [line for line in course["log"].splitlines() if "] ada-late " in line]
    assert len(progress) == 1 and f" {late['score']}/15 " in progress[0], progress
    odd = rows["ada-odd"]
    assert odd["late"] == "" and odd["score"] == rows["ada"]["score"]
    assert "timestamp.txt holds no date" in odd["detail"]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course['build'] / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(NB, NB, "ada-late")
        assert nb.late_submission_penalty == 3
        assert str(gb.find_assignment(NB).duedate) == "2026-12-01 17:00:00"


def test_every_student_of_the_gradebook_has_a_row(course):
    zed = course["rows"]["zed"]
    assert (zed["assignment"], zed["score"], zed["status"]) == ("", "0", "no submission")


def test_a_blank_hand_in_is_not_attempted_and_wrong_work_is_not(course):
    nia = course["rows"]["nia"]
    assert (nia["score"], nia["status"], nia["detail"]) == (
        "0", "not attempted", "no answer: every answer cell is as released"), nia
    assert "not attempted" not in course["rows"]["leo"]["status"], "partial work is work"
    page = (course["build"] / "feedback" / "nia" / NB / f"{NB}.html").read_text()
    assert "(Score: 0.0 / 15.0)" in page


def test_regrading_one_student_leaves_the_others_rows_as_they_were(course, tmp_path):
    before = (course["build"] / "grades.csv").read_text().splitlines()
    proc = grader("grade", "--course", str(course["course"]), "--build", str(course["build"]),
                  "--submissions", str(course["submitted"]), "--jobs", "1",
                  "--students", "leo")
    assert "grade: 1 submission(s)" in proc.stdout
    after = (course["build"] / "grades.csv").read_text().splitlines()
    assert [line for line in after if not line.startswith("leo,")] == \
        [line for line in before if not line.startswith("leo,")]
    assert sum(line.startswith("leo,") for line in after) == 1


def test_a_student_id_that_is_no_ones_stops_before_grading(course):
    """A typo in STUDENTS would grade nobody and exit 0; it is an error naming the ids."""
    before = (course["build"] / "grades.csv").read_text()
    proc = grader("grade", "--course", str(course["course"]), "--build", str(course["build"]),
                  "--submissions", str(course["submitted"]), "--students", "leo,lep",
                  check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "STUDENTS names lep" in proc.stderr and "ada, ada-late, ada-odd, leo, nia" in proc.stderr
    assert "running on" not in proc.stdout, "no worker started"
    assert (course["build"] / "grades.csv").read_text() == before


def roster(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return path


ROSTER = """student,name,lms_id,section
ada,"Lovelace, Ada",S001,A
ada-late,Ada Late,S002,A
ghost,Nobody Home,S099,B
"""


def test_canvas_export(course, tmp_path):
    proc = grader("export", "--course", str(course["course"]), "--build",
                  str(course["build"]), "--lms", "canvas", "--roster",
                  str(roster(tmp_path, ROSTER)))
    lines = list(csv.reader(io.StringIO(
        (course["build"] / "grades-canvas.csv").read_text(encoding="utf-8"))))
    assets = sorted(p.name for p in (course["course"] / "source").iterdir())
    assert lines[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *assets]
    assert lines[1] == ["    Points Possible", "", "", "", "", *(["15"] * len(assets))]
    col = 5 + assets.index(NB)
    by_sis = {line[2]: line for line in lines[2:]}
    assert by_sis["S001"][0] == "Lovelace, Ada" and by_sis["S001"][4] == "A"
    assert by_sis["S001"][col] == course["rows"]["ada"]["score"]
    assert by_sis["S002"][col] == course["rows"]["ada-late"]["score"]
    assert by_sis["S099"][5:] == [""] * len(assets), "no grade: left as the LMS has it"
    assert "never graded" in proc.stdout and "ghost" in proc.stdout
    for student in ("ada-odd", "leo", "zed"):
        assert student in proc.stdout.split("not on the roster")[1]


def test_moodle_export(course, tmp_path):
    grader("export", "--course", str(course["course"]), "--build", str(course["build"]),
           "--lms", "moodle", "--roster", str(roster(tmp_path, ROSTER)))
    lines = list(csv.reader(io.StringIO(
        (course["build"] / "grades-moodle.csv").read_text(encoding="utf-8"))))
    assets = sorted(p.name for p in (course["course"] / "source").iterdir())
    assert lines[0] == ["ID number", "Full name", "Section", *assets]
    by_id = {line[0]: line for line in lines[1:]}
    assert set(by_id) == {"S001", "S002", "S099"}
    assert by_id["S002"][3 + assets.index(NB)] == course["rows"]["ada-late"]["score"]


@pytest.mark.parametrize("text, message", [
    ("student,name\nada,Ada\n", "lacks the column(s) lms_id"),
    ("student,name,lms_id\nada,A,1\nada,B,2\n", "lists ada twice"),
])
def test_a_wrong_roster_gets_a_clear_error(course, tmp_path, text, message):
    proc = grader("export", "--course", str(course["course"]), "--build",
                  str(course["build"]), "--lms", "canvas", "--roster",
                  str(roster(tmp_path, text)), check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
