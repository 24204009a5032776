"""The LMS's own files: rosters (Canvas's gradebook export, Moodle's grade export, a
hand-kept CSV), the file names of their submission downloads, and our student id.

Formats, as each LMS's source writes them (read in the LMSes' own code, the documentation
being thin on the details):

- Canvas gradebook export (Grades, Export; canvas-lms lib/gradebook_exporter.rb): a header
  `Student, ID, SIS User ID, SIS Login ID, [Integration ID], [Root Account], Section`, then
  custom columns, then one column per assignment titled `<name> (<assignment id>)`, then
  totals. `Student` is the sortable name ("Lovelace, Ada"; `LastName, FirstName` columns
  instead where the course shows first and last names). `SIS User ID` (and Integration ID,
  Root Account) only appear for users allowed to see SIS data; a school without a
  student-records system leaves SIS User ID empty, while SIS Login ID, the login, is always
  filled. Under the header may come a row with an empty first cell (assignments with manual
  posting), then `    Points Possible`; the Test Student comes last, as "Student, Test".
  Canvas's import (lib/gradebook_importer.rb) finds a student by ID, SIS User ID or SIS
  Login ID, and an assignment by the id in its column title, else by its name; an unknown
  title makes a new assignment.
- Canvas "Download Submissions" (canvas-lms lib/content_zipper.rb, get_filename and
  add_upload_submission): one zip of flat files named
  `<sortable name, lower case, non-word characters dropped>[_LATE]_<user id>_<file id>_<file
  name>`, `anon_<id>` for the user id under anonymous grading. Canvas renames a re-uploaded
  file of the same name with a `-1` suffix; file ids grow, so the highest is the newest.
  The download holds each student's current submission only, and no hand-in time: `LATE`
  (older Canvas: `late`) is all it says about time.
- Moodle "Download all submissions" (mod/assign/classes/downloader.php, get_student_prefix
  and load_submissionplugin_filelist): a folder per student and plugin,
  `<Full name>_<participant id>_assignsubmission_file` (`..._file_` before Moodle 4.1), the
  student's files inside; with "Download submissions in folders" off, flat files
  `<Full name>_<participant id>_assignsubmission_file_<file name>`. The participant id is
  the assignment's own id for the student (assign_user_mapping, what blind marking shows),
  not the Moodle user id; blind marking puts "Participant" for the name. The download holds
  each student's latest submission and no hand-in time or late marker.
- Moodle grade export (Grades, Export, Plain text file; grade/export/lib.php): the profile
  fields of $CFG->grade_export_userprofilefields, by default `First name, Last name, ID
  number, Institution, Department, Email address`, then one column per grade item. Moodle's
  participants page downloads a similar table (names, `Email address`, other identity
  fields such as `Username` or `ID number`). Moodle's CSV import (grade/import/csv) maps one
  column of the file to the users' user id, username, ID number or email address, and each
  other column to a grade item or a new one; the maximum grade comes from the grade item.
- nbgrader's zip_collect (nbgrader/plugins/zipcollect.py, "ZipCollect" in its docs): its
  FileNameCollectorPlugin matches a named regular expression (student_id, file_id) against
  a file's name; the rules below are such plugins, one per LMS.

Our student id, the folder under submitted/ and the gradebook's id, is derived from the
roster, so that collect and export agree: a hand-kept roster's `student`; from Canvas, the
SIS Login ID when it is a plain folder name (letters, digits, `. _ - @`, lower-cased),
else `canvas-<ID>`; from Moodle, the Email address (in every Moodle export by default),
else the Username, under the same rule, else `moodle-<ID number>`. Moodle's grading
worksheet of an assignment (Submissions, "Download grading worksheet") is read as a
roster too: its `Identifier` ("Participant 123") is the participant id of the download.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import UsageError

LMSES = ("canvas", "moodle")
HAND_KEPT = ("student", "name", "lms_id")
PLAIN_ID = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")
CANVAS_TITLE_ID = re.compile(r"^(?P<title>.*?)\s*\((?P<id>\d+)\)$")
# Moodle's grade export names a grade item `<Activity>: <name> (<display type>)`.
MOODLE_ITEM = re.compile(r"^(?:[^:]+:\s*)?(?P<title>.*?)\s*\((?:Real|Percentage|Letter)\)$")


@dataclass
class Person:
    """A student of the roster: our id, their name and section, and the LMS's ids of them
    (keys: canvas_id, sis_user_id, sis_login_id, moodle_idnumber, email, username,
    participant; a hand-kept roster's lms_id and lms_user_id)."""

    student: str
    name: str = ""
    section: str = ""
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Roster:
    path: Path
    kind: str  # "hand-kept", "canvas" or "moodle"
    people: list[Person]
    columns: dict[str, str] = field(default_factory=dict)  # assignment title -> LMS header

    def by(self, key: str) -> dict[str, Person]:
        return {p.ids[key]: p for p in self.people if p.ids.get(key)}


def plain_id(value: str) -> str | None:
    """`value` lower-cased if it is a plain, folder-safe id, else None."""
    value = value.strip().lower()
    return value if PLAIN_ID.match(value) and value not in (".", "..") else None


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise UsageError(f"no roster at {path}. Pass ROSTER=<csv>: the LMS's gradebook export "
                         "(Canvas), its grade export or participants list (Moodle), or a CSV "
                         f"with the columns {', '.join(HAND_KEPT)}[, section, lms_user_id]")
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig", "replace")
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise UsageError(f"{path} is empty")
    return [h.strip() for h in rows[0]], [[c.strip() for c in r] for r in rows[1:]]


def read_roster(path: Path) -> Roster:
    """The roster in whichever of the three forms it comes."""
    header, rows = _read_rows(path)
    if all(c in header for c in HAND_KEPT):
        roster = _hand_kept(path, header, rows)
    elif "SIS Login ID" in header and "ID" in header:
        roster = _canvas(path, header, rows)
    elif {"Email address", "Username", "ID number"} & set(header):
        roster = _moodle(path, header, rows)
    else:
        raise UsageError(
            f"{path}: a roster it cannot read; its header is {', '.join(header) or 'empty'}. "
            "Expected Canvas's gradebook export (Student, ID, SIS User ID, SIS Login ID, "
            "Section, ...), Moodle's grade export or participants list (First name, Last "
            "name, ID number, Email address, ...), or a CSV with the columns "
            f"{', '.join(HAND_KEPT)}[, section, lms_user_id]")
    seen: dict[str, int] = {}
    for p in roster.people:
        seen[p.student] = seen.get(p.student, 0) + 1
    twice = sorted(s for s, n in seen.items() if n > 1)
    if twice:
        raise UsageError(f"{path} lists {', '.join(twice)} twice")
    return roster


def _cells(header: list[str], row: list[str]) -> dict[str, str]:
    return {h: (row[i] if i < len(row) else "") for i, h in enumerate(header) if h}


def _hand_kept(path, header, rows) -> Roster:
    people = []
    for row in rows:
        if not any(row):
            continue
        c = _cells(header, row)
        ids = {"lms_id": c["lms_id"], "lms_user_id": c.get("lms_user_id", "")}
        people.append(Person(c["student"], c["name"], c.get("section", ""), ids))
    return Roster(path, "hand-kept", people)


def _canvas(path, header, rows) -> Roster:
    known = {"Student", "LastName", "FirstName", "ID", "SIS User ID", "SIS Login ID",
             "Integration ID", "Root Account", "Section"}
    columns = {}
    for h in header:
        m = CANVAS_TITLE_ID.match(h)
        if h not in known and m:
            columns[m.group("title")] = h
    people = []
    for row in rows:
        c = _cells(header, row)
        first = row[0] if row else ""
        if not first or first == "Points Possible" or not c.get("ID", "").isdigit():
            continue  # the manual-posting row, "    Points Possible" (stripped), blank lines
        name = c.get("Student") or ", ".join(x for x in (c.get("LastName"), c.get("FirstName"))
                                            if x)
        if name == "Student, Test":  # Canvas's Test Student (Student View)
            continue
        ids = {"canvas_id": c["ID"], "sis_user_id": c.get("SIS User ID", ""),
               "sis_login_id": c.get("SIS Login ID", "")}
        student = plain_id(ids["sis_login_id"]) or f"canvas-{ids['canvas_id']}"
        people.append(Person(student, name, c.get("Section", ""), ids))
    return Roster(path, "canvas", people, columns)


def _moodle(path, header, rows) -> Roster:
    columns = {}
    for h in header:
        m = MOODLE_ITEM.match(h)
        if m:
            columns[m.group("title")] = h
    people = []
    for row in rows:
        if not any(row):
            continue
        c = _cells(header, row)
        ids = {"moodle_idnumber": c.get("ID number", ""), "email": c.get("Email address", ""),
               "username": c.get("Username", "")}
        participant = re.match(r"^\D*(\d+)$", c.get("Identifier", ""))  # grading worksheet
        if participant:
            ids["participant"] = participant.group(1)
        if c.get("Last modified (submission)"):  # the worksheet's hand-in time, as shown
            ids["submitted"] = c["Last modified (submission)"]
        student = (plain_id(ids["email"]) or plain_id(ids["username"])
                   or (f"moodle-{ids['moodle_idnumber']}"
                       if plain_id(ids["moodle_idnumber"]) else None))
        name = " ".join(x for x in (c.get("First name"), c.get("Last name")) if x) \
            or c.get("Full name", "")
        if student is None:
            raise UsageError(f"{path}: {name or row!r} has no Username, Email address or ID "
                             "number to be known by; export the roster with one of them")
        people.append(Person(student, name, c.get("Group", c.get("Groups", "")), ids))
    return Roster(path, "moodle", people, columns)


# Moodle's grading worksheet writes times as its user sees them: in that user's time zone,
# with the language pack's strftimedatetime (English: "%A, %d %B %Y, %I:%M %p"); "-" when
# there is none. Times in other languages are not read (collect says so).
MOODLE_TIMES = ("%A, %d %B %Y, %I:%M %p", "%A, %d %B %Y, %H:%M")


def moodle_time(text: str, timezone: str):
    """A worksheet's time as an aware datetime, or None (no time, or not English)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    for fmt in MOODLE_TIMES:
        try:
            return datetime.strptime(" ".join(text.split()), fmt).replace(
                tzinfo=ZoneInfo(timezone))
        except ValueError:
            continue
    return None


# --- file names of the submission downloads: nbgrader zip_collect collector plugins ---

# Canvas: get_filename + add_upload_submission of lib/content_zipper.rb (see above).
CANVAS_NAME = (r"^(?:(?P<last_name>[^/]*?)_)??(?:(?P<late>late)_)?"
               r"(?P<student_id>\d+|anon_[a-z0-9]+)_(?P<attachment>\d+)_(?P<file_id>[^/]+)$")
# Moodle: downloader.php, with folders (4.1+, and older with a trailing _) or flat.
MOODLE_NAME = (r"^(?P<first_name>[^/]*)_(?P<student_id>\d+)_assignsubmission_(?P<plugin>[a-z]+)"
               r"(?:_/|/|_)(?P<file_id>.+)$")
RULES = {"canvas": CANVAS_NAME, "moodle": MOODLE_NAME}


def collector(lms: str):
    """nbgrader zip_collect's FileNameCollectorPlugin with the LMS's rule: `collect(name)`
    gives the named groups (student_id: the LMS's id; file_id: the student's file name;
    late, attachment) of a notebook whose name follows the rule, None for any other file.
    It is given the member's path inside the download, never where the download lies
    (zip_collect matched the whole path, so a folder's name could decide)."""
    from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

    quiet = logging.getLogger("grader.lms.collector")  # it warns on every name that fails
    quiet.propagate, quiet.handlers = False, [logging.NullHandler()]
    return FileNameCollectorPlugin(named_regexp="(?is)" + RULES[lms], valid_ext=[".ipynb"],
                                   log=quiet)


def parse_name(plugin, member: str) -> dict | None:
    found = plugin.collect(member)
    return None if found is None else {k: v for k, v in found.items() if v is not None}
