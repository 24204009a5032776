"""What flows between the grader's modules: the course's Assignments, a Submission found in
SUBMISSIONS, the Job that grades it (its JobSpec, what grader/job.py runs), its Result (its
Lateness with it), a reference solution's run, the checks' Reports, a row of grades.csv,
the settings a run applies (Limits, Timeouts, Deadlines), and the statuses a row can carry.

A status is a str (StrEnum), so it is written to grades.csv, JSON and the feedback page as
the words instructors read, and compares equal to them; the order below is the order a
row lists them in (the most important first). A JobSpec, an Assignment, a Result and a
ReferenceRun cross process boundaries as JSON (into the job's own process and back:
grader/job.py): to_json and from_json are their one encoding.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum

# A test cell's grade id names its exercise and its kind: ex2-hidden is exercise 2's hidden
# tests. Its points count toward that exercise's column, and the student's page names it so.
EXERCISE = re.compile(r"^(ex(\d+))-(.+)$")
KINDS = {"prediction-check": "prediction check", "visible": "visible tests",
         "hidden": "hidden tests"}


def part_kind(grade_id: str) -> str | None:
    """'hidden tests' for ex2-hidden; None for a grade id outside that pattern."""
    m = EXERCISE.match(grade_id)
    return KINDS.get(m.group(3), m.group(3).replace("-", " ")) if m else None


def part_name(grade_id: str) -> str:
    """'Exercise 2, hidden tests' for ex2-hidden; a grade id outside that pattern as itself."""
    kind = part_kind(grade_id)
    return f"Exercise {EXERCISE.match(grade_id).group(2)}, {kind}" if kind else grade_id


class Status(StrEnum):
    UNSANDBOXED = "unsandboxed"
    MISSING_NOTEBOOK = "missing notebook"
    INVALID_NOTEBOOK = "invalid notebook"
    NOT_A_NOTEBOOK_FILE = "not a notebook file"
    SYMLINK = "symlink"
    NO_SUBMISSION = "no submission"
    NOT_ATTEMPTED = "not attempted"
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
    Status.NOT_ATTEMPTED: "the notebook was handed in as released: every answer cell as "
                          "students got it, no code of the student's own; graded all the "
                          "same",
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


@dataclass(frozen=True)
class Assignment:
    """One assignment of the course (grader/course.py's course_model): its notebook as the
    instructor wrote it (hidden tests in) and as students got it, its test cells with their
    points and checks, and its kernel. Cells are nbformat nodes."""

    name: str
    notebook: str  # the notebook's file name, without .ipynb
    points: dict[str, float]  # grade id of each test cell -> its points
    cells: list  # the source notebook's cells, outputs cleared
    released: dict  # grade id -> the cell as students got it
    tests: list[str]  # grade ids of the test cells, in order
    hidden: list[str]  # those whose check is all hidden (no visible part)
    checks: dict[str, str]  # grade id -> its check's source (grader/observe.py)
    kernelspec: dict
    source_file: str  # the source notebook in the build folder (the reference solution)

    @property
    def kernel(self) -> str:
        return self.kernelspec["name"]

    @property
    def max_score(self) -> float:
        return sum(self.points.values())

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # nodes are dicts

    @classmethod
    def from_json(cls, data: dict) -> Assignment:
        import nbformat

        return cls(**{**data, "cells": [nbformat.from_dict(c) for c in data["cells"]],
                      "released": {k: nbformat.from_dict(c)
                                   for k, c in data["released"].items()}})


@dataclass(frozen=True)
class Submission:
    """One student's assignment folder as grader/collect.py found it: the notebook to read
    (later, with collect.read_regular_file), or the status and detail that say why it
    cannot be graded."""

    student: str
    assignment: str  # "" when the student's folder holds no assignment
    path: str = ""
    problem: tuple[Status, str] | None = None


@dataclass(frozen=True)
class Job:
    """A submission on its way to a worker (grader/grade.py's plan): its key and label on the
    cluster, when it was handed in (late.read_timestamp), and `spec`, what the worker's
    grader/job.py runs."""

    key: str
    label: str
    submission: Submission
    spec: JobSpec
    timestamp: str | None = None
    timestamp_problem: str | None = None
    fingerprint: str = ""  # what its recorded result is stored with (grader/reuse.py)
    answers: str = ""  # what the student wrote, digested (grader/override.py)


# What a grading run applies: grader/config.py's sections read once, as values.


@dataclass(frozen=True)
class Limits:
    """c.GradingLimits and the cell timeout (c.Execute.timeout)."""

    memory_mb: int
    cpu_seconds: int
    file_mb: int
    tmpfs_mb: int
    max_processes: int
    max_output_chars: int
    max_notebook_output_chars: int
    submission_timeout: int
    cell_timeout: int


@dataclass(frozen=True)
class Timeouts:
    """c.GradingTimeouts."""

    kernel_startup: int
    iopub: int
    grader_setup: int
    sandbox_probe: int
    scheduler_connect: int
    worker_wait: int


@dataclass(frozen=True)
class Settings:
    """Everything a grading run applies but the deadlines (Deadlines)."""

    limits: Limits
    timeouts: Timeouts
    uid_base: int
    allow_unsandboxed: bool


@dataclass(frozen=True)
class Deadlines:
    """c.GradingDeadlines with its due dates parsed (grader/late.py's settings)."""

    due: dict[str, datetime]  # assignment -> due date (UTC)
    penalty: str  # a key of PERIODS
    points: float  # per started period late


@dataclass(frozen=True)
class KernelSetup:
    """How a job starts an assignment's kernel (grader/grade.py's kernel_setup): its argv,
    the folders the sandbox exposes, its environment, and the env's Python."""

    kernel_argv: list[str]
    exposed: list[str]
    env: dict[str, str]
    python: str

    def for_job(self) -> dict:
        """What a job's spec carries of it (the Python is only the probe's)."""
        return {"kernel_argv": self.kernel_argv, "exposed": self.exposed, "env": self.env}


@dataclass(frozen=True)
class SandboxPlan:
    """The sandbox of a grading run (grader/grade.py's plan_sandbox): bwrap's path, or None
    where the instructor chose limits only; whether the grader runs as root (one uid per
    job slot); and the sentence the run prints about it."""

    bwrap: str | None
    root: bool
    description: str


@dataclass(frozen=True)
class JobSandbox:
    """A job's sandbox: bwrap (None: limits only), the first grading uid, how to start the
    kernel (KernelSetup.for_job); and, set by the worker that runs it (grader/job.py's
    run_on_worker), its uid slot (when the grader runs as root) and scratch folder."""

    bwrap: str | None
    uid_base: int
    kernel_argv: list[str]
    exposed: list[str]
    env: dict[str, str]
    uid: int | None = None
    scratch: str = ""


@dataclass(frozen=True)
class JobSpec:
    """What grader/job.py runs: a student's notebook with their seeds, or (reference) the
    source notebook with the checks once for each submission's seeds. It travels to a
    worker and into the job's own process as JSON (to_json, from_json)."""

    student: str
    assignment: str
    notebook: str  # the notebook's bytes, base64
    course: Assignment
    limits: Limits
    timeouts: Timeouts
    seeds: dict[str, int] = field(default_factory=dict)  # grade id -> seed
    reference: bool = False
    seed_sets: list[tuple[str, dict[str, int]]] = field(default_factory=list)  # (job key, seeds)
    sandbox: JobSandbox | None = None  # once grade.run_jobs has one

    def to_json(self) -> dict:
        return {"student": self.student, "assignment": self.assignment,
                "notebook": self.notebook, "course": self.course.to_json(),
                "limits": asdict(self.limits), "timeouts": asdict(self.timeouts),
                "seeds": self.seeds, "reference": self.reference,
                "seed_sets": [[key, seeds] for key, seeds in self.seed_sets],
                "sandbox": asdict(self.sandbox) if self.sandbox else None}

    @classmethod
    def from_json(cls, data: dict) -> JobSpec:
        return cls(student=data["student"], assignment=data["assignment"],
                   notebook=data["notebook"], course=Assignment.from_json(data["course"]),
                   limits=Limits(**data["limits"]), timeouts=Timeouts(**data["timeouts"]),
                   seeds=data["seeds"], reference=data["reference"],
                   seed_sets=[(key, seeds) for key, seeds in data["seed_sets"]],
                   sandbox=JobSandbox(**data["sandbox"]) if data["sandbox"] else None)


@dataclass(frozen=True)
class Page:
    """A feedback page to render on a worker (grader/job.py's feedback_on_worker)."""

    course: Assignment
    result: Result


@dataclass
class Lateness:
    """How late a submission was, and what it costs (grader/late.py): the one penalty the
    progress line, the page, the gradebook and the exports show."""

    timestamp: str | None = None  # ISO, as handed in; None: no timestamp.txt
    due: str | None = None  # ISO, UTC; None: no due date
    seconds: float = 0.0
    penalty: float = 0.0  # never more than the score


@dataclass(frozen=True)
class Manual:
    """A score the instructor set for one test cell (grader/override.py), with the reason the
    row and the student's page show."""

    points: float
    note: str


@dataclass
class Result:
    """One submission's grading, built up as it goes: a job's run, its verdicts, the
    grader's own findings. `status` and `detail` are added in pairs (flag)."""

    student: str
    assignment: str
    status: list[Status] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)  # what the instructor should read
    cells: dict[str, float] = field(default_factory=dict)  # points per test cell
    failed: dict[str, list[str]] = field(default_factory=dict)  # what each check found
    seconds: float = 0.0
    autograded: str | None = None  # the notebook as it ran
    feedback: str | None = None  # the student's page
    kernel_log: str = ""
    job_log: str = ""
    late: Lateness | None = None
    reports: dict | None = None  # what the checks sent, until they are judged
    # the instructor's scores that hold for these answers (grader/override.py):
    # by grade id; `cells` keeps the autograder's
    manual: dict[str, Manual] = field(default_factory=dict)
    answers: str = ""  # a digest of what the student wrote (override.answers_digest)

    @property
    def scores(self) -> dict[str, float]:
        """Points per test cell: the autograder's, or the instructor's where one is set."""
        return {**self.cells, **{c: m.points for c, m in self.manual.items()}}

    @property
    def score(self) -> float:
        return sum(self.scores.values())

    @property
    def penalty(self) -> float:
        return self.late.penalty if self.late else 0.0

    def flag(self, status: Status, detail: str, *, first: bool = False) -> None:
        """A status, once, and the detail that says why (first: ahead of the others); the
        same flag again (a page rendered twice) adds nothing."""
        if status in self.status and detail in self.detail:
            return
        if status not in self.status:
            self.status.insert(0 if first else len(self.status), status)
        self.detail.insert(0 if first else len(self.detail), detail)

    def to_json(self, keep: tuple[str, ...] | None = None) -> dict:
        data = asdict(self)
        return data if keep is None else {k: data[k] for k in keep}

    @classmethod
    def from_json(cls, data: dict) -> Result:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["status"] = [Status(s) for s in data.get("status", ())]
        if data.get("late") is not None:
            data["late"] = Lateness(**data["late"])
        data["manual"] = {c: Manual(**m) for c, m in (data.get("manual") or {}).items()}
        return cls(**data)


@dataclass
class GradeRow:
    """A row of grades.csv (grader/gradebook.py's rows): scores as the gradebook holds them
    after the late penalty, written as the CSV shows them."""

    student: str
    assignment: str  # "" for a student of the gradebook with no submission graded
    score: str = "0"
    max_score: str = "0"
    exercises: dict[str, str] = field(default_factory=dict)  # ex1, ex2, ... -> points
    status: str = ""
    review: str = ""
    late: str = ""
    detail: str = ""

    def as_csv(self) -> dict[str, str]:
        """The row by column name, as report.write_csv writes it."""
        return {"student": self.student, "assignment": self.assignment, "score": self.score,
                "max_score": self.max_score, **self.exercises, "status": self.status,
                "review": self.review, "late": self.late, "detail": self.detail}


@dataclass(frozen=True)
class CellPlan:
    """What the grader does around one of the course's own cells (grader/job.py's
    plan_cells, grader/execute.py's client): the guard's checks before and after it, with
    the names it binds and the modules it imports, and a test cell's seed."""

    test: bool
    seed: int
    binds: list[str]
    imports: list[str]


@dataclass(frozen=True)
class Report:
    """What one test cell's checks observed (grader/checks.py's parse_report): the records
    by key, as the kernel sent them (grader/observe.py), and the error that stopped them."""

    observations: dict[str, dict]
    error: str | None = None


@dataclass
class ReferenceRun:
    """An assignment's reference solution, run once per grading run: its checks' reports
    for each submission's seeds (by the submission's job key), or why there are none."""

    reports: dict[str, dict[str, Report]] = field(default_factory=dict)  # job key -> grade id
    problem: str | None = None
    kernel_log: str = ""
    job_log: str = ""

    @classmethod
    def from_json(cls, data: dict) -> ReferenceRun:
        return cls(**{**data, "reports": {key: {gid: Report(**r) for gid, r in by_cell.items()}
                                          for key, by_cell in data["reports"].items()}})
