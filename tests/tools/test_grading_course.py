"""Grading a course: per-exercise columns, regrading some students, deadlines, LMS exports,
reruns that grade only what changed, and runs killed part-way.

A small PyTorch class is graded (JOBS=2) against a copy of the course whose config adds a
due date and a penalty of one point per started hour. Students: a correct one on time, the
same notebook 2.5 hours late, one with a timestamp that is not a date, a partial one, and
one who handed in the released notebook untouched; the gradebook also knows a student who
handed in nothing.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from grader import similarity

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "grading" / "sample_class"
GUIDE = ROOT / "exercises" / "README.md"
sys.path.insert(0, str(ROOT / "tests" / "grading"))
from lms_files import CANVAS_ROSTER, MOODLE_ROSTER, MOODLE_WORKSHEET, make_zip  # noqa: E402

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
    pristine = tmp / "build-as-released"  # for the kill tests: the same course, not graded
    shutil.copytree(build, pristine)
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
            "rows": {r["student"]: r for r in read(build / "grades.csv")},
            "pristine": pristine, "csv": (build / "grades.csv").read_text(),
            "pages": pages(build)}


def pages(build: Path) -> dict[str, str]:
    return {str(p.relative_to(build)): p.read_text() for p in (build / "feedback").rglob("*.html")}


def graded_now(stdout: str) -> list[str]:
    """The students of a run's progress lines: those it graded."""
    return sorted(line.split()[1] for line in stdout.splitlines() if line.startswith("["))


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


def test_copies_pair_up_in_the_review_column_and_a_blank_hand_in_pairs_with_no_one(course):
    """ada, ada-late and ada-odd handed in the same notebook; nia the released one."""
    assert "similar answers compared" in course["log"]
    rows = course["rows"]
    for student, others in (("ada", "ada-late (100%), ada-odd (100%)"),
                            ("ada-late", "ada (100%), ada-odd (100%)")):
        assert f"{similarity.REVIEW_PREFIX} {others}" in rows[student]["review"], rows[student]
    assert similarity.REVIEW_PREFIX not in rows["nia"]["review"]
    page = (course["build"] / "similarity.html").read_text()
    assert "ada-odd" in page and "nia" not in page


def test_regrading_one_student_leaves_the_others_rows_as_they_were(course, tmp_path):
    before = (course["build"] / "grades.csv").read_text().splitlines()
    proc = grader("grade", "--course", str(course["course"]), "--build", str(course["build"]),
                  "--submissions", str(course["submitted"]), "--jobs", "1",
                  "--students", "leo", "--force")
    assert "grade: 1 submission(s)" in proc.stdout and graded_now(proc.stdout) == ["leo"]
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


def grade_again(course, build: Path | None = None) -> subprocess.CompletedProcess:
    return grader("grade", "--course", str(course["course"]), "--build",
                  str(build or course["build"]), "--submissions", str(course["submitted"]),
                  "--jobs", "2")


def test_a_rerun_with_nothing_changed_grades_nothing_and_starts_no_worker(course):
    build = course["build"]
    before = ((build / "grades.csv").read_text(), pages(build))
    proc = grade_again(course)
    assert graded_now(proc.stdout) == [], proc.stdout
    assert "grade: 5 submission(s) unchanged since they were graded" in proc.stdout
    assert "running on" not in proc.stdout and "sandbox:" not in proc.stdout, "no cluster"
    assert "similar answers compared" not in proc.stdout, "nothing new to compare"
    assert ((build / "grades.csv").read_text(), pages(build)) == before


