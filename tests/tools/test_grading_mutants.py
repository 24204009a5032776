"""Mutation testing of the course's tests: every wrong answer in the set loses its points.

tests/grading/mutants.py lists plausible wrong answers to each exercise (a wrong prediction,
an answer that only fits the visible tests, max pooling, a weight read the wrong way round,
...) and the test cells that must catch each. They are all graded, next to the reference
solutions, for every framework whose env this run built, in the session's one JOBS=2 run of
the grader that grades the sample class too (conftest.py's `sample_run`). A mutant that
keeps its points means a hidden test that lets a wrong answer through.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "grading"))
import mutants  # noqa: E402

FULL = sum(mutants.POINTS.values()) * len(mutants.EXERCISES)


def exercise_cells(exercise: int) -> list[str]:
    return [f"ex{exercise}-{part}" for part in mutants.POINTS]


@pytest.fixture(scope="module")
def graded(sample_run) -> dict:
    """The mutants' rows in grades.csv and their cells' scores in the gradebook."""
    fws, expected, build = (sample_run["mutant_frameworks"], sample_run["mutants"],
                            sample_run["build"])
    if not fws:
        pytest.skip("no framework env is part of this run")
    with (build / "grades.csv").open() as f:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}
    from nbgrader.api import Gradebook

    cells = {}
    with Gradebook(f"sqlite:///{build / 'gradebook.db'}") as gb:
        for student, by_fw in expected.items():
            for fw in by_fw:
                name = f"lazy-init-{fw}"
                nb = gb.find_submission_notebook(name, name, student)
                cells[student, fw] = {g.name: g.score for g in nb.grades}
    return {"expected": expected, "rows": rows, "cells": cells, "frameworks": fws}


def test_the_reference_solutions_get_full_marks(graded):
    for fw in graded["frameworks"]:
        row = graded["rows"][mutants.REFERENCE, f"lazy-init-{fw}"]
        assert (row["score"], row["status"]) == (str(FULL), "ok"), row
        assert all(score == mutants.POINTS[gid.split("-", 1)[1]]
                   for gid, score in graded["cells"][mutants.REFERENCE, fw].items()
                   if gid != "setup"), graded["cells"][mutants.REFERENCE, fw]


def test_each_wrong_answer_loses_the_points_of_the_tests_meant_to_catch_it(graded):
    """Exactly the cells a mutant names lose their points: the hidden tests catch what the
    visible ones let through, and no mutant fails by accident somewhere else."""
    wrong = []
    for student, by_fw in graded["expected"].items():
        for fw, what in by_fw.items():
            row = graded["rows"][student, f"lazy-init-{fw}"]
            if row["status"] != "ok":
                wrong.append(f"{student} {fw}: status {row['status']} ({row['detail']})")
            scores = graded["cells"][student, fw]
            for exercise in mutants.EXERCISES:
                lost = {gid for gid in exercise_cells(exercise) if scores[gid] == 0}
                partial = {gid for gid in exercise_cells(exercise)
                           if 0 < scores[gid] < mutants.POINTS[gid.split("-", 1)[1]]}
                want = {gid for gid in what["lose"] if gid.startswith(f"ex{exercise}-")}
                mutant = what["mutants"].get(exercise, "the reference answer")
                if lost != want or partial:
                    wrong.append(f"{fw} {mutant}: lost {sorted(lost)}, should lose "
                                 f"{sorted(want)}")
    assert not wrong, "\n".join(wrong)


def test_the_set_has_the_wrong_answers_each_exercise_needs():
    """Per framework and exercise: a wrong prediction, and an answer that passes the visible
    tests but not the hidden ones; and the designs the hidden tests once let through."""
    for fw in mutants.FRAMEWORKS:
        for exercise in mutants.EXERCISES:
            found = mutants.applicable(fw, exercise)
            assert any(m.caught_by == ("prediction-check",) for m in found), (fw, exercise)
            assert any(m.caught_by == ("hidden",) for m in found), (fw, exercise)
        names = {m.name for m in mutants.MUTANTS if fw in m.changes}
        assert {"ex1-visible-sizes", "ex2-visible-sizes", "ex3-visible-sizes", "ex2-weight-layout",
                "ex3-max-pooling", "ex3-raw-mean"} <= names, (fw, names)
