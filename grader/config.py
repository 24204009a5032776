"""Every setting of the grader, in one place: traitlets configurables a course's
nbgrader_config.py sets (`c.GradingLimits.memory_mb = 2048`), each with its default and help.

`python -m grader config` lists them all with the course's values. nbgrader's own commands
ignore these sections; of nbgrader's sections, `make release` reads what nbgrader's
generate_assignment reads, and `make grade` reads `Execute.timeout` alone (it runs its own
client, not nbgrader's autograde). A key that nothing reads is reported when a command
starts (unread_keys), so that a setting that does nothing does not look as if it did.
"""

from __future__ import annotations

from traitlets import Bool, Dict, Enum, Float, Integer, Unicode
from traitlets.config import Configurable

from grader.model import Limits, Settings, Timeouts  # what these sections give

PERIODS = {"none": None, "per_hour": 3600, "per_day": 86400}


class GradingLimits(Configurable):
    """Limits of one student's kernel, applied inside its sandbox."""

    memory_mb = Integer(4096, help="address space of one kernel process").tag(config=True)
    cpu_seconds = Integer(600, help="CPU time of one kernel process").tag(config=True)
    file_mb = Integer(64, help="largest file a kernel may write").tag(config=True)
    tmpfs_mb = Integer(256, help="size of the kernel's home and of its /tmp").tag(config=True)
    max_processes = Integer(256, help="processes and threads of one kernel").tag(config=True)
    max_output_chars = Integer(20000, help="output kept per cell").tag(config=True)
    max_notebook_output_chars = Integer(1_000_000, help="output kept per notebook").tag(
        config=True)
    submission_timeout = Integer(600, help="seconds for one submission").tag(config=True)


class GradingTimeouts(Configurable):
    """How long the grader waits for the machinery around a student's code."""

    kernel_startup = Integer(120, help="seconds for a sandboxed kernel to start").tag(
        config=True)
    iopub = Integer(8, help="seconds a cell's output may trail its reply (after an "
                            "interrupt too)").tag(config=True)
    grader_setup = Integer(120, help="seconds to install the grader's checks in a "
                                     "kernel").tag(config=True)
    sandbox_probe = Integer(60, help="seconds for the start-up probe of the sandbox").tag(
        config=True)
    scheduler_connect = Integer(30, help="seconds to reach SCHEDULER's Dask cluster").tag(
        config=True)
    worker_wait = Integer(120, help="seconds to wait for a first worker of SCHEDULER's "
                                    "cluster").tag(config=True)


class GradingSandbox(Configurable):
    """Where and as whom student code runs."""

    uid_base = Integer(1_900_000_000, help="first host uid of the grading kernels (when the "
                                           "grader runs as root)").tag(config=True)
    allow_unsandboxed = Bool(False, help="grade with limits only where bubblewrap cannot "
                                         "run").tag(config=True)


class GradingDeadlines(Configurable):
    """Due dates and the cost of lateness (grader/late.py)."""

    due = Dict({}, help="assignment -> due date, as nbgrader parses them").tag(config=True)
    penalty = Enum(list(PERIODS), "none", help="how lateness costs points").tag(config=True)
    points = Float(1.0, help="points per started hour or day late").tag(config=True)


class LMSExport(Configurable):
    """What `make export` writes for Canvas or Moodle (grader/export.py)."""

    columns = Enum(["per_assignment", "combined"], "per_assignment",
                   help="one LMS column per assignment, or one column for the homework "
                        "(combined_title)").tag(config=True)
    combined_title = Unicode("Lazy initialization", help="the LMS column of the combined "
                             "grade: an existing assignment's name, or a new one").tag(
        config=True)
    combined_score = Enum(["best", "mean"], "best",
                          help="the combined grade: the best of the assignments a student "
                               "handed in, or their mean").tag(config=True)


class LMSCollect(Configurable):
    """What `make collect` reads from an LMS's download (grader/lms_collect.py)."""

    timezone = Unicode("", help="the time zone of the hand-in times in Moodle's grading "
                                "worksheet (your Moodle profile's, e.g. Europe/Berlin): set, "
                                "collect writes each submission's timestamp.txt from the "
                                "worksheet; empty, none is written").tag(config=True)


