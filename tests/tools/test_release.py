"""The released assignments: nothing of the solutions or the hidden tests in them,
`nbgrader validate` passing the sources and failing the student versions, and one clean
structure shared by the four source notebooks.

Apart from test_grading.py because nothing here reads the sample class's grading: under
`make test`'s two workers it runs beside it (tests/tools/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from sample_grading import EXERCISES, FRAMEWORKS, hidden_tests, regions, source_nb, visible_lines

NBGRADER = Path(sys.executable).parent / "nbgrader"


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
