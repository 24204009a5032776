"""`make collect LMS=canvas|moodle ZIP=<download> ROSTER=<csv>`: an LMS's submission download
(its zip, or a folder of its files) into submitted/<student>/<assignment>/<assignment>.ipynb.

Each file of the download is judged on its own and gets a row of the report
(BUILD/collect-report.csv, and a summary printed): `collected` (new, updated, or unchanged
and not rewritten), `older resubmission` (another notebook of the same student and
assignment is newer), `not a notebook`, `unknown student`, `unknown assignment`, or
`rejected` (a link, a path leaving the download, over 50 MB, unreadable). The student comes
from the LMS's id in the file's name (grader/lms.py's rules), looked up in the roster; the
assignment from the notebook itself: the released cells it carries (grade id with the
released source, or nbgrader's checksum of it), so a renamed file or another framework's
notebook under a misleading name lands where it belongs. The newest of several notebooks
wins: on Canvas the highest file id, on Moodle the latest time in the zip, then the name.

Where this is not nbgrader's zip_collect, and why: its extractor unpacks every archive to
disk (tar and nested zips included) before looking, following whatever the archive says;
here a member is read from the zip into memory, at most 50 MB of it, and its name is never
used as a path: what is written goes to a path made of the roster's id and the
assignment's name alone. Its collector plugin serves as is (grader/lms.py). zip_collect
also clears its target first; here submitted/ is updated: a file whose bytes are the same is
not rewritten, students and assignments absent from the download stay as they were (an
earlier submission to one of the download's assignments that the download lacks is named
in the summary: the LMS may no longer hold it). The download is opened read-only.

Time: no LMS download carries a hand-in time. Moodle's grading worksheet does, as its user
sees it (their time zone, their language's date format): with c.LMSCollect.timezone set and
the worksheet as the roster, each collected submission's timestamp.txt is written from it
(English dates). Otherwise no timestamp.txt is written (one already there stays). Canvas
marks a late submission in the file's name; that is written as `lms-late.txt` beside the
notebook, which the grader shows in the row's detail (late.py), without a penalty: the mark
says late, not how late.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from grader import lms
from grader.collect import MAX_NOTEBOOK_BYTES, read_regular_file, safe_id
from grader.errors import UsageError
from grader.late import LATE_MARKER
from grader.model import Assignment
from grader.paths import show

REPORT = "collect-report.csv"
MAX_DEPTH = 16
FOLDER_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


@dataclass
class Member:
    """One file of the download: its name inside it, how to read it, what is wrong."""

    name: str
    read: Callable[[], bytes] | None = None
    mtime: float = 0.0
    problem: str = ""


@dataclass
class Row:
    member: str
    outcome: str
    student: str = ""
    assignment: str = ""
    detail: str = ""
    order: tuple = ()
    late: bool = False
    submitted: str = ""  # the hand-in time as the LMS's roster shows it (Moodle's worksheet)
    data_of: Callable[[], bytes] | None = field(default=None, repr=False)


def _read_limited(f) -> bytes:
    data = f.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    return data


def _unsafe(name: str) -> str:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in parts:
        return "a path leaving the download (..)"
    return ""


def zip_members(zf: zipfile.ZipFile) -> list[Member]:
    found = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        m = Member(info.filename)
        try:
            m.mtime = datetime(*info.date_time).timestamp()
        except ValueError:
            pass
        if stat.S_ISLNK(info.external_attr >> 16):
            m.problem = "a symbolic link; links are not followed"
        elif _unsafe(info.filename):
            m.problem = _unsafe(info.filename)
        elif info.file_size > MAX_NOTEBOOK_BYTES:
            m.problem = f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
        else:
            def read(info=info):
                with zf.open(info) as f:  # the size the header claims is not trusted
                    return _read_limited(f)
            m.read = read
        found.append(m)
    return found


def folder_members(root: Path) -> list[Member]:
    """The files of an unpacked download, read as collect.py reads submissions."""
    found = []

    def walk(folder: Path, prefix: str, depth: int):
        with os.scandir(os.fsencode(folder)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = prefix + os.fsdecode(e.name)
            path = os.fsdecode(e.path)
            if e.is_symlink():
                found.append(Member(name, problem="a symbolic link; links are not followed"))
            elif e.is_dir(follow_symlinks=False):
                if depth >= MAX_DEPTH:
                    found.append(Member(name + "/", problem="folders nested too deep"))
                else:
                    walk(Path(path), name + "/", depth + 1)
            elif e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                m = Member(name, mtime=st.st_mtime)
                if st.st_size > MAX_NOTEBOOK_BYTES:
                    m.problem = f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
                else:
                    m.read = lambda path=path: read_regular_file(path)
                found.append(m)
            else:
                found.append(Member(name, problem="not a regular file"))

    walk(root, "", 0)
    return found


def identify(nb: dict, model: dict[str, Assignment]) -> tuple[str | None, str]:
    """(the assignment, '') or (None, why): the released assignment whose cells the notebook
    carries most of, by grade id with the released source or nbgrader's checksum."""
    cells = nb.get("cells")
    if not isinstance(cells, list):
        return None, "no cells"
    counts = dict.fromkeys(model, 0)
    any_graded = False
    for cell in cells:
        meta = cell.get("metadata") if isinstance(cell, dict) else None
        nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
        gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
        if not isinstance(gid, str):
            continue
        any_graded = True
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        for name, a in model.items():
            released = a.released.get(gid)
            if released is None:
                continue
            checksum = (released.metadata.get("nbgrader") or {}).get("checksum")
            if source == released.source or (checksum and nbg.get("checksum") == checksum):
                counts[name] += 1
    best = max(counts.values(), default=0)
    winners = sorted(a for a, n in counts.items() if n == best)
    if not any_graded:
        return None, "no nbgrader cells: not a notebook of this course"
    if best == 0:
        return None, "its nbgrader cells match no released assignment"
    if len(winners) > 1:
        return None, f"matches {' and '.join(winners)} equally"
    return winners[0], ""


