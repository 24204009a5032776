"""The graded exercises: nbgrader release, validation, and parallel autograding.

tests/grading/sample_class/ holds one submission for each kind the grader must handle
(written by tests/grading/make_classes.py); EXPECTED (tests/grading/sample_grading.py) is
what each must get. The class is graded once per session with JOBS=2 (conftest.py's
`sample_run`); its quick part is graded again with JOBS=1 into a build directory of its
own, and the rows of the two grades.csv must be identical.
"""

from __future__ import annotations

import html
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from sample_grading import (
    CELLS,
    CLASS,
    EXERCISES,
    GRADER,
    NO_KERNEL,
    ROOT,
    copy_class,
    csv_lines,
    expected_for,
    grade,
    grade_cmd,
    read_csv,
)

FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
NBGRADER = Path(sys.executable).parent / "nbgrader"
# Graded again with JOBS=1: quick ones, of every way a submission ends that needs no timeout,
# all PyTorch (one reference run: a second framework would add one and show nothing new).
QUICK = ("ada", "ivy", "jon", "kim", "leo")


@pytest.fixture(scope="module")
def expected(frameworks) -> dict:
    return expected_for(frameworks)


@pytest.fixture(scope="module")
def run1(sample_run) -> dict:
    """The whole class, JOBS=2 (conftest.py: one grading per session)."""
    return sample_run


@pytest.fixture(scope="module")
def jobs1(expected, released_copy, tmp_path_factory) -> dict:
    """Part of the class again, one job at a time, into a build of its own."""
    students = [s for s in QUICK if s in expected]
    folder = copy_class(students, tmp_path_factory.mktemp("quick"))
    return {**grade(folder, released_copy("build-jobs1"), jobs=1),
            "students": students}


# ---------------------------------------------------------------------------- the class


def test_each_student_gets_the_expected_score_and_status(run1, expected):
    rows = read_csv(run1["build"] / "grades.csv")
    assert sorted(rows) == sorted(expected), "one row per student"
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
    out = run1["out"]
    lines = re.findall(r"^\[ *(\d+)/(\d+)\] (\S+) ", out, re.M)
    assert [int(i) for i, _, _ in lines] == list(range(1, len(expected) + 1)), out
    assert {n for _, n, _ in lines} == {str(len(expected))}
    assert sorted(s for _, _, s in lines) == sorted(expected)
    assert out.index(f"[{len(expected)}/") < out.index("\nstudent "), "progress before the table"


def test_the_gradebook_holds_the_same_grades(run1, expected):
    from nbgrader.api import Gradebook

    rows = read_csv(run1["build"] / "grades.csv")
    with Gradebook(f"sqlite:///{run1['build'] / 'gradebook.db'}") as gb:
        graded = {(s.student.id, s.assignment.name): s
                  for a in gb.assignments for s in a.submissions}
        assert set(graded) == {(s, e[0]) for s, e in expected.items()}
        for (student, _), sub in graded.items():
            assert f"{sub.score:g}" == rows[student]["score"], student
            assert f"{sub.max_score:g}" == rows[student]["max_score"], student
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


# ---------------------------------------------------------------------------- release


def source_nb(fw: str):
    name = f"lazy-init-{fw}"
    return nbformat.read(EXERCISES / "source" / name / f"{name}.ipynb", as_version=4)


def regions(source: str, begin: str, end: str, inside: bool = True) -> list[str]:
    """The lines of `source` inside begin/end regions, or with inside=False those outside,
    by where they sit (a check may repeat a visible line: that line is still visible)."""
    lines, within = [], False
    for line in source.splitlines():
        if begin in line:
            within = True
        elif end in line:
            within = False
        elif within == inside:
            lines.append(line)
    return lines


