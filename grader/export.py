"""`make export LMS=canvas|moodle ROSTER=<csv>`: grades in the form an LMS imports.

The roster is the LMS's own export, read as it comes (grader/lms.py): Canvas's gradebook
export, Moodle's grade export, participants list or grading worksheet; or a CSV kept by
hand with the columns `student` (our id), `name`, `lms_id` (Canvas's SIS User ID, Moodle's
ID number), optionally `section` and `lms_user_id` (the LMS's own user id, which `make
collect` matches file names on). Our student id comes from the roster by the rule
grader/lms.py states, so the students `make collect` filed are the ones matched here.

The grades are the gradebook's, after late penalties: one column per assignment, or, with
`c.LMSExport.columns = "combined"`, one column for the homework (`combined_title`): the
best of the assignments a student handed in, or their mean (`combined_score`), so that
Canvas does not make four assignments of one homework. Where the roster is an export
holding a column of that title (Canvas: `<title> (<assignment id>)`), its header is reused,
so the LMS matches the existing assignment. Students on only one side are listed, never
dropped in silence: a roster student without grades gets empty cells (the LMS leaves those
grades as they are); a graded student missing from the roster cannot be exported and is
named.

Formats, as each LMS reads them (grader/lms.py cites the sources):
- Canvas: `Student, ID, SIS User ID, SIS Login ID, Section`, then the grade columns; a
  second row, `    Points Possible`, holds their points. Canvas finds a student by ID, SIS
  User ID or SIS Login ID; each is filled where the roster gave it.
- Moodle: `ID number, Email address, Full name, Section`, then the grade columns; the import form
  maps ID number or Email address to the users' field. Moodle takes the maximum grade from
  the grade item, so the file has no points row.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from grader import gradebook, lms, report
from grader.config import LMSExport, values
from grader.course import course_model, load_config
from grader.errors import UsageError
from grader.paths import show


def grade_columns(model, settings: dict, scores: dict[str, dict[str, str]],
                  headers: dict[str, str]) -> tuple[list[str], list[str], dict]:
    """(the LMS's column headers, their points, each student's cells by header)."""
    names = sorted(model)
    if settings["columns"] == "per_assignment":
        heads = [headers.get(a, a) for a in names]
        points = [report.fmt(model[a].max_score) for a in names]
        cells = {s: {headers.get(a, a): v for a, v in got.items()} for s, got in scores.items()}
        return heads, points, cells
    maxima = {model[a].max_score for a in names}
    if len(maxima) != 1:
        raise UsageError("export: c.LMSExport.columns = 'combined' needs assignments of "
                         f"equal points; they have {sorted(maxima)}")
    title = settings["combined_title"]
    head = headers.get(title, title)
    cells = {}
    for student, got in scores.items():
        numbers = [float(v) for v in got.values() if v != ""]
        if numbers:
            value = max(numbers) if settings["combined_score"] == "best" else \
                sum(numbers) / len(numbers)
            cells[student] = {head: report.fmt(value)}
    return [head], [report.fmt(maxima.pop())], cells


def export(course: Path, build: Path, lms_name: str, roster_path: Path) -> int:
    if lms_name not in lms.LMSES:
        raise UsageError(f"export: LMS={lms_name!r}; choose canvas or moodle")
    if not (build / "gradebook.db").exists():
        raise UsageError(f"export: no gradebook in {show(build)}; run `make grade` first")
    settings = values(LMSExport, load_config(course, build))
    model = course_model(course, build)
    try:
        roster = lms.read_roster(roster_path)
    except UsageError as e:
        raise UsageError(f"export: {e}") from None
    scores: dict[str, dict[str, str]] = {}
    known = set()  # every student of the gradebook, graded or not
    for row in gradebook.rows(build, model):
        known.add(row.student)
        if row.assignment in model:
            scores.setdefault(row.student, {})[row.assignment] = row.score
    headers = roster.columns if roster.kind == lms_name else {}
    heads, points, cells = grade_columns(model, settings, scores, headers)
    on_roster = {p.student for p in roster.people}
    unlisted = sorted(known - on_roster)
    ungraded = sorted(on_roster - set(scores))
    out = build / f"grades-{lms_name}.csv"
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if lms_name == "canvas":
            writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *heads])
            writer.writerow(["    Points Possible", "", "", "", "", *points])
            for p in roster.people:
                ids = p.ids
                writer.writerow([_text(p.name), _text(ids.get("canvas_id")
                                                      or ids.get("lms_user_id", "")),
                                 _text(ids.get("sis_user_id") or ids.get("lms_id", "")),
                                 _text(ids.get("sis_login_id", "")), _text(p.section),
                                 *(cells.get(p.student, {}).get(h, "") for h in heads)])
        else:
            writer.writerow(["ID number", "Email address", "Full name", "Section", *heads])
            for p in roster.people:
                ids = p.ids
                writer.writerow([_text(ids.get("moodle_idnumber") or ids.get("lms_id", "")),
                                 _text(ids.get("email", "")), _text(p.name), _text(p.section),
                                 *(cells.get(p.student, {}).get(h, "") for h in heads)])
    print(f"export: {len(roster.people)} student(s) of the {roster.kind} roster, "
          f"{len(heads)} column(s) -> {show(out)}")
    if ungraded:
        print(f"export: on the roster but never graded (their cells are empty, the LMS keeps "
              f"what it has): {', '.join(map(report.escape_text, ungraded))}")
    if unlisted:
        print(f"export: WARNING: in the gradebook but not on the roster, so not in the file "
              f"(add them to {roster_path.name}): "
              f"{', '.join(map(report.escape_text, unlisted))}")
    remember(build, lms_name, roster_path)
    return 0


WRITTEN = "exports.json"  # each LMS's last export and its roster: `make override` redoes them


def remember(build: Path, lms_name: str, roster_path: Path) -> None:
    from grader.reuse import write_atomic

    done = {**written(build), lms_name: str(roster_path.resolve())}
    write_atomic(build / WRITTEN, json.dumps(done, indent=1, sort_keys=True) + "\n")


def written(build: Path) -> dict[str, str]:
    """LMS -> the roster its export was last written with."""
    try:
        done = json.loads((build / WRITTEN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in done.items() if k in lms.LMSES and isinstance(v, str)} \
        if isinstance(done, dict) else {}


def _text(value: str) -> str:
    """A roster field as a CSV cell: printable, and never read as a formula."""
    return report.csv_cell(value)
