"""`make override`: an instructor's score for one test cell, with the reason, that sticks.

    make override STUDENT=ada ASSIGNMENT=lazy-init-jax CELL=ex3-hidden POINTS=2 NOTE="..."
    make override STUDENT=ada ASSIGNMENT=lazy-init-jax CELL=ex3-hidden CLEAR=1

build/overrides.json is where overrides live, each with its note, when it was set, and a
digest of the answers it was given for (answers_digest: every cell the student wrote, not the
restored test and read-only cells). The gradebook mirrors them as nbgrader's manual_score, so
nbgrader's own tools show them. Setting one rewrites, at once and without a grading run, the
student's row in grades.csv (its detail says who set what and why), the feedback page and
every LMS export written before (build/exports.json). A later grading run keeps an override
while the answers are the same (a FORCE=1 regrade, a rerun after a grader upgrade) and drops
it, saying so in the row, when a resubmission changed them.

A manual score set some other way, in nbgrader's formgrader, is taken in as an override at
the next grading run (adopt), for the notebook it was given on: it is not lost, and it is not
kept for a resubmission in silence.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from grader import report, reuse
from grader.errors import UsageError
from grader.model import Assignment, Deadlines, Manual, Result

FILE = "overrides.json"


def answers_digest(notebook: bytes, m: Assignment) -> str:
    """What the student wrote: every cell's type and source, less the cells the grader
    restores (the test and read-only cells, by their grade id). Outputs, metadata and
    execution counts do not count: running the notebook again changes no answer."""
    restored = {gid for gid, cell in m.released.items()
                if not (cell.metadata.get("nbgrader") or {}).get("solution")}
    try:
        cells = json.loads(notebook)["cells"]
        kept = []
        for cell in cells:
            meta = (cell.get("metadata") or {}).get("nbgrader") or {}
            if isinstance(meta, dict) and meta.get("grade_id") in restored:
                continue
            source = cell.get("source", "")
            kept.append([str(cell.get("cell_type")),
                         "".join(source) if isinstance(source, list) else str(source)])
    except Exception:  # not a notebook as we know one: its bytes are its answers
        return hashlib.sha256(notebook).hexdigest()
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()


def load(build: Path) -> dict:
    """student/assignment -> cell -> {"points", "note", "answers", "set"}."""
    try:
        data = json.loads((build / FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(build: Path, data: dict) -> None:
    data = {k: v for k, v in sorted(data.items()) if v}
    reuse.write_atomic(build / FILE, json.dumps(data, indent=1, sort_keys=True) + "\n")


def key(student: str, assignment: str) -> str:
    return f"{student}/{assignment}"


def held(entry: dict) -> Manual:
    """An entry of overrides.json as the score it sets."""
    return Manual(float(entry["points"]), entry["note"])


def apply(build: Path, result: Result, answers: str) -> None:
    """At grading: the overrides of this submission that still hold go into result.manual;
    those given for other answers are dropped, and the row says so."""
    data = load(build)
    entries = data.get(key(result.student, result.assignment)) or {}
    kept = {}
    for cell, entry in sorted(entries.items()):
        if entry.get("answers") == answers and cell in result.cells:
            kept[cell] = entry
            result.manual[cell] = held(entry)
        else:
            result.detail.append(
                f"{cell}: the instructor's {report.fmt(entry['points'])} points "
                f"({entry['note']}) were dropped: the answers changed since they were given")
    if kept != entries:
        save(build, {**data, key(result.student, result.assignment): kept})


def adopt(build: Path, model: dict[str, Assignment], rules: Deadlines) -> list[str]:
    """Manual scores in the gradebook that no override holds (set in nbgrader's formgrader):
    taken in as overrides of the notebook they were given on, their rows and pages rewritten.
    Returns what was taken."""
    from nbgrader.api import Gradebook

    from grader.gradebook import stored_result
    from grader.paths import gradebook_url

    data, taken = load(build), []
    with Gradebook(gradebook_url(build)) as gb:
        for a in model:
            for sub in gb.find_assignment(a).submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        entries = data.get(key(sub.student.id, a), {})
                        if g.manual_score is None or g.name in entries:
                            continue
                        previous = stored_result(build, sub.student.id, a)
                        entries[g.name] = {
                            "points": g.manual_score, "note": "set in nbgrader's formgrader",
                            "answers": previous.answers if previous else "", "set": _now()}
                        data[key(sub.student.id, a)] = entries
                        taken.append((sub.student.id, a, g.name))
    if taken:
        save(build, data)
        for student, a in sorted({(s, a) for s, a, _ in taken}):
            refresh(build, model, rules, student, a)
    return [f"{s} {a} {cell}" for s, a, cell in taken]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def override(course: Path, build: Path, student: str, assignment: str, cell: str,
             points: str | None, note: str, clear: bool = False) -> int:
    from grader import export, gradebook, late
    from grader.course import course_model, load_config
    from grader.paths import show

    if not (build / "gradebook.db").exists():
        raise UsageError(f"override: no gradebook in {show(build)}; run `make grade` first")
    cfg = load_config(course, build)
    model = course_model(course, build)
    if assignment not in model:
        raise UsageError(f"override: ASSIGNMENT={assignment!r} is none of the course's: "
                         f"{', '.join(sorted(model))}")
    m = model[assignment]
    if cell not in m.points:
        raise UsageError(f"override: CELL={cell!r} is no test cell of {assignment}; its test "
                         f"cells are: {', '.join(g for g in m.tests if m.points.get(g))}")
    result = gradebook.stored_result(build, student, assignment)
    if result is None or (student, assignment) not in gradebook.graded(build, model):
        raise UsageError(f"override: {report.escape_text(student)} has no graded submission "
                         f"of {assignment} in {show(build)}; `make grade` grades it first")
    data = load(build)
    entries = data.setdefault(key(student, assignment), {})
    if clear:
        if entries.pop(cell, None) is None:
            raise UsageError(f"override: {cell} of {report.escape_text(student)} "
                             f"{assignment} has no override to clear")
    else:
        try:
            value = float(points or "")
        except ValueError:
            raise UsageError(f"override: POINTS={points!r} is no number; give 0 to "
                             f"{report.fmt(m.points[cell])}") from None
        if not 0 <= value <= m.points[cell]:
            raise UsageError(f"override: POINTS={points} is outside 0 to "
                             f"{report.fmt(m.points[cell])}, what {cell} is worth")
        if not note.strip():
            raise UsageError('override: NOTE="..." is required: the reason, which the row '
                             "and the student's page show")
        entries[cell] = {"points": value, "note": " ".join(note.split()),
                         "answers": result.answers, "set": _now()}
    save(build, data)
    refresh(build, model, late.settings(cfg), student, assignment)
    rows = gradebook.rows(build, model)
    report.write_csv(build / "grades.csv", rows, gradebook.exercises(model))
    row = next(r for r in rows if (r.student, r.assignment) == (student, assignment))
    print(f"override: {report.escape_text(student)} {assignment} {cell}: "
          f"{'cleared' if clear else report.fmt(entries[cell]['points']) + ' points'}; "
          f"score {row.score}/{row.max_score} in {show(build / 'grades.csv')} and on the "
          "feedback page", flush=True)
    for lms, roster in export.written(build).items():
        try:
            export.export(course, build, lms, Path(roster))
        except UsageError as e:
            print(f"override: {lms} export not rewritten: {e}", flush=True)
    return 0


def refresh(build: Path, model: dict[str, Assignment], rules: Deadlines, student: str,
            assignment: str) -> None:
    """One graded submission again, without a grading run: its scores as the gradebook has
    them with the overrides now held, its penalty, its page, its gradebook entry and result.
    Its fingerprint is away meanwhile: stopped half-way, the next `make grade` grades it."""
    from nbgrader.api import Gradebook

    from grader import gradebook, late
    from grader.paths import gradebook_url

    m = model[assignment]
    result = gradebook.stored_result(build, student, assignment)
    with Gradebook(gradebook_url(build)) as gb:
        nb = gb.find_submission_notebook(m.notebook, assignment, student)
        auto = {g.name: g.auto_score or 0.0 for g in nb.grades}
    entries = load(build).get(key(student, assignment)) or {}
    result.cells = {g: auto.get(g, 0.0) for g in m.points}
    result.manual = {c: held(e) for c, e in entries.items() if c in m.points}
    timestamp = result.late.timestamp if result.late else None
    result.late = late.assess(rules, assignment,
                              timestamp and datetime.fromisoformat(timestamp), result.score)
    fingerprint = reuse.stored(build, student, assignment)
    reuse.forget(build, student, assignment)
    rerender(build, result, m)
    gradebook.record(build, [result], model)
    if fingerprint:
        reuse.remember(build, student, assignment, fingerprint)


def rerender(build: Path, result: Result, m: Assignment) -> None:
    """The student's feedback page again, from the notebook as it ran, with the scores now."""
    from grader.job import add_feedback

    where = build / "feedback" / result.student / result.assignment / f"{m.notebook}.html"
    notebook = build / "autograded" / result.student / result.assignment / f"{m.notebook}.ipynb"
    if notebook.exists():
        result.autograded = notebook.read_text(encoding="utf-8")
        add_feedback(m, result)
        result.autograded = None
    else:
        result.feedback = report.feedback_stub(result, m)
    where.parent.mkdir(parents=True, exist_ok=True)
    reuse.write_atomic(where, result.feedback)
