"""What flows between the grader's modules: the statuses a submission's row can carry.

A status is a str (StrEnum), so it is written to grades.csv, JSON and the feedback page as
the words instructors read, and compares equal to them; the order below is the order a
row lists them in (the most important first).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    UNSANDBOXED = "unsandboxed"
    MISSING_NOTEBOOK = "missing notebook"
    INVALID_NOTEBOOK = "invalid notebook"
    NOT_A_NOTEBOOK_FILE = "not a notebook file"
    SYMLINK = "symlink"
    NO_SUBMISSION = "no submission"
    GRADING_ERROR = "grading error"
    SUBMISSION_TIMEOUT = "submission timeout"
    KERNEL_DIED = "kernel died"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory limit"
    DISK_LIMIT = "disk limit"
    TESTS_RESTORED = "tests restored"
    CELLS_DROPPED = "cells dropped"
    OUTPUT_TRUNCATED = "output truncated"
    FEEDBACK_PLAIN = "feedback plain"

    @property
    def meaning(self) -> str:
        """What happened, as exercises/README.md's table of statuses says it."""
        return MEANINGS[self]


MEANINGS = {
    Status.UNSANDBOXED: "graded without the sandbox, because you asked for it",
    Status.MISSING_NOTEBOOK: "no `<assignment>.ipynb` in the assignment folder (a renamed "
                             "file, or one saved a level too high)",
    Status.INVALID_NOTEBOOK: "the file is not UTF-8, not JSON, not a notebook, or over 50 MB",
    Status.NOT_A_NOTEBOOK_FILE: "the notebook is not a regular file (a FIFO, a device)",
    Status.SYMLINK: "the notebook, the assignment folder or the student folder is a symbolic "
                    "link: not followed",
    Status.NO_SUBMISSION: "a student folder with no assignment folder in it",
    Status.GRADING_ERROR: "the grader itself failed on this submission; `detail` and "
                          "`build/grading/<student>/<assignment>/job.log` say why",
    Status.SUBMISSION_TIMEOUT: "the whole submission took longer than its limit: its kernel "
                               "was stopped and the later cells count as failed",
    Status.KERNEL_DIED: "the student's code ended its own kernel (or crashed it); the later "
                        "cells did not run",
    Status.TIMEOUT: "a cell ran longer than the per-cell limit; it was interrupted and "
                    "grading went on. A kernel that ignores the interrupt is stopped and the "
                    "later cells count as failed.",
    Status.MEMORY_LIMIT: "a cell ran out of memory under the kernel's limit",
    Status.DISK_LIMIT: "a cell filled the kernel's tmpfs or wrote a file over the size limit",
    Status.TESTS_RESTORED: "the student changed or deleted test or read-only cells, or their "
                           "tags; the originals were put back and graded (`detail` lists "
                           "them)",
    Status.CELLS_DROPPED: "a cell with a grade id the course does not know, or a second copy "
                          "of a test cell, was dropped (`detail` lists them)",
    Status.OUTPUT_TRUNCATED: "a cell emitted more than the output limit; the rest was dropped",
    Status.FEEDBACK_PLAIN: "the feedback page could not be rendered in full and is plain "
                           "text (`detail` says why)",
}