def test_only_a_changed_notebook_or_hand_in_time_is_graded_again(course):
    build, submitted = course["build"], course["submitted"]
    notebook = submitted / "leo" / NB / f"{NB}.ipynb"
    stamp = submitted / "ada-late" / NB / "timestamp.txt"
    originals = {notebook: notebook.read_bytes(), stamp: stamp.read_bytes()}
    try:
        nb = json.loads(originals[notebook])
        nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "my notes"})
        notebook.write_text(json.dumps(nb))
        stamp.write_text("2026-12-01 20:30:00 UTC\n")  # an hour later than it was
        proc = grade_again(course)
        assert graded_now(proc.stdout) == ["ada-late", "leo"], proc.stdout
        assert "grade: 3 submission(s) unchanged" in proc.stdout
        rows = {r["student"]: r for r in read(build / "grades.csv")}
        assert rows["ada-late"]["late"] == "3.5 h late, -4 points", rows["ada-late"]
        assert rows["leo"] == course["rows"]["leo"], "a note added changes no grade"
        assert all(rows[s] == course["rows"][s] for s in ("ada", "ada-odd", "nia", "zed"))
    finally:
        for path, data in originals.items():
            path.write_bytes(data)
    proc = grade_again(course)  # as handed in again: graded again, back to the first rows
    assert graded_now(proc.stdout) == ["ada-late", "leo"], proc.stdout
    assert (build / "grades.csv").read_text() == course["csv"]


# Runs the grader, sending it a signal at the given call: `record` (a submission's gradebook
# entry, after its pages) or `csv` (grades.csv, half written), after N such calls.
KILLER = """
import os, signal, sys
from grader import gradebook, report
point, after, sig = sys.argv[1], int(sys.argv[2]), getattr(signal, sys.argv[3])
calls = []
# Ctrl-C as at a terminal: a shell starts background jobs with SIGINT ignored, and Python
# then installs no KeyboardInterrupt for it (a CI job may run so)
signal.signal(signal.SIGINT, signal.default_int_handler)

def killing(original):
    def call(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            if point == "csv":
                args[0].with_suffix(".tmp").write_text("student,assignm")
            os.kill(os.getpid(), sig)
        return original(*args, **kwargs)
    return call

if point == "record":
    gradebook.record = killing(gradebook.record)
else:
    report.write_csv = killing(report.write_csv)
from grader.__main__ import main
sys.exit(main(sys.argv[4:]))
"""


def fingerprinted(build: Path) -> list[str]:
    return sorted(p.parts[-3] for p in (build / "grading").glob("*/*/fingerprint"))


def test_a_run_killed_at_any_point_is_finished_by_the_next_one(course, tmp_path):
    """Killed (SIGTERM, SIGKILL, Ctrl-C's SIGINT) before the first result is stored, mid-run,
    and while grades.csv is written: each next run grades only what was not stored, and the
    last one leaves the CSV and the pages of a run never interrupted."""
    build = tmp_path / "build"
    shutil.copytree(course["pristine"], build)
    shutil.copy2(course["build"] / "grading-secret", build)  # the same seeds as that run

    def killed(point: str, after: int, sig: str = "SIGKILL") -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, point, str(after), sig, "grade", "--course",
             str(course["course"]), "--build", str(build), "--submissions",
             str(course["submitted"]), "--jobs", "2"],
            capture_output=True, text=True, timeout=1200, cwd=ROOT)
        out = proc.stdout[-3000:] + proc.stderr[-3000:]
        if sig == "SIGINT":  # Ctrl-C: through the grader's own clean-up, and a word
            assert proc.returncode == 130 and "Traceback" not in proc.stderr, out
            assert "grade: stopped: what was graded is kept" in proc.stderr, out
        else:
            assert proc.returncode == -getattr(signal, sig), out
        return proc

    everyone = ["ada", "ada-late", "ada-odd", "leo", "nia"]
    killed("record", 0, "SIGTERM")
    assert fingerprinted(build) == [] and not (build / "grades.csv").exists()
    killed("record", 1)
    assert len(fingerprinted(build)) == 1
    killed("record", 1, "SIGINT")
    stored = fingerprinted(build)
    assert len(stored) == 2, stored
    proc = killed("csv", 0)
    assert graded_now(proc.stdout) == sorted(set(everyone) - set(stored)), \
        "what was stored is not graded again"
    assert fingerprinted(build) == everyone and not (build / "grades.csv").exists()
    proc = grade_again(course, build)
    assert graded_now(proc.stdout) == [] and "5 submission(s) unchanged" in proc.stdout
    assert (build / "grades.csv").read_text() == course["csv"]
    assert pages(build) == course["pages"]


