"""The LMS's files as each LMS writes them, for the tests that read them: test_lms.py (no
kernel) and test_grading_course.py's round trip (collect, grade, export, as the guide says).
Each format's source is named beside it; grader/lms.py's docstring has the details."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

# Canvas's gradebook export (lib/gradebook_exporter.rb): the manual-posting row, the
# points row, no SIS User IDs (no student-records system), the Test Student last.
CANVAS_ROSTER = """\
Student,ID,SIS User ID,SIS Login ID,Section,Lazy initialization (4242),Current Points,\
Final Points,Current Score,Unposted Current Score,Final Score,Unposted Final Score
,,,,,Manual Posting,,,,,,
    Points Possible,,,,,15.00,(read only),(read only),(read only),(read only),\
(read only),(read only)
"Doe, John",12345,,jdoe,Section A,,0.00,0.00,,,,
"Lovelace, Ada",23456,,ada@uni.example,Section A,,0.00,0.00,,,,
"O'Brien, Pat",34567,,Pat O'Brien,Section B,,0.00,0.00,,,,
"Student, Test",99999,,a1b2c3testid,Section A,,0.00,0.00,,,,
"""
# Moodle's grade export, plain text (grade/export/lib.php's default profile fields).
MOODLE_ROSTER = """\
First name,Last name,ID number,Institution,Department,Email address,\
Assignment: Lazy initialization (Real),Course total (Real),Last downloaded from this course
Ada,Lovelace,S001,,,Ada@Uni.example,-,-,1767225600
John,Doe,S002,,,jdoe@uni.example,-,-,1767225600
"""
# Moodle's grading worksheet of the assignment (offline grading): participant ids.
MOODLE_WORKSHEET = """\
Identifier,Full name,Email address,Status,Grade,Maximum Grade,Grade can be changed,\
Last modified (submission),Last modified (grade),Feedback comments
Participant 501,Ada Lovelace,ada@uni.example,Submitted for grading,,15.00,Yes,\
"Tuesday, 1 December 2026, 6:30 PM",-,
Participant 502,John Doe,jdoe@uni.example,Submitted for grading,,15.00,Yes,\
"Monday, 30 November 2026, 9:00 AM",-,
"""



def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None
             ) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():  # a symbolic link, as Info-ZIP stores one
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