def _find_person(roster: lms.Roster, lms_name: str, found: dict) -> tuple[lms.Person | None,
                                                                          str]:
    uid = found.get("student_id", "")
    if uid.lower().startswith("anon_"):
        return None, "anonymous grading: Canvas does not say whose file this is"
    keys = {"canvas": ("canvas_id", "lms_user_id"),
            "moodle": ("participant", "lms_user_id")}[lms_name]
    for key in keys:
        person = roster.by(key).get(uid)
        if person:
            return person, ""
    if lms_name == "moodle" and not any(roster.by(k) for k in keys):
        # A roster without participant ids (Moodle's grade export): the folder's full name.
        shown = " ".join(found.get("first_name", "").split()).casefold()
        same = [p for p in roster.people if " ".join(p.name.split()).casefold() == shown]
        if len(same) == 1:
            return same[0], ""
        if len(same) > 1:
            return None, f"{len(same)} students of the roster are called so"
    what = {"canvas": "Canvas user", "moodle": "Moodle participant"}[lms_name]
    return None, f"{what} {uid} is not on the roster"


def judge(members: list[Member], lms_name: str, roster: lms.Roster,
          model: dict[str, Assignment]) -> list[Row]:
    plugin = lms.collector(lms_name)
    rows = []
    for m in members:
        shown = safe_id(m.name)
        if m.problem:
            rows.append(Row(shown, "rejected", detail=m.problem))
            continue
        found = lms.parse_name(plugin, m.name)
        if not m.name.endswith(".ipynb"):
            rows.append(Row(shown, "not a notebook", detail="not an .ipynb file"))
            continue
        if found is None:
            rows.append(Row(shown, "unknown student",
                            detail=f"the name does not follow {lms_name.title()}'s rule"))
            continue
        person, why = _find_person(roster, lms_name, found)
        if person is None:
            rows.append(Row(shown, "unknown student", detail=why))
            continue
        try:
            data = m.read()
        except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, zlib.error,
                NotImplementedError, EOFError) as e:
            rows.append(Row(shown, "rejected", person.student, detail=f"unreadable: {e}"))
            continue
        try:
            nb = json.loads(data.decode("utf-8"))
            if not isinstance(nb, dict):
                raise ValueError
        except (UnicodeDecodeError, ValueError, RecursionError):
            rows.append(Row(shown, "not a notebook", person.student,
                            detail="not notebook JSON"))
            continue
        assignment, why = identify(nb, model)
        if assignment is None:
            rows.append(Row(shown, "unknown assignment", person.student, detail=why))
            continue
        order = ((int(found.get("attachment", 0)), m.name) if lms_name == "canvas"
                 else (m.mtime, m.name))
        rows.append(Row(shown, "collected", person.student, assignment, order=order,
                        late=bool(found.get("late")), data_of=m.read,
                        submitted=person.ids.get("submitted", "")))
    by_key: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.outcome == "collected":
            by_key.setdefault((r.student, r.assignment), []).append(r)
    for group in by_key.values():
        group.sort(key=lambda r: r.order)
        for older in group[:-1]:
            older.outcome = "older resubmission"
            older.detail = f"{group[-1].member} is newer"
    return rows