def as_the_guide_says(start: str, course, build: Path, cwd: Path,
                      check: bool = True) -> subprocess.CompletedProcess:
    """The guide's command line that starts with `start`, run as written: what `make -n`
    says it runs (the course the test's), from `cwd`, into `build`."""
    [line] = [line for line in GUIDE.read_text().splitlines() if line.startswith(start)]
    words = shlex.split(line, comments=True)
    assert words[0] == "make", line
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), *words[1:],
                           f"COURSE={course['course']}"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    [argv] = [shlex.split(cmd) for cmd in proc.stdout.replace("\\\n", " ").splitlines()
              if " -m grader " in cmd]
    # make hands NOTE to the command through the environment (the Makefile's override target)
    note = next((w.split("=", 1)[1] for w in words if w.startswith("NOTE=")), "")
    argv = [note if arg == "$GRADER_NOTE" else arg for arg in argv]
    ran = subprocess.run([sys.executable, *argv[1:], "--build", str(build)], cwd=cwd,
                         capture_output=True, text=True, timeout=1200)
    if check:
        assert ran.returncode == 0, line + "\n" + ran.stdout[-3000:] + ran.stderr[-3000:]
    return ran


def test_from_canvas_and_moodle_downloads_to_their_imports_as_the_guide_says(course, tmp_path):
    """collect -> grade -> export, each command as the guide writes it: a Canvas download (a
    late resubmission over an older file, a PDF, a student not on the roster) and a Moodle one
    (a folder per participant, an online text), the LMS's own rosters; the exports read back
    with the columns each LMS's import requires."""
    build = tmp_path / "build"
    shutil.copytree(course["pristine"], build)
    released = (build / "release" / NB / f"{NB}.ipynb").read_bytes()
    sample = {s: (SAMPLE / s / NB / f"{NB}.ipynb").read_bytes() for s in ("ada", "kim", "leo")}
    make_zip(tmp_path / "submissions.zip", {  # Canvas: <name>[_late]_<user id>_<file id>_<file>
        f"lovelaceada_23456_1002_{NB}.ipynb": sample["ada"],
        f"doejohn_12345_1001_{NB}.ipynb": released,
        f"doejohn_late_12345_1005_{NB}-1.ipynb": sample["leo"],
        "lovelaceada_23456_1003_notes.pdf": b"%PDF-1.4",
        f"ghostcasper_77777_1004_{NB}.ipynb": sample["kim"]})
    make_zip(tmp_path / "moodle-download.zip", {  # <full name>_<participant id>_assignsubmission_
        f"John Doe_502_assignsubmission_file/{NB}.ipynb": sample["kim"],
        "John Doe_502_assignsubmission_onlinetext/onlinetext.html": b"<p>see notebook</p>"})
    for name, text in (("canvas-gradebook.csv", CANVAS_ROSTER),
                       ("grading-worksheet.csv", MOODLE_WORKSHEET),
                       ("moodle-grades.csv", MOODLE_ROSTER)):
        (tmp_path / name).write_text(text)

    proc = as_the_guide_says("make collect LMS=canvas", course, build, tmp_path)
    with (build / "collect-report.csv").open() as f:
        outcome = {r["file"]: r["outcome"] for r in csv.DictReader(f)}
    assert outcome == {
        f"lovelaceada_23456_1002_{NB}.ipynb": "collected",
        f"doejohn_12345_1001_{NB}.ipynb": "older resubmission",
        f"doejohn_late_12345_1005_{NB}-1.ipynb": "collected",
        "lovelaceada_23456_1003_notes.pdf": "not a notebook",
        f"ghostcasper_77777_1004_{NB}.ipynb": "unknown student"}, proc.stdout
    as_the_guide_says("make collect LMS=moodle", course, build, tmp_path)
    submitted = tmp_path / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == [
        "ada@uni.example", "jdoe", "jdoe@uni.example"]
    assert (submitted / "jdoe" / NB / f"{NB}.ipynb").read_bytes() == sample["leo"], "the newest"

    proc = as_the_guide_says("make grade SUBMISSIONS=submitted FORCE=1", course, build, tmp_path)
    assert len(graded_now(proc.stdout)) == 3, proc.stdout
    proc = as_the_guide_says("make grade SUBMISSIONS=submitted    ", course, build, tmp_path)
    assert graded_now(proc.stdout) == [] and "3 submission(s) unchanged" in proc.stdout
    rows = {r["student"]: r for r in read(build / "grades.csv")}
    assert rows["ada@uni.example"]["score"] == course["rows"]["ada"]["score"]
    assert rows["jdoe"]["score"] == course["rows"]["leo"]["score"]
    assert "the LMS marked it late" in rows["jdoe"]["detail"]

    as_the_guide_says("make export LMS=canvas", course, build, tmp_path)
    lines = list(csv.reader(io.StringIO((build / "grades-canvas.csv").read_text())))
    assert lines[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert lines[1][0] == "    Points Possible" and NB in lines[0]
    by_id = {line[1]: line for line in lines[2:]}
    col = lines[0].index(NB)
    assert (by_id["23456"][col], by_id["12345"][col]) == (rows["ada@uni.example"]["score"],
                                                          rows["jdoe"]["score"])
    assert by_id["12345"][3] == "jdoe" and "99999" not in by_id, "Canvas's Test Student"

    as_the_guide_says("make export LMS=moodle", course, build, tmp_path)
    lines = list(csv.reader(io.StringIO((build / "grades-moodle.csv").read_text())))
    assert lines[0][:4] == ["ID number", "Email address", "Full name", "Section"]
    by_id = {line[0]: line for line in lines[1:]}
    assert by_id["S002"][lines[0].index(NB)] == rows["jdoe@uni.example"]["score"]
    assert by_id["S002"][1] == "jdoe@uni.example"


def override(course, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return grader("override", "--course", str(course["course"]), "--build",
                  str(course["build"]), "--student", "leo", "--assignment", NB, *args,
                  check=check)


def leo_row(course) -> dict:
    return {r["student"]: r for r in read(course["build"] / "grades.csv")}["leo"]


def canvas_score(course, student_sis: str) -> str:
    lines = list(csv.reader(io.StringIO((course["build"] / "grades-canvas.csv").read_text())))
    return lines[2:][[line[2] for line in lines[2:]].index(student_sis)][5 + sorted(
        p.name for p in (course["course"] / "source").iterdir()).index(NB)]


def test_an_override_shows_at_once_everywhere_and_a_changed_resubmission_drops_it(course,
                                                                               tmp_path):
    """The guide's two override commands as written (leo, ex2-hidden), then regrades."""
    build, first = course["build"], course["rows"]["leo"]
    grader("export", "--course", str(course["course"]), "--build", str(build), "--lms",
           "canvas", "--roster", str(roster(tmp_path, "student,name,lms_id\nleo,Leo,S010\n")))
    assert canvas_score(course, "S010") == first["score"]
    from nbgrader.api import Gradebook

    def ex2_hidden() -> tuple:
        with Gradebook(f"sqlite:///{build / 'gradebook.db'}") as gb:
            g = next(g for g in gb.find_submission_notebook(NB, NB, "leo").grades
                     if g.name == "ex2-hidden")
            return g.auto_score, g.manual_score

    assert ex2_hidden() == (0, None), "leo's ex2-hidden scored nothing"
    proc = as_the_guide_says("make override STUDENT=leo ASSIGNMENT=lazy-init-pytorch "
                             "CELL=ex2-hidden POINTS=2", course, build, ROOT)
    score = str(int(float(first["score"]) + 2))
    row = leo_row(course)
    assert row["score"] == score and float(row["ex2"]) == float(first["ex2"]) + 2, row
    line = "ex2-hidden overridden: 2 points (autograder: 0), by the instructor: right idea; " \
           "see my mail"
    assert line in row["detail"], row
    assert f"score {score}/15" in proc.stdout
    page = (build / "feedback" / "leo" / NB / f"{NB}.html").read_text()
    assert f"(Score: {float(score):.1f} / 15.0)" in page and "right idea; see my mail" in page
    assert canvas_score(course, "S010") == score, "the export written before is written again"
    assert ex2_hidden() == (0, 2), "nbgrader's tools see it as the manual score"

    # graded again with the same answers (FORCE=1): the override holds
    grader("grade", "--course", str(course["course"]), "--build", str(build), "--submissions",
           str(course["submitted"]), "--students", "leo", "--force")
    assert leo_row(course)["score"] == score and line in leo_row(course)["detail"]

    # cleared: the autograder's score again, everywhere
    as_the_guide_says("make override STUDENT=leo ASSIGNMENT=lazy-init-pytorch "
                      "CELL=ex2-hidden CLEAR=1", course, build, ROOT)
    assert leo_row(course) == first and canvas_score(course, "S010") == first["score"]
    assert ex2_hidden() == (0, None)

    # set again, then a resubmission whose answers changed: dropped, and the row says so
    override(course, "--cell", "ex2-hidden", "--points", "2", "--note", "right idea")
    notebook = course["submitted"] / "leo" / NB / f"{NB}.ipynb"
    original = notebook.read_bytes()
    nb = json.loads(original)
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [],
                        "execution_count": None, "source": "x = 1  # an answer changed"})
    try:
        notebook.write_text(json.dumps(nb))
        grade_again(course)
        row = leo_row(course)
        assert row["score"] == first["score"], row
        assert "ex2-hidden: the instructor's 2 points (right idea) were dropped: the answers " \
               "changed since they were given" in row["detail"], row
        assert json.loads((build / "overrides.json").read_text()) == {}
    finally:
        notebook.write_bytes(original)
    grade_again(course)
    assert leo_row(course) == first, "handed in as at first: the first row again"