SECTIONS = (GradingLimits, GradingTimeouts, GradingSandbox, GradingDeadlines, LMSExport,
            LMSCollect)
CELL_TIMEOUT = 30  # nbgrader's own default for Execute.timeout
# nbgrader's sections that `make grade` reads itself (grader/execute.py is its own client).
GRADE_READS = {"Execute": {"timeout"}, "CourseDirectory": {"course_id", "root", "db_url"}}


def traits(section: type[Configurable]) -> dict:
    """The settable traits of a section, by name."""
    return section.class_traits(config=True)


def values(section: type[Configurable], cfg) -> dict:
    """The section's settings as `cfg` sets them, defaults for the rest."""
    obj = section(config=cfg)
    return {name: getattr(obj, name) for name in traits(section)}


def _release_sections() -> dict[str, set[str]]:
    """What nbgrader's generate_assignment (`make release`) reads: the config traits of the
    converter, its exporter, its preprocessors and the course directory, by class name
    (traitlets applies a section to the class it names and to its subclasses)."""
    from nbconvert.exporters import NotebookExporter
    from nbgrader.apps import NbGraderAPI
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    roots = [GenerateAssignment, NotebookExporter, NbGraderAPI, CourseDirectory,
             *GenerateAssignment().preprocessors]
    classes = {c for root in roots for c in root.mro()
               if isinstance(c, type) and issubclass(c, Configurable)}
    return {c.__name__: set(c.class_traits(config=True)) for c in classes}


def unread_keys(cfg) -> list[str]:
    """`c.Section.key` entries of the course's config that neither `make release` nor
    `make grade` reads: a typo, or a setting of nbgrader's autograde, which the grader does
    not run."""
    read = {s.__name__: set(traits(s)) for s in SECTIONS}
    for name, keys in [*_release_sections().items(), *GRADE_READS.items()]:
        read.setdefault(name, set()).update(keys)
    unread = []
    for section, entries in cfg.items():
        if not section[:1].isupper() or not hasattr(entries, "items"):
            continue
        unread += [f"c.{section}.{key}" for key in entries if key not in read.get(section, ())]
    return sorted(unread)


def describe(cfg) -> str:
    """Every setting of the grader, its help, its default and the value `cfg` gives it."""
    lines = []
    for section in SECTIONS:
        lines.append(f"{section.__name__}: {section.__doc__.strip()}")
        set_here = values(section, cfg)
        for name, trait in traits(section).items():
            default, value = trait.default(), set_here[name]
            shown = f"{value!r}" + ("" if value == default else f"  (default {default!r})")
            lines.append(f"  c.{section.__name__}.{name} = {shown}")
            lines.append(f"      {trait.help}")
    lines.append("Execute: nbgrader's section; the grader reads one key")
    timeout = cell_timeout(cfg)
    lines.append(f"  c.Execute.timeout = {timeout!r}"
                 + ("" if timeout == CELL_TIMEOUT else f"  (default {CELL_TIMEOUT})"))
    lines.append("      seconds a single cell may run")
    return "\n".join(lines)


def cell_timeout(cfg) -> int:
    """nbgrader's Execute.timeout, which the grader applies to each cell."""
    return int(cfg.Execute.get("timeout", CELL_TIMEOUT))


def timeouts(cfg) -> Timeouts:
    return Timeouts(**values(GradingTimeouts, cfg))


def grading_settings(cfg) -> Settings:
    """What a grading run applies: each job's limits (the cell timeout among them), the
    timeouts around them, and the sandbox's settings."""
    sandbox = values(GradingSandbox, cfg)
    return Settings(limits=Limits(**values(GradingLimits, cfg), cell_timeout=cell_timeout(cfg)),
                    timeouts=timeouts(cfg), uid_base=sandbox["uid_base"],
                    allow_unsandboxed=sandbox["allow_unsandboxed"])