def _checked_dir(path: Path) -> None:
    """`path` as a real folder (made if missing): never a link, never through one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir()
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{show(path)} is a symbolic link or not a folder")


def _write_if_changed(path: Path, data: bytes) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{show(path)} is a symbolic link or not a regular file")
        if st.st_size == len(data) and read_regular_file(str(path)) == data:
            return "unchanged"
    tmp = path.with_name(f".{path.name}.collect-tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "xb") as f:
        f.write(data)
    os.replace(tmp, path)
    return "new" if st is None else "updated"


def hand_in_time(r: Row, timezone: str) -> tuple[str | None, str]:
    """(timestamp.txt's text or None, what the report adds) for a collected row."""
    from datetime import UTC

    if not r.submitted or r.submitted.strip() == "-":
        return None, ""
    if not timezone:
        return None, "; the worksheet's hand-in time is not written (no c.LMSCollect.timezone)"
    when = lms.moodle_time(r.submitted, timezone)
    if when is None:
        return None, f"; hand-in time {r.submitted!r} not read (English dates only)"
    text = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return text + "\n", f"; handed in {text} (timestamp.txt)"


def write(rows: list[Row], submitted: Path, model: dict[str, Assignment], lms_name: str,
          timezone: str = "") -> None:
    if submitted.is_symlink():
        raise UsageError(f"collect: {show(submitted)} is a symbolic link; give a real folder")
    submitted.mkdir(parents=True, exist_ok=True)
    for r in rows:
        if r.outcome != "collected":
            continue
        try:
            if not FOLDER_SAFE.match(r.student):
                raise ValueError(f"the roster's id {r.student!r} is no plain folder name")
            folder = submitted / r.student
            _checked_dir(folder)
            folder = folder / r.assignment
            _checked_dir(folder)
            data = r.data_of()
            r.detail = _write_if_changed(folder / f"{model[r.assignment].notebook}.ipynb", data)
            marker = folder / LATE_MARKER
            if r.late:
                _write_if_changed(marker, f"{lms_name}: marked late; no hand-in time\n".encode())
                r.detail += f"; marked late by {lms_name.title()} ({LATE_MARKER})"
            elif marker.is_file() and not marker.is_symlink():
                marker.unlink()  # the newer download says on time
            stamp, said = hand_in_time(r, timezone)
            if stamp:
                _write_if_changed(folder / "timestamp.txt", stamp.encode())
            r.detail += said
        except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, zlib.error) as e:
            r.outcome, r.detail = "rejected", f"could not write: {e}"


def collect(course: Path, build: Path, lms_name: str, download: Path, roster_path: Path,
            submitted: Path) -> int:
    from grader.course import course_model, release, source_digest

    if lms_name not in lms.LMSES:
        raise UsageError(f"collect: LMS={lms_name!r}; choose canvas or moodle")
    if not download.exists():
        raise UsageError(f"collect: no download at {download}; pass ZIP=<the LMS's zip, or "
                         "the folder it was unpacked to>")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from grader.config import LMSCollect, values
    from grader.course import load_config

    timezone = values(LMSCollect, load_config(course, build))["timezone"]
    try:
        timezone and ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"collect: c.LMSCollect.timezone = {timezone!r} is no time zone; "
                         "write e.g. 'Europe/Berlin' (your Moodle profile's)") from None
    roster = lms.read_roster(roster_path)
    stamp = build / "gradebook.digest"
    if not ((build / "gradebook.db").exists() and stamp.exists()
            and stamp.read_text().strip() == source_digest(course)):
        print("collect: the release is missing or older than the course's sources; "
              "running release first", flush=True)
        release(course, build, quiet=True)
    model = course_model(course, build)
    if download.is_dir() and not download.is_symlink():
        rows = judge(folder_members(download), lms_name, roster, model)
        write(rows, submitted, model, lms_name, timezone)
    else:
        try:
            zf = zipfile.ZipFile(download)  # mode "r": the download is never changed
        except (zipfile.BadZipFile, OSError) as e:
            raise UsageError(f"collect: {download} is no zip file it can read ({e})") from None
        with zf:
            rows = judge(zip_members(zf), lms_name, roster, model)
            write(rows, submitted, model, lms_name, timezone)
    _report(rows, build / REPORT, submitted)
    _say_kept(absent_from(rows, submitted), submitted)
    return 0


def absent_from(rows: list[Row], submitted: Path) -> list[str]:
    """student/assignment of the submissions in `submitted` to an assignment of this download
    that it holds no file for: they stay as they were, which the instructor should know. (A
    student with a file of the download, even one not collected, has that file's row.)"""
    present = {(r.student, r.assignment) for r in rows if r.student}
    unplaced = {student for student, assignment in present if not assignment}
    assignments = {a for _, a in present if a}
    return sorted(f"{safe_id(folder.parent.name)}/{folder.name}"
                  for folder in submitted.glob("*/*")
                  if folder.name in assignments and folder.is_dir() and not folder.is_symlink()
                  and (folder.parent.name, folder.name) not in present
                  and folder.parent.name not in unplaced)


def _say_kept(kept: list[str], submitted: Path) -> None:
    if kept:
        shown = ", ".join(kept[:10]) + (f" and {len(kept) - 10} more" if len(kept) > 10 else "")
        print(f"collect: {len(kept)} earlier submission(s) in {show(submitted)} are not in "
              f"this download and stay as they were: {shown} (delete a folder to drop it)")


def _report(rows: list[Row], out: Path, submitted: Path) -> None:
    from grader.report import csv_cell

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "outcome", "student", "assignment", "detail"])
        for r in rows:
            w.writerow([csv_cell(x) for x in (r.member, r.outcome, r.student, r.assignment,
                                               r.detail)])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    print(f"collect: {len(rows)} file(s): "
          + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) + f" -> {show(submitted)}")
    for r in rows:
        if r.outcome != "collected" or r.detail != "unchanged":
            where = f" -> {r.student}/{r.assignment}" if r.assignment else (
                f" ({r.student})" if r.student else "")
            print(f"  {r.outcome}: {r.member}{where}" + (f": {r.detail}" if r.detail else ""))
    print(f"collect: the report, a row per file: {show(out)}")