def hidden_tests(fw: str) -> list[str]:
    return [line for c in source_nb(fw).cells
            for line in regions(c.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")]


def visible_lines(*fws: str) -> set[str]:
    """Lines of the source notebooks outside solutions and hidden tests."""
    lines = set()
    for fw in fws or FRAMEWORKS:
        for cell in source_nb(fw).cells:
            shown = set(regions(cell.source, "BEGIN SOLUTION", "END SOLUTION", False)) & set(
                regions(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", False))
            lines |= {line.strip() for line in shown}
    return lines


@pytest.fixture(scope="module")
def released(released_build) -> Path:
    return released_build / "release"


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_released_notebook_has_no_solutions_and_no_hidden_tests(released, fw):
    name = f"lazy-init-{fw}"
    text = (released / name / f"{name}.ipynb").read_text()
    nb = nbformat.reads(text, as_version=4)
    code = "\n".join(c.source for c in nb.cells)
    solution = [line.strip() for c in source_nb(fw).cells
                for line in regions(c.source, "BEGIN SOLUTION", "END SOLUTION")]
    hidden = [line.strip() for line in hidden_tests(fw)]
    assert solution and hidden
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
        assert marker not in text
    # Lines that only a solution or a hidden test has (`return net(X)` is in both).
    shown = {line.strip() for line in code.splitlines()}
    leaked = [line for line in solution + hidden
              if line and line in shown and line not in visible_lines(fw)]
    assert not leaked, leaked
    stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(stubs) == 6, "a prediction and a solution cell per exercise"
    assert all("raise NotImplementedError()" in c.source for c in stubs)
    assert not any(c.get("outputs") for c in nb.cells)
    assert nb.metadata.kernelspec.name == f"d2l-{fw}"


def validate(path: Path) -> str:
    """What `nbgrader validate` prints; its exit status is 0 whether or not it passes."""
    proc = subprocess.run([str(NBGRADER), "validate", str(path)], capture_output=True,
                          text=True, timeout=600, cwd=EXERCISES)
    return " ".join(proc.stdout.split())


@pytest.fixture(scope="module")
def validations(released, frameworks) -> dict[tuple[str, str], str]:
    """What `nbgrader validate` says of each built framework's source and released
    notebook, (framework, "source" or "release") -> text: each validation is a kernel run of
    its own, so two run at a time."""
    paths = {}
    for fw in frameworks:
        name = f"lazy-init-{fw}"
        paths[fw, "source"] = EXERCISES / "source" / name / f"{name}.ipynb"
        paths[fw, "release"] = released / name / f"{name}.ipynb"
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(paths, pool.map(validate, paths.values()), strict=True))


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_source_passes_the_validator_and_the_release_fails_it(validations, frameworks, fw):
    if fw not in frameworks:
        pytest.skip(f"the {fw} env is not part of this run")
    source = validations[fw, "source"]
    assert "Success! Your notebook passes all the tests." in source, source[-2000:]
    student = validations[fw, "release"]
    # The three prediction checks (their visible part checks the answer's form) and the
    # three visible test cells fail; the hidden ones are empty in the student version.
    assert "VALIDATION FAILED ON 6 CELL(S)!" in student, student[-2000:]


# Each exercise: a prediction the student writes, its check (the form visible, the answer
# hidden), the code, its visible tests and its hidden tests. (grade id, points, solution,
# locked) per nbgrader cell, the same in every framework.
SKELETON = [("setup", 0, False, True)] + [
    (f"ex{n}-{part}", points, part in ("prediction", "solution"),
     part not in ("prediction", "solution"))
    for n in (1, 2, 3)
    for part, points in (("prediction", None), ("prediction-check", 1), ("solution", None),
                         ("visible", 2), ("hidden", 2))]


def test_source_notebooks_share_one_clean_structure():
    shapes = {}
    for fw in FRAMEWORKS:
        nb = source_nb(fw)
        assert nb.metadata.kernelspec.name == f"d2l-{fw}"
        cells = nb.cells
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells)
        for i, cell in enumerate(cells):
            if cell.cell_type == "code":
                assert i > 0 and cells[i - 1].cell_type == "markdown", (fw, i)
        shape = []
        for cell in cells:
            meta = cell.metadata.get("nbgrader")
            if meta:
                shape.append((meta["grade_id"], meta.get("points"), meta["solution"],
                              meta["locked"]))
                if meta["solution"]:
                    assert "### BEGIN SOLUTION" in cell.source
                if meta["grade_id"].endswith(("-hidden", "-prediction-check")):
                    assert "### BEGIN HIDDEN TESTS" in cell.source, (fw, meta["grade_id"])
        shapes[fw] = shape
        assert sum(p or 0 for _, p, _, _ in shape) == 15
    assert shapes == {fw: SKELETON for fw in FRAMEWORKS}, shapes


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
