"""grader/collect.py on small folders made here: what each layout of SUBMISSIONS becomes,
as Submission values, with no kernel and no grading run (the class gradings show the same
rows end to end: test_grading.py's jon, test_grading_hostile.py's links, FIFO and huge file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grader import collect
from grader.errors import UsageError
from grader.model import Assignment, Status, Submission

MODEL = {name: Assignment(name=name, notebook=name, points={}, cells=[], released={}, tests=[],
                          hidden=[], checks={}, kernelspec={"name": "python3"}, source_file="")
         for name in ("hw1", "hw2")}


def notebook(root: Path, student: str, assignment: str = "hw1", name: str = "") -> Path:
    path = root / student / assignment / f"{name or assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path


def by_student(root: Path) -> tuple[dict[str, list[Submission]], list[str]]:
    found, warnings = collect.discover(root, MODEL)
    out: dict[str, list[Submission]] = {}
    for sub in found:
        assert isinstance(sub, Submission)
        out.setdefault(sub.student, []).append(sub)
    return out, warnings


def test_each_assignment_folder_is_one_submission_with_its_notebook(tmp_path):
    ada1, ada2 = notebook(tmp_path, "ada"), notebook(tmp_path, "ada", "hw2")
    found, warnings = by_student(tmp_path)
    assert found == {"ada": [Submission("ada", "hw1", str(ada1)),
                             Submission("ada", "hw2", str(ada2))]}
    assert warnings == []


def test_what_cannot_be_graded_is_a_submission_with_its_problem(tmp_path):
    notebook(tmp_path, "ada")
    notebook(tmp_path, "ben", name="Untitled")  # renamed
    (tmp_path / "cleo").mkdir()
    (tmp_path / "cleo" / "hw1.ipynb").write_text("{}")  # a level too high
    (tmp_path / "dev" / "notes").mkdir(parents=True)  # no assignment at all
    (tmp_path / "eve").symlink_to(tmp_path / "ada", target_is_directory=True)
    fifo = notebook(tmp_path, "fay")
    fifo.unlink()
    os.mkfifo(fifo)  # a plain read would hang
    with notebook(tmp_path, "gus").open("wb") as f:
        f.truncate(collect.MAX_NOTEBOOK_BYTES + 1)  # sparse: nothing on disk
    found, warnings = by_student(tmp_path)
    problems = {s: [(sub.assignment, sub.problem) for sub in subs] for s, subs in found.items()}
    assert problems == {
        "ada": [("hw1", None)],
        "ben": [("hw1", (Status.MISSING_NOTEBOOK, "no hw1.ipynb in ben/hw1/ (found "
                                                  "Untitled.ipynb)"))],
        "cleo": [("hw1", (Status.MISSING_NOTEBOOK, "cleo/hw1.ipynb is not inside a folder "
                                                   "hw1/"))],
        "dev": [("", (Status.NO_SUBMISSION, "no assignment folder in dev/ (found notes)"))],
        "eve": [("", (Status.SYMLINK, "eve/ is a symbolic link; links are not followed"))],
        "fay": [("hw1", (Status.NOT_A_NOTEBOOK_FILE, "fay/hw1/hw1.ipynb is not a regular "
                                                     "file"))],
        "gus": [("hw1", (Status.INVALID_NOTEBOOK, "larger than 50 MB"))],
    }
    assert "dev/notes: not an assignment, ignored" in warnings


def test_names_a_spreadsheet_or_a_terminal_would_misread_are_warned_about(tmp_path):
    notebook(tmp_path, "=1+1")
    notebook(tmp_path, ".hidden")
    notebook(tmp_path, "hw2")  # a student named like an assignment
    found, warnings = by_student(tmp_path)
    assert sorted(found) == [".hidden", "=1+1", "hw2"]
    assert warnings == [
        "student folder .hidden: hidden (starts with a dot); graded",
        "student folder =1+1: starts like a spreadsheet formula; written to grades.csv with "
        "a leading apostrophe",
        "student folder hw2: named like an assignment; graded as a student"]


@pytest.mark.parametrize("layout, message", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("assignment first", "the student comes first"),
    ("flat", "no <student>/<assignment>/ folders in"),
])
def test_a_layout_that_is_not_nbgraders_stops_with_the_layout_it_expects(tmp_path, layout,
                                                                         message):
    root = tmp_path / "submitted"
    if layout == "empty":
        root.mkdir()
    elif layout == "assignment first":
        notebook(root, "hw1", "ada", name="hw1")
    elif layout == "flat":
        root.mkdir()
        (root / "ada.ipynb").write_text("{}")
    with pytest.raises(UsageError) as e:
        collect.discover(root, MODEL)
    assert message in str(e.value)
    assert "SUBMISSIONS/<student_id>/<assignment>/<assignment>.ipynb" in str(e.value)


def test_a_notebook_is_read_without_following_a_link_swapped_in_since(tmp_path):
    path = notebook(tmp_path, "ada")
    assert collect.read_regular_file(str(path)) == b"{}"
    path.unlink()
    path.symlink_to("/etc/passwd")
    with pytest.raises(OSError):
        collect.read_regular_file(str(path))