@pytest.mark.parametrize("args, message", [
    (("--cell", "ex9-hidden", "--points", "1", "--note", "n"), "is no test cell of"),
    (("--cell", "ex1-hidden", "--points", "7", "--note", "n"), "outside 0 to 2"),
    (("--cell", "ex1-hidden", "--points", "two", "--note", "n"), "is no number"),
    (("--cell", "ex1-hidden", "--points", "1", "--note", " "), "NOTE=\"...\" is required"),
    (("--cell", "ex1-hidden", "--clear"), "has no override to clear"),
])
def test_a_wrong_override_is_refused_and_changes_nothing(course, args, message):
    before = (course["build"] / "grades.csv").read_text()
    proc = override(course, *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stdout + proc.stderr
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
    assert lines[0] == ["ID number", "Email address", "Full name", "Section", *assets]
    by_id = {line[0]: line for line in lines[1:]}
    assert set(by_id) == {"S001", "S002", "S099"}
    assert by_id["S002"][4 + assets.index(NB)] == course["rows"]["ada-late"]["score"]


@pytest.mark.parametrize("text, message", [
    ("student,name\nada,Ada\n", "a roster it cannot read; its header is student, name"),
    ("student,name,lms_id\nada,A,1\nada,B,2\n", "lists ada twice"),
])
def test_a_wrong_roster_gets_a_clear_error(course, tmp_path, text, message):
    proc = grader("export", "--course", str(course["course"]), "--build",
                  str(course["build"]), "--lms", "canvas", "--roster",
                  str(roster(tmp_path, text)), check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
