"""The graded exercises: the sample class's parallel autograding, its feedback and gradebook,
and what `make grade` says of a wrong submissions folder or runs for a private course (the
release and the validator: test_release.py).

tests/grading/sample_class/ holds one submission for each kind the grader must handle
(written by tests/grading/make_classes.py); EXPECTED (tests/grading/sample_grading.py) is
what each must get. The class is graded once per session with JOBS=2, in one grading with
the mutants of tests/grading/mutants.py (conftest.py's `sample_run`; test_grading_mutants.py
reads their rows); its quick part is graded again with JOBS=1 into a build directory of its
own, and the rows of the two grades.csv must be identical.
"""

from __future__ import annotations

import csv
import html
import re
import shlex
import shutil
import subprocess
import sys

import nbformat
import pytest
from sample_grading import (
    CELLS,
    CLASS,
    EXERCISES,
    FRAMEWORKS,
    GRADER,
    NO_KERNEL,
    ROOT,
    copy_class,
    csv_lines,
    expected_for,
    grade,
    grade_cmd,
    hidden_tests,
    read_csv,
    source_nb,
    visible_lines,
)

# Graded again with JOBS=1: quick ones, of every way a submission ends that needs no timeout,
# all PyTorch (one reference run: a second framework would add one and show nothing new).
QUICK = ("ada", "ivy", "jon", "kim", "leo")


@pytest.fixture(scope="module")
def expected(frameworks) -> dict:
    return expected_for(frameworks)


@pytest.fixture(scope="module")
def run1(sample_run) -> dict:
    """The whole class, JOBS=2 (conftest.py: one grading per session, the mutants with it)."""
    return sample_run


def mutant_submissions(run: dict) -> set[tuple[str, str]]:
    """(student, assignment) of the mutants graded in the same run as the sample class."""
    return {(student, f"lazy-init-{fw}") for student, by_fw in run["mutants"].items()
            for fw in by_fw}


@pytest.fixture(scope="module")
def jobs1(expected, released_copy, tmp_path_factory) -> dict:
    """Part of the class again, one job at a time, into a build of its own."""
    students = [s for s in QUICK if s in expected]
    folder = copy_class(students, tmp_path_factory.mktemp("quick"))
    return {**grade(folder, released_copy("build-jobs1"), jobs=1),
            "students": students}


# ---------------------------------------------------------------------------- the class


def test_each_student_gets_the_expected_score_and_status(run1, expected):
    with (run1["build"] / "grades.csv").open() as f:
        keys = [(r["student"], r["assignment"]) for r in csv.DictReader(f)]
    assert len(keys) == len(set(keys)), "one row per submission"
    assert set(keys) == {(s, e[0]) for s, e in expected.items()} | mutant_submissions(run1)
    rows = read_csv(run1["build"] / "grades.csv")  # by student: the sample's have one each
    wrong = []
    for student, (assignment, score, max_score, status, detail) in expected.items():
        row = rows[student]
        got = (row["assignment"], row["score"], row["max_score"], row["status"])
        if got != (assignment, score, max_score, status) or detail not in row["detail"]:
            wrong.append(f"{student}: expected {(assignment, score, max_score, status)} with "
                         f"{detail!r}, got {got} with {row['detail']!r}")
    assert not wrong, "\n".join(wrong)


def test_jobs_1_and_jobs_2_write_identical_grades(run1, jobs1):
    assert jobs1["students"], "the quick part of the class is graded"
    one = csv_lines(jobs1["build"] / "grades.csv", jobs1["students"])
    two = csv_lines(run1["build"] / "grades.csv", jobs1["students"])
    assert len(one) == len(jobs1["students"]) + 1 and one == two


def test_progress_is_shown_as_submissions_finish(run1, expected):
    out, total = run1["out"], len(expected) + len(mutant_submissions(run1))
    lines = re.findall(r"^\[ *(\d+)/(\d+)\] (\S+) ", out, re.M)
    assert [int(i) for i, _, _ in lines] == list(range(1, total + 1)), out
    assert {n for _, n, _ in lines} == {str(total)}
    assert sorted(s for _, _, s in lines if s in expected) == sorted(expected)
    assert out.index(f"[{total}/") < out.index("\nstudent "), "progress before the table"


def test_the_gradebook_holds_the_same_grades(run1, expected):
    from nbgrader.api import Gradebook

    with (run1["build"] / "grades.csv").open() as f:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}
    with Gradebook(f"sqlite:///{run1['build'] / 'gradebook.db'}") as gb:
        graded = {(s.student.id, s.assignment.name): s
                  for a in gb.assignments for s in a.submissions}
        assert set(graded) == ({(s, e[0]) for s, e in expected.items()}
                               | mutant_submissions(run1))
        for key, sub in graded.items():
            assert f"{sub.score:g}" == rows[key]["score"], key
            assert f"{sub.max_score:g}" == rows[key]["max_score"], key
        for student, cells in CELLS.items():
            if student not in expected:
                continue
            nb = gb.find_submission_notebook(expected[student][0], expected[student][0],
                                             student)
            got = {g.name: g.score for g in nb.grades}
            assert {k: got[k] for k in cells} == cells, student


