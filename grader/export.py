"""`make export LMS=canvas|moodle ROSTER=roster.csv`: grades in the form an LMS imports.

The roster is a CSV the instructor keeps, with columns `student` (our id: the submission
folder's name), `name`, `lms_id` (what the LMS matches students on: Canvas's SIS User ID,
Moodle's ID number) and optionally `section`. The grades are the gradebook's, after late
penalties: one column per assignment. Students on only one side are listed, never dropped
in silence: a roster student without grades gets empty cells (the LMS leaves those grades
as they are); a graded student missing from the roster cannot be exported and is named.

Formats, as each LMS documents its gradebook import:
- Canvas ("How do I import grades in the Gradebook?"): columns Student, ID, SIS User ID,
  SIS Login ID, Section, then one per assignment, named as the assignment; a second row,
  "    Points Possible", holds each assignment's points. Canvas matches on SIS User ID.
- Moodle ("Grade import", CSV): a header row, an identifier column (ID number, which the
  import maps to the users' ID number field) and one column per grade item; Moodle takes
  the maximum grade from the grade item, so the file has no points row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from grader import gradebook, report
from grader.course import course_model, load_config
from grader.errors import UsageError
from grader.paths import show

ROSTER_COLUMNS = ("student", "name", "lms_id")


def read_roster(path: Path) -> list[dict]:
    if not path.is_file():
        raise UsageError(f"export: no roster at {path}. Pass ROSTER=<csv> with the columns "
                         f"{', '.join(ROSTER_COLUMNS)} and optionally section.")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in ROSTER_COLUMNS if c not in fields]
        if missing:
            raise UsageError(f"export: {path} lacks the column(s) {', '.join(missing)}; its "
                             f"header is {', '.join(fields) or 'empty'}. Expected: "
                             f"{', '.join(ROSTER_COLUMNS)}[, section]")
        people = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    seen, duplicates = set(), []
    for p in people:
        if p["student"] in seen:
            duplicates.append(p["student"])
        seen.add(p["student"])
    if duplicates:
        raise UsageError(f"export: {path} lists {', '.join(sorted(set(duplicates)))} twice")
    return people


def export(course: Path, build: Path, lms: str, roster_path: Path) -> int:
    if lms not in ("canvas", "moodle"):
        raise UsageError(f"export: LMS={lms!r}; choose canvas or moodle")
    if not (build / "gradebook.db").exists():
        raise UsageError(f"export: no gradebook in {show(build)}; run `make grade` first")
    load_config(course, build)
    model = course_model(course, build)
    roster = read_roster(roster_path)
    assignments = sorted(model)
    scores: dict[str, dict[str, str]] = {}
    known = set()  # every student of the gradebook, graded or not
    for row in gradebook.rows(build, model):
        known.add(row["student"])
        if row["assignment"] in model:
            scores.setdefault(row["student"], {})[row["assignment"]] = row["score"]
    on_roster = {p["student"] for p in roster}
    unlisted = sorted(known - on_roster)
    ungraded = sorted(on_roster - set(scores))
    out = build / f"grades-{lms}.csv"
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if lms == "canvas":
            writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                             *assignments])
            writer.writerow(["    Points Possible", "", "", "", "",
                             *(report.fmt(model[a].max_score) for a in assignments)])
            for p in roster:
                writer.writerow([_text(p["name"]), "", _text(p["lms_id"]), "",
                                 _text(p.get("section", "")),
                                 *(scores.get(p["student"], {}).get(a, "") for a in assignments)])
        else:
            writer.writerow(["ID number", "Full name", "Section", *assignments])
            for p in roster:
                writer.writerow([_text(p["lms_id"]), _text(p["name"]),
                                 _text(p.get("section", "")),
                                 *(scores.get(p["student"], {}).get(a, "") for a in assignments)])
    print(f"export: {len(roster)} student(s) of the roster, {len(assignments)} assignment(s) "
          f"-> {show(out)}")
    if ungraded:
        print(f"export: on the roster but never graded (their cells are empty, the LMS keeps "
              f"what it has): {', '.join(map(report.escape_text, ungraded))}")
    if unlisted:
        print(f"export: WARNING: in the gradebook but not on the roster, so not in the file "
              f"(add them to {roster_path.name}): "
              f"{', '.join(map(report.escape_text, unlisted))}")
    return 0


def _text(value: str) -> str:
    """A roster field as a CSV cell: printable, and never read as a formula."""
    return report.csv_cell(value)
