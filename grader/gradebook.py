"""The class's record: nbgrader's gradebook for scores, a result file per submission for the rest.

The gradebook (build/gradebook.db) holds what nbgrader knows: students, submissions, the
score of every test cell, the late penalty and the submission's timestamp. What it has no
place for (status, review findings, detail, how late) is kept beside the submission's logs,
build/grading/<student>/<assignment>/result.json. grades.csv is made from both, for every
submission ever graded: regrading some students leaves everyone else's rows as they were.
Only the grading process writes here, one submission after another.
"""

from __future__ import annotations

import json
from pathlib import Path

from grader import report, reuse, similarity
from grader.model import EXERCISE, Assignment, GradeRow, Lateness, Result, Status
from grader.paths import gradebook_url

NO_ASSIGNMENT = "-"  # the folder name for rows without an assignment (no submission, ...)


def exercises(model: dict[str, Assignment]) -> list[str]:
    """The per-exercise columns: ex1, ex2, ... from the test cells' grade ids."""
    found = {m.group(1) for a in model.values() for gid in a.points
             if (m := EXERCISE.match(gid))}
    return sorted(found, key=lambda e: int(e[2:]))


def by_exercise(cells: dict, points: dict) -> dict[str, float]:
    """A submission's points per exercise (visible and hidden tests together)."""
    found: dict[str, float] = {}
    for gid, score in cells.items():
        m = EXERCISE.match(gid)
        if m and points.get(gid):
            found[m.group(1)] = found.get(m.group(1), 0.0) + score
    return found


STORED = ("student", "assignment", "status", "detail", "review", "late", "seconds", "manual",
          "answers", "failed")


def record(build: Path, results: list[Result], model: dict[str, Assignment]) -> None:
    """Write results into the gradebook and the result files, in sorted order."""
    import warnings

    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc
    from sqlalchemy.exc import SAWarning

    results = sorted(results, key=lambda r: (r.student, r.assignment))
    with Gradebook(gradebook_url(build)) as gb, warnings.catch_warnings():
        # nbgrader's own update_or_create_submission trips these autoflush warnings; harmless.
        warnings.simplefilter("ignore", SAWarning)
        for r in results:
            if r.assignment not in model:
                continue
            gb.update_or_create_student(r.student)
            timestamp = r.late and r.late.timestamp
            timestamp = parse_utc(timestamp) if timestamp else None
            sub = gb.update_or_create_submission(r.assignment, r.student, timestamp=timestamp)
            nb = gb.find_submission_notebook(model[r.assignment].notebook, r.assignment,
                                             r.student)
            for grade in nb.grades:
                if grade.name in r.cells:
                    grade.auto_score = r.cells[grade.name]
                    grade.needs_manual_grade = False
                # the overrides that hold (grader/override.py), as nbgrader's manual scores
                grade.manual_score = r.manual[grade.name].points if grade.name in r.manual \
                    else None
            nb.late_submission_penalty = r.penalty or None
            sub.timestamp = timestamp
            gb.db.commit()
    for r in results:
        folder = reuse.folder(build, r.student, r.assignment or NO_ASSIGNMENT)
        folder.mkdir(parents=True, exist_ok=True)
        reuse.write_atomic(folder / "result.json", json.dumps(r.to_json(STORED), indent=1) + "\n")


def stored_result(build: Path, student: str, assignment: str) -> Result | None:
    """The result file of one submission, as the last grading (or override) left it."""
    path = reuse.folder(build, student, assignment or NO_ASSIGNMENT) / "result.json"
    try:
        return Result.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def graded(build: Path, model: dict[str, Assignment]) -> set[tuple[str, str]]:
    """(student, assignment) of every submission the gradebook holds."""
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(build)) as gb:
        return {(sub.student.id, a) for a in model for sub in gb.find_assignment(a).submissions}


def stored(build: Path) -> list[Result]:
    """Every result file under build/grading, whatever run wrote it."""
    found = []
    for path in sorted((build / "grading").glob("*/*/result.json")):
        try:
            found.append(Result.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return found


def rows(build: Path, model: dict[str, Assignment]) -> list[GradeRow]:
    """grades.csv's rows: every submission and every student the gradebook knows."""
    from nbgrader.api import Gradebook, MissingEntry

    results = {(r.student, r.assignment): r for r in stored(build)}
    similar = similarity.stored_lines(build)  # computed for the class after grading
    columns = exercises(model)
    out = []
    with Gradebook(gradebook_url(build)) as gb:
        for a in model:
            for sub in gb.find_assignment(a).submissions:
                results.setdefault((sub.student.id, a), Result(sub.student.id, a))
        known = {s.id for s in gb.students}
        for student in sorted(known - {s for s, _ in results}):
            results[(student, "")] = Result(student, "")
            results[(student, "")].flag(Status.NO_SUBMISSION,
                                        "in the gradebook, but no submission graded")
        for (student, a), r in sorted(results.items()):
            row = GradeRow(student, a, exercises=dict.fromkeys(columns, ""),
                           status=report.status_text(r), detail="; ".join(r.detail),
                           review="; ".join([*r.review,
                                             *filter(None, [similar.get((student, a))])]))
            if a in model:
                try:
                    nb = gb.find_submission_notebook(model[a].notebook, a, student)
                except MissingEntry:
                    nb = None
                if nb is not None:
                    penalty = nb.late_submission_penalty or 0.0
                    cells = {g.name: g.score for g in nb.grades}
                    auto = {g.name: g.auto_score for g in nb.grades}
                    row.detail = "; ".join([*r.detail, *(
                        report.note_line(cell, entry, auto.get(cell))
                        for cell, entry in sorted(r.manual.items()))])
                    row.score = report.fmt(max(nb.score - penalty, 0.0))
                    row.max_score = report.fmt(nb.max_score)
                    for ex, points in by_exercise(cells, model[a].points).items():
                        row.exercises[ex] = report.fmt(points)
                if r.late and r.late.seconds:
                    row.late = late_text(r.late)
            out.append(row)
    return out


def late_text(late: Lateness) -> str:
    hours = late.seconds / 3600
    when = f"{hours:.1f} h late" if hours < 48 else f"{hours / 24:.1f} days late"
    return when + (f", -{report.fmt(late.penalty)} points" if late.penalty else "")