def test_every_submission_gets_feedback_without_the_hidden_tests(run1, expected):
    hidden = {line.strip() for fw in FRAMEWORKS for line in hidden_tests(fw)
              if len(line.strip()) > 25} - visible_lines()
    assert hidden, "the source notebooks have hidden tests"
    for student, (assignment, score, *_rest) in expected.items():
        page = run1["build"] / "feedback" / student / assignment / f"{assignment}.html"
        assert page.is_file(), page
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        leaked = sorted(hidden & {line.strip() for line in text.splitlines()})
        assert not leaked, f"{page} shows hidden tests: {leaked[:3]}"
        if student not in NO_KERNEL:
            assert f"Score: {float(score)}" in text, page
            # the notebook graded has the test cells' released form: the checks ran after
            # its last cell and left nothing in it
            graded = (run1["build"] / "autograded" / student / assignment
                      / f"{assignment}.ipynb").read_text()
            assert "BEGIN HIDDEN TESTS" not in graded


def test_no_process_outlives_its_submission(run1, expected):
    if "mia" not in expected:
        pytest.skip("mia (pytorch) is not part of this run")
    if not sys.platform.startswith("linux"):
        pytest.skip("reaping leftovers needs Linux (a PID namespace or a child subreaper)")
    assert not run1["left_behind"], "mia's `sleep 4321` survived"


def test_student_code_changed_neither_sources_nor_gradebook(run1, jobs1, expected):
    for run in (run1, jobs1):
        assert run["sources_after"] == run["sources_before"]
    # The hidden tests and points the gradebook keeps are still the source's.
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{run1['build'] / 'gradebook.db'}") as gb:
        for fw in FRAMEWORKS:
            name = f"lazy-init-{fw}"
            for cell in source_nb(fw).cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("grade"):
                    stored = gb.find_source_cell(meta["grade_id"], name, name)
                    assert stored.source == cell.source, (name, meta["grade_id"])
                    graded = gb.find_graded_cell(meta["grade_id"], name, name)
                    assert graded.max_score == meta["points"]
    if "leo" not in expected:
        return
    leo = nbformat.read(run1["build"] / "autograded" / "leo" / "lazy-init-pytorch"
                        / "lazy-init-pytorch.ipynb", as_version=4)
    attempts = "".join(o.get("text", "") for c in leo.cells if c.cell_type == "code"
                       for o in c.outputs)
    assert "TAMPER tried" in attempts, "the tampering cell ran"
    assert "sandbox: bubblewrap" in run1["out"]
    assert "TAMPER changed" not in attempts, attempts
    assert "changed while student code ran" not in run1["out"]


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("layout, message", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("file", "is not a directory"),
    ("assignment first", "the student comes first"),
    ("notebooks at the top", "no <student>/<assignment>/ folders"),
])
def test_a_wrong_submissions_folder_gets_a_clear_error(run1, tmp_path, layout, message):
    target = tmp_path / "submitted"
    if layout == "empty":
        target.mkdir()
    elif layout == "file":
        target.write_text("")
    elif layout == "assignment first":
        shutil.copytree(CLASS / "ada" / "lazy-init-pytorch",
                        target / "lazy-init-pytorch" / "ada")
    elif layout == "notebooks at the top":
        target.mkdir()
        shutil.copyfile(CLASS / "ada" / "lazy-init-pytorch" / "lazy-init-pytorch.ipynb",
                        target / "ada.ipynb")
    proc = subprocess.run(grade_cmd(target, run1["build"]), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "SUBMISSIONS/<student_id>/<assignment>/<assignment>.ipynb" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- a private course


def make_grader_args(*make_args: str) -> dict[str, list[str]]:
    """What `make -n` says `make release` and `make grade` would run: target -> arguments."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "release", "grade",
                           *make_args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    commands = {}
    for line in proc.stdout.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if words[1:3] == ["-m", "grader"]:
            commands[words[3]] = words[4:]
    assert set(commands) == {"release", "grade"}, proc.stdout
    return commands


def test_make_release_and_grade_read_the_course_that_COURSE_names(frameworks, tmp_path):
    def course(args):
        return args[args.index("--course") + 1]

    assert {course(a) for a in make_grader_args().values()} == {"exercises"}
    private, submitted = tmp_path / "private course", tmp_path / "submitted"  # a space: quoted
    commands = make_grader_args(f"COURSE={private}", f"SUBMISSIONS={submitted}", "JOBS=1")
    assert {course(a) for a in commands.values()} == {str(private)}
    if "pytorch" not in frameworks:
        pytest.skip("grading the private course takes a PyTorch notebook; its env is not built")
    # The private copy: one assignment, whose reference solution sums where the published
    # one averages: ada's published answer then loses the hidden tests of exercise 3.
    name = "lazy-init-pytorch"
    (private / "source" / name).mkdir(parents=True)
    shutil.copy(EXERCISES / "nbgrader_config.py", private)
    nb = source_nb("pytorch")
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                == "ex3-solution")
    assert "H.mean(dim=1)" in cell.source
    cell.source = cell.source.replace("H.mean(dim=1)", "H.sum(dim=1)")
    nbformat.write(nb, private / "source" / name / f"{name}.ipynb")
    shutil.copytree(CLASS / "ada", submitted / "ada")
    build = tmp_path / "build"
    for command in ("release", "grade"):  # as make runs them, into a build folder of our own
        proc = subprocess.run([*GRADER, command, *commands[command], "--build", str(build)],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in (build / "release").iterdir()] == [name]
    row = read_csv(build / "grades.csv")["ada"]
    assert (row["score"], row["status"]) == ("13", "ok"), row  # 15, less ex3-hidden's 2
