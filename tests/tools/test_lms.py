"""The LMS's files in and out (grader/lms.py, grader/lms_collect.py, grader/export.py): a
Canvas and a Moodle download built as each LMS writes them, collected into submitted/; the
rosters read from each LMS's export; the export read back. No kernel: seconds, after one
release."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import export, gradebook, late, lms, lms_collect
from grader.course import course_model
from grader.errors import UsageError
from grader.model import Deadlines, Result

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "grading"))
from lms_files import CANVAS_ROSTER, MOODLE_ROSTER, MOODLE_WORKSHEET, make_zip  # noqa: E402

COURSE = ROOT / "exercises"
PT, JAX, TF = "lazy-init-pytorch", "lazy-init-jax", "lazy-init-tensorflow"

def notebook(build: Path, name: str, answer: str = "") -> bytes:
    """The released notebook, its first answer cell changed to `answer`."""
    nb = json.loads((build / "release" / name / f"{name}.ipynb").read_text())
    if answer:
        cell = next(c for c in nb["cells"]
                    if c["metadata"].get("nbgrader", {}).get("grade_id") == "ex1-solution")
        cell["source"] = answer
    return json.dumps(nb).encode()


def canvas_download(build: Path, path: Path, ada_answer: str = "x = 1") -> Path:
    return make_zip(path, {
        f"doejohn_12345_1001_{PT}.ipynb": notebook(build, PT, "old = 1"),
        f"doejohn_late_12345_1005_{PT}-1.ipynb": notebook(build, PT, "new = 2"),
        f"lovelaceada_23456_1002_{PT}.ipynb": notebook(build, JAX, ada_answer),  # misnamed
        "lovelaceada_23456_1003_notes.pdf": b"%PDF-1.4",
        f"ghostcasper_77777_1004_{PT}.ipynb": notebook(build, PT),
        "lovelaceada_23456_1007_scratch.ipynb": json.dumps(
            {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode(),
        f"../doejohn_12345_1008_{PT}.ipynb": notebook(build, PT, "evil = 1"),
        f"/tmp/doejohn_12345_1009_{PT}.ipynb": notebook(build, PT, "evil = 2"),
        f"doejohn_12345_1011_{PT}.ipynb": b" " * (50 * 2**20 + 1),  # a bomb: 51 kB zipped
    }, links={f"doejohn_12345_1010_{PT}.ipynb": "/etc/passwd"})


def collect(build, tmp_path, lms_name, download, roster_text, capsys=None, course=COURSE):
    roster = tmp_path / f"roster-{lms_name}.csv"
    roster.write_text(roster_text)
    submitted = tmp_path / "submitted"
    assert lms_collect.collect(course, build, lms_name, download, roster, submitted) == 0
    with (build / "collect-report.csv").open() as f:
        report = {r["file"]: r for r in csv.DictReader(f)}
    return submitted, report


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_canvas_download_is_filed_by_roster_id_and_by_what_the_notebook_is(build,
                                                                             tmp_path):
    download = canvas_download(build, tmp_path / "submissions.zip")
    before = hashlib.sha256(download.read_bytes()).hexdigest()
    submitted, report = collect(build, tmp_path, "canvas", download, CANVAS_ROSTER)
    assert hashlib.sha256(download.read_bytes()).hexdigest() == before, "download changed"
    files = tree(submitted)
    assert sorted(files) == sorted([f"ada@uni.example/{JAX}/{JAX}.ipynb",
                                    f"jdoe/{PT}/lms-late.txt", f"jdoe/{PT}/{PT}.ipynb"])
    assert b"new = 2" in files[f"jdoe/{PT}/{PT}.ipynb"], "the newest (highest file id) wins"
    outcome = {name: r["outcome"] for name, r in report.items()}
    assert outcome == {
        f"doejohn_12345_1001_{PT}.ipynb": "older resubmission",
        f"doejohn_late_12345_1005_{PT}-1.ipynb": "collected",
        f"lovelaceada_23456_1002_{PT}.ipynb": "collected",
        "lovelaceada_23456_1003_notes.pdf": "not a notebook",
        f"ghostcasper_77777_1004_{PT}.ipynb": "unknown student",
        "lovelaceada_23456_1007_scratch.ipynb": "unknown assignment",
        f"../doejohn_12345_1008_{PT}.ipynb": "rejected",
        f"/tmp/doejohn_12345_1009_{PT}.ipynb": "rejected",
        f"doejohn_12345_1010_{PT}.ipynb": "rejected",
        f"doejohn_12345_1011_{PT}.ipynb": "rejected",
    }, "every file of the download has a row"
    assert report[f"lovelaceada_23456_1002_{PT}.ipynb"]["assignment"] == JAX
    assert "Canvas user 77777 is not on the roster" in report[
        f"ghostcasper_77777_1004_{PT}.ipynb"]["detail"]
    assert "symbolic link" in report[f"doejohn_12345_1010_{PT}.ipynb"]["detail"]
    assert "larger than 50 MB" in report[f"doejohn_12345_1011_{PT}.ipynb"]["detail"]
    assert "marked late" in report[f"doejohn_late_12345_1005_{PT}-1.ipynb"]["detail"]
    assert not (tmp_path / f"doejohn_12345_1008_{PT}.ipynb").exists()
    # the grader shows the LMS's late mark, takes no penalty, and invents no time
    when, note = late.read_timestamp(str(submitted / "jdoe" / PT))
    assert when is None and "marked it late" in note
    assert late.read_timestamp(str(submitted / "ada@uni.example" / JAX)) == (None, None)


def test_a_newer_download_changes_only_what_changed(build, tmp_path, capsys):
    submitted = tmp_path / "submitted"
    for student, name in (("zed", TF), ("zoe\x1b[2J", PT)):  # collected before, not in the zip
        (submitted / student / name).mkdir(parents=True)
        (submitted / student / name / f"{name}.ipynb").write_bytes(b"earlier")
    collect(build, tmp_path, "canvas", canvas_download(build, tmp_path / "one.zip"),
            CANVAS_ROSTER)
    # kept, and said where the download has the assignment (Canvas: one per download)
    out = capsys.readouterr().out
    assert ("collect: 1 earlier submission(s) in " in out and "are not in this download and "
            f"stay as they were: zoe\\x1b[2J/{PT} (delete a folder to drop it)" in out), out
    assert "zed/" not in out and "\x1b" not in out, out
    john = submitted / "jdoe" / PT / f"{PT}.ipynb"
    first = john.stat()
    _, report = collect(build, tmp_path, "canvas",
                        canvas_download(build, tmp_path / "two.zip", ada_answer="x = 2"),
                        CANVAS_ROSTER)
    assert (john.stat().st_mtime_ns, john.stat().st_ino) == (first.st_mtime_ns, first.st_ino)
    assert report[f"doejohn_late_12345_1005_{PT}-1.ipynb"]["detail"].startswith("unchanged")
    assert report[f"lovelaceada_23456_1002_{PT}.ipynb"]["detail"] == "updated"
    assert b"x = 2" in (submitted / "ada@uni.example" / JAX / f"{JAX}.ipynb").read_bytes()
    assert (submitted / "zed" / TF / f"{TF}.ipynb").read_bytes() == b"earlier"
    assert (submitted / "zoe\x1b[2J" / PT / f"{PT}.ipynb").read_bytes() == b"earlier"


def moodle_download(build: Path, path: Path) -> Path:
    return make_zip(path, {  # mod/assign/classes/downloader.php, in folders
        f"Ada Lovelace_501_assignsubmission_file/{JAX}.ipynb": notebook(build, JAX, "a = 1"),
        f"John Doe_502_assignsubmission_file/{TF}.ipynb": notebook(build, TF, "j = 1"),
        "John Doe_502_assignsubmission_onlinetext/onlinetext.html": b"<p>see notebook</p>",
        f"Zed Unknown_509_assignsubmission_file/{PT}.ipynb": notebook(build, PT),
    })


@pytest.mark.parametrize("roster", [MOODLE_WORKSHEET, MOODLE_ROSTER],
                         ids=["worksheet: participant ids", "grade export: full names"])
def test_a_moodle_download_zipped_or_unpacked(build, tmp_path, roster):
    download = moodle_download(build, tmp_path / "moodle.zip")
    submitted, report = collect(build, tmp_path, "moodle", download, roster)
    expected = [f"ada@uni.example/{JAX}/{JAX}.ipynb", f"jdoe@uni.example/{TF}/{TF}.ipynb"]
    assert sorted(tree(submitted)) == expected
    assert {n: r["outcome"] for n, r in report.items()} == {
        f"Ada Lovelace_501_assignsubmission_file/{JAX}.ipynb": "collected",
        f"John Doe_502_assignsubmission_file/{TF}.ipynb": "collected",
        "John Doe_502_assignsubmission_onlinetext/onlinetext.html": "not a notebook",
        f"Zed Unknown_509_assignsubmission_file/{PT}.ipynb": "unknown student"}
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(download) as zf:
        zf.extractall(unpacked)
    shutil.rmtree(submitted)
    submitted, report = collect(build, tmp_path, "moodle", unpacked, roster)
    assert sorted(tree(submitted)) == expected
    assert len(report) == 4


def test_moodles_worksheet_gives_the_hand_in_times_in_the_time_zone_set(build, tmp_path):
    download = moodle_download(build, tmp_path / "moodle.zip")
    submitted, report = collect(build, tmp_path, "moodle", download, MOODLE_WORKSHEET)
    assert not list(submitted.rglob("timestamp.txt")), "no time zone, no time"
    ada = report[f"Ada Lovelace_501_assignsubmission_file/{JAX}.ipynb"]
    assert "no c.LMSCollect.timezone" in ada["detail"], ada
    course = course_with(tmp_path, 'c.LMSCollect.timezone = "Europe/Berlin"\n')
    submitted, report = collect(build, tmp_path, "moodle", download, MOODLE_WORKSHEET,
                                course=course)
    # the worksheet's "Tuesday, 1 December 2026, 6:30 PM" and "Monday, 30 November 2026,
    # 9:00 AM", Berlin time
    assert (submitted / "ada@uni.example" / JAX / "timestamp.txt").read_text() == \
        "2026-12-01 17:30:00 UTC\n"
    assert (submitted / "jdoe@uni.example" / TF / "timestamp.txt").read_text() == \
        "2026-11-30 08:00:00 UTC\n"
    folder = str(submitted / "ada@uni.example" / JAX)
    assert late.read_timestamp(folder)[0].isoformat() == "2026-12-01T17:30:00"  # UTC
    assert "handed in 2026-12-01 17:30:00 UTC" in \
        report[f"Ada Lovelace_501_assignsubmission_file/{JAX}.ipynb"]["detail"]
    wrong = course_with(tmp_path / "wrong", 'c.LMSCollect.timezone = "Mars/Olympus"\n')
    with pytest.raises(UsageError, match="is no time zone"):
        collect(build, tmp_path, "moodle", download, MOODLE_WORKSHEET, course=wrong)


def test_rosters_are_read_as_each_lms_exports_them(tmp_path):
    (tmp_path / "c.csv").write_text(CANVAS_ROSTER)
    canvas = lms.read_roster(tmp_path / "c.csv")
    assert canvas.kind == "canvas"
    assert [(p.student, p.name, p.ids["canvas_id"]) for p in canvas.people] == [
        ("jdoe", "Doe, John", "12345"), ("ada@uni.example", "Lovelace, Ada", "23456"),
        ("canvas-34567", "O'Brien, Pat", "34567")], \
        "the login when folder-safe, else the Canvas id; no points row, no Test Student"
    assert canvas.columns == {"Lazy initialization": "Lazy initialization (4242)"}
    (tmp_path / "m.csv").write_text(MOODLE_ROSTER)
    moodle = lms.read_roster(tmp_path / "m.csv")
    assert [(p.student, p.name, p.ids["moodle_idnumber"]) for p in moodle.people] == [
        ("ada@uni.example", "Ada Lovelace", "S001"), ("jdoe@uni.example", "John Doe", "S002")]
    (tmp_path / "w.csv").write_text(MOODLE_WORKSHEET)
    worksheet = lms.read_roster(tmp_path / "w.csv")
    assert [(p.student, p.ids["participant"]) for p in worksheet.people] == [
        ("ada@uni.example", "501"), ("jdoe@uni.example", "502")], "same ids as the export"
    (tmp_path / "h.csv").write_text("student,name,lms_id,section,lms_user_id\n"
                                    "ada,\"Lovelace, Ada\",S001,A,23456\n")
    hand = lms.read_roster(tmp_path / "h.csv")
    assert (hand.kind, hand.people[0].student, hand.people[0].ids["lms_user_id"]) == (
        "hand-kept", "ada", "23456")
    (tmp_path / "bad.csv").write_text("Name,Mark\nAda,3\n")
    with pytest.raises(lms.UsageError, match="a roster it cannot read"):
        lms.read_roster(tmp_path / "bad.csv")


LOSE = {0: (), 1: ("ex1-prediction-check",), 4: ("ex1-hidden", "ex2-hidden")}  # points


def record(build: Path, scores: dict[tuple[str, str], int]) -> None:
    """Results in the gradebook: each (student, assignment) losing that many points."""
    model = course_model(COURSE, build)
    results = []
    for (student, a), lost in scores.items():
        points = model[a].points
        lose = LOSE[lost]
        assert sum(points[g] for g in lose) == lost
        r = Result(student, a, cells={g: 0.0 if g in lose else p for g, p in points.items()})
        r.late = late.assess(Deadlines(due={}, penalty="none", points=1.0), a, None, r.score)
        results.append(r)
    gradebook.record(build, results, model)


def read_back(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def course_with(tmp_path: Path, settings: str) -> Path:
    course = tmp_path / "course"
    shutil.copytree(COURSE, course)
    with (course / "nbgrader_config.py").open("a") as f:
        f.write(settings)
    return course


def test_canvas_export_per_assignment_and_combined_matched_on_canvas_ids(build, tmp_path):
    record(build, {("jdoe", PT): 4, ("jdoe", JAX): 1, ("ada@uni.example", JAX): 0})
    roster = tmp_path / "gradebook-export.csv"
    roster.write_text(CANVAS_ROSTER)
    assert export.export(COURSE, build, "canvas", roster) == 0
    lines = read_back(build / "grades-canvas.csv")
    names = sorted(course_model(COURSE, build))
    assert lines[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *names]
    assert lines[1] == ["    Points Possible", "", "", "", "", *["15"] * 4]
    rows = {line[1]: line for line in lines[2:]}
    assert rows["12345"][:5] == ["Doe, John", "12345", "", "jdoe", "Section A"]
    assert rows["12345"][5 + names.index(JAX)] == "14"
    assert rows["12345"][5 + names.index(PT)] == "11"
    assert rows["34567"][5:] == [""] * 4, "never graded: left as Canvas has it"

    course = course_with(tmp_path, '\nc.LMSExport.columns = "combined"\n')
    assert export.export(course, build, "canvas", roster) == 0
    lines = read_back(build / "grades-canvas.csv")
    assert lines[0][5:] == ["Lazy initialization (4242)"], "Canvas's own column, by its id"
    assert lines[1][5:] == ["15"]
    rows = {line[1]: line[5:] for line in lines[2:]}
    assert (rows["12345"], rows["23456"], rows["34567"]) == (["14"], ["15"], [""]), \
        "the best of the frameworks handed in"


def test_moodle_export_matched_on_id_number_and_email_mean_combined(build, tmp_path):
    record(build, {("jdoe@uni.example", PT): 4, ("jdoe@uni.example", JAX): 1,
                   ("ghost", TF): 0})
    roster = tmp_path / "grades-export.csv"
    roster.write_text(MOODLE_ROSTER)
    course = course_with(tmp_path, '\nc.LMSExport.columns = "combined"\n'
                                   'c.LMSExport.combined_score = "mean"\n')
    done = subprocess.run([sys.executable, "-m", "grader", "export", "--course", str(course),
                           "--build", str(build), "--lms", "moodle", "--roster", str(roster)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, "the settings are read"
    assert "ghost" in done.stdout.split("not on the roster")[1]
    lines = read_back(build / "grades-moodle.csv")
    assert lines[0] == ["ID number", "Email address", "Full name", "Section",
                        "Assignment: Lazy initialization (Real)"]
    rows = {line[0]: line for line in lines[1:]}
    assert rows["S002"] == ["S002", "jdoe@uni.example", "John Doe", "", "12.50"]
    assert rows["S001"][4] == ""
