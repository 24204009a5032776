"""python -m grader release | collect | grade | override | export | config: what `make
release`, `make collect`, `make grade`, `make override` and `make export` run, and the list
of every setting."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from grader.config import describe, unread_keys
from grader.course import load_config, release
from grader.errors import UsageError
from grader.paths import DEFAULT_COURSE, ROOT, show


def parser() -> argparse.ArgumentParser:
    """Each command and its options (the Makefile's targets pass them)."""
    parser = argparse.ArgumentParser(prog="python -m grader",
                                     description="nbgrader release and sandboxed autograding.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("release", "student versions into BUILD/release/"),
                       ("grade", "autograde SUBMISSIONS/<student>/<assignment>/")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--build", default=str(ROOT / "build"))
        p.add_argument("--course", default=str(DEFAULT_COURSE),
                       help="the course folder: nbgrader_config.py and source/")
        if name == "grade":
            p.add_argument("--submissions", required=True)
            p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                           help="workers of the local Dask cluster")
            p.add_argument("--students", default="",
                           help="grade only these (ids, separated by spaces or commas); "
                                "everyone else's grades stay as they are")
            p.add_argument("--scheduler", default="",
                           help="an existing Dask cluster's scheduler (tcp://host:8786)")
            p.add_argument("--force", action="store_true",
                           help="grade every submission again, even those unchanged since "
                                "their results were stored")
            p.add_argument("--unsandboxed", action="store_true",
                           help="grade with limits only where bubblewrap cannot run: student "
                                "code then runs with your rights (every row says so)")
    p = sub.add_parser("config", help="every setting of the grader, with the course's values")
    p.add_argument("--course", default=str(DEFAULT_COURSE))
    p = sub.add_parser("collect", help="an LMS's submission download into "
                       "SUBMISSIONS/<student>/<assignment>/")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--course", default=str(DEFAULT_COURSE))
    p.add_argument("--lms", required=True, help="canvas or moodle")
    p.add_argument("--zip", required=True,
                   help="the LMS's download: its zip, or the folder it was unpacked to")
    p.add_argument("--roster", required=True,
                   help="the LMS's roster export (or a hand-kept CSV with lms_user_id)")
    p.add_argument("--submissions", default="submitted")
    p = sub.add_parser("export", help="grades as an LMS imports them: BUILD/grades-<lms>.csv")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--course", default=str(DEFAULT_COURSE))
    p.add_argument("--lms", required=True, help="canvas or moodle")
    p.add_argument("--roster", required=True,
                   help="the LMS's roster export (Canvas's gradebook, Moodle's grade export), "
                        "or a CSV with columns student, name, lms_id[, section, lms_user_id]")
    p = sub.add_parser("override", help="an instructor's score for one test cell, with a "
                                        "reason: the row, the page and the exports at once")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--course", default=str(DEFAULT_COURSE))
    p.add_argument("--student", required=True)
    p.add_argument("--assignment", required=True)
    p.add_argument("--cell", required=True, help="a test cell's grade id, e.g. ex3-hidden")
    p.add_argument("--points", default=None)
    p.add_argument("--note", default="", help="why: the row and the student's page show it")
    p.add_argument("--clear", action="store_true", help="remove the cell's override")
    return parser


def main(argv: list[str] | None = None) -> int:
    # nbgrader's Gradebook runs `alembic` from PATH: the tools env's bin, even unactivated.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ.get("PATH", "")])
    args = parser().parse_args(argv)
    course = Path(args.course).resolve()
    build = Path(getattr(args, "build", ROOT / "build")).resolve()
    try:
        cfg = load_config(course, build)
        for key in unread_keys(cfg):
            print(f"{args.command}: warning: {key} in {show(course / 'nbgrader_config.py')} "
                  "is read by nothing this command runs; remove it (python -m grader config "
                  "lists the settings)", file=sys.stderr, flush=True)
        if args.command == "config":
            print(describe(cfg))
            return 0
        if args.command == "release":
            return release(course, build)
        if args.command == "override":
            from grader.override import override

            return override(course, build, args.student, args.assignment, args.cell,
                            args.points, args.note, args.clear)
        if args.command == "collect":
            from grader.lms_collect import collect

            return collect(course, build, args.lms.lower(), Path(args.zip), Path(args.roster),
                           Path(args.submissions))
        if args.command == "export":
            from grader.export import export

            return export(course, build, args.lms.lower(), Path(args.roster))
        if args.jobs < 1:
            raise UsageError("grade: --jobs (JOBS=) must be at least 1")
        from grader.grade import grade

        students = [s for s in args.students.replace(",", " ").split() if s]
        return grade(course, Path(args.submissions), args.jobs, build, args.unsandboxed,
                     students=students, scheduler=args.scheduler or None, force=args.force)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the workers and kernels are already closed
        stopped = (": what was graded is kept, and `make grade` again grades the rest"
                   if args.command == "grade" else "")
        print(f"{args.command}: stopped{stopped}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
