"""Deadlines: a due date per assignment, a submission's timestamp, and the penalty for lateness.

The due dates and the penalty live in the course's nbgrader_config.py:

    c.GradingDeadlines.due = {"lazy-init-pytorch": "2026-12-01 17:00:00 Europe/Berlin"}
    c.GradingDeadlines.penalty = "per_hour"   # or "per_day", or "none" (the default)
    c.GradingDeadlines.points = 1             # points taken per started hour (or day)

A submission's time is nbgrader's convention, a `timestamp.txt` in its assignment folder
(nbgrader collect writes one); a submission without one is on time. An LMS that marks a
submission late without saying when (Canvas's download) leaves `lms-late.txt` there instead
(grader/lms_collect.py): the row's detail says so, and no penalty is taken. As nbgrader's
late-submission plugins do, the penalty is computed from the seconds late and the score
earned, and never takes the score below zero; it is stored in the gradebook as the
notebook's late_submission_penalty, so nbgrader's own feedback and export show it too.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

from grader import collect
from grader.config import PERIODS, GradingDeadlines, values
from grader.errors import UsageError
from grader.model import Deadlines, Lateness

MAX_TIMESTAMP_BYTES = 1024
LATE_MARKER = "lms-late.txt"  # written by `make collect` where the LMS gives no time


def settings(cfg) -> Deadlines:
    """c.GradingDeadlines (grader/config.py) with its due dates parsed."""
    from nbgrader.utils import parse_utc

    d = values(GradingDeadlines, cfg)
    due = {}
    for assignment, text in d["due"].items():
        try:
            due[assignment] = parse_utc(text)
        except Exception as e:
            raise UsageError(f"c.GradingDeadlines.due[{assignment!r}] = {text!r} is no date "
                             f"nbgrader can read ({e}); write e.g. '2026-12-01 17:00:00 UTC'") \
                from None
    return Deadlines(due=due, penalty=d["penalty"], points=d["points"])


def read_timestamp(folder: str):
    """(the submission's time or None, a problem or None) from folder/timestamp.txt.

    Read like a notebook: no link followed, a regular file, a few bytes at most.
    """
    from nbgrader.utils import parse_utc

    try:
        data = collect.read_regular_file(os.path.join(folder, "timestamp.txt"),
                                         MAX_TIMESTAMP_BYTES)
    except FileNotFoundError:
        if os.path.isfile(os.path.join(folder, LATE_MARKER)):
            return None, ("the LMS marked it late, without a hand-in time: no penalty "
                          "(a timestamp.txt beside it would set one)")
        return None, None
    except (OSError, ValueError):  # a link, a FIFO, a folder, too large
        return None, "timestamp.txt is not a small regular file; counted as on time"
    text = data.decode("utf-8", "replace").strip()
    try:
        return parse_utc(text), None
    except Exception:
        return None, f"timestamp.txt holds no date ({text[:40]!r}); counted as on time"


def assess(rules: Deadlines, assignment: str, submitted: datetime | None,
           score: float) -> Lateness:
    """How late, and what it costs: never more than `score`, so no score goes below zero."""
    due = rules.due.get(assignment)
    found = Lateness(timestamp=submitted and submitted.isoformat(),
                     due=due and due.isoformat())
    if due is None or submitted is None:
        return found
    found.seconds = max((_utc(submitted) - _utc(due)).total_seconds(), 0.0)
    period = PERIODS[rules.penalty]
    penalty = math.ceil(found.seconds / period) * rules.points if period else 0.0
    found.penalty = min(penalty, max(score, 0.0))
    return found


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
