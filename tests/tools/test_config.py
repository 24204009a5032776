"""The grader's settings: one module lists them all, a course sets any of them, and a key that
nothing reads is named instead of silently doing nothing."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from grader import config
from grader.paths import DEFAULT_COURSE, ROOT

GRADER = ROOT / "grader"


def grader_config(course: Path) -> subprocess.CompletedProcess:
    """`python -m grader config`, as exercises/README.md gives it."""
    return subprocess.run([sys.executable, "-m", "grader", "config", "--course", str(course)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def course_with(tmp_path: Path, extra: str) -> Path:
    course = tmp_path / "course"
    shutil.copytree(DEFAULT_COURSE, course, ignore=shutil.ignore_patterns("source"))
    (course / "source").mkdir()
    with (course / "nbgrader_config.py").open("a") as f:
        f.write(extra)
    return course


def test_config_lists_every_setting_with_its_help_and_default():
    done = grader_config(DEFAULT_COURSE)
    assert done.returncode == 0, done.stderr
    for section in config.SECTIONS:
        for name, trait in config.traits(section).items():
            line = f"c.{section.__name__}.{name} = {trait.default()!r}"
            assert line in done.stdout, f"{line} not listed"
            assert trait.help and trait.help in done.stdout
    assert "c.Execute.timeout = 30" in done.stdout


def test_a_course_value_is_shown_beside_its_default_and_reaches_the_settings(tmp_path):
    course = course_with(tmp_path, "c.GradingLimits.memory_mb = 2048\n"
                                   "c.GradingTimeouts.iopub = 3\n")
    done = grader_config(course)
    assert "c.GradingLimits.memory_mb = 2048  (default 4096)" in done.stdout
    from grader.course import load_config

    settings = config.grading_settings(load_config(course, tmp_path / "build"))
    assert settings.limits.memory_mb == 2048 and settings.timeouts.iopub == 3


def test_keys_nothing_reads_are_named(tmp_path):
    course = course_with(tmp_path, "c.LimitOutput.max_lines = 200\n"
                                   "c.GradingLimits.memroy_mb = 1024\n"
                                   "c.ClearSolutions.code_stub = {'python': 'pass'}\n")
    done = grader_config(course)
    assert done.returncode == 0, done.stderr
    assert "c.LimitOutput.max_lines" in done.stderr  # nbgrader autograde's, not run
    assert "c.GradingLimits.memroy_mb" in done.stderr  # a typo
    assert "ClearSolutions" not in done.stderr  # read by `make release` (nbgrader)


def test_the_shipped_course_sets_only_keys_that_are_read():
    done = grader_config(DEFAULT_COURSE)
    assert "warning" not in done.stderr, done.stderr


def test_no_setting_is_declared_inside_a_function():
    """A Configurable made inside a function cannot be listed or documented."""
    for path in GRADER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                nested = [n.name for n in ast.walk(node) if isinstance(n, ast.ClassDef)]
                assert not nested, f"{path.name}: {node.name} defines {nested}"


def _imports(files: list[Path], me: str) -> set[str]:
    """The grader's modules (a package counts as one) that these files import."""
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("grader"):
                found |= ({node.module.split(".")[1]} if "." in node.module
                          else {a.name for a in node.names})
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names
                          if a.name.startswith("grader.")}
    return found - {me}


def test_the_grader_has_no_import_circle():
    """Imports inside functions count too: a circle among them is one a refactoring trips."""
    units = {p.stem: [p] for p in GRADER.glob("*.py")}
    units |= {p.name: sorted(p.rglob("*.py")) for p in GRADER.iterdir()
              if (p / "__init__.py").is_file()}
    units.pop("__init__"), units.pop("__main__")
    graph = {m: _imports(files, m) & set(units) for m, files in units.items()}

    def visit(module, path):
        for nxt in sorted(graph[module]):
            assert nxt not in path, "import circle: " + " -> ".join([*path, nxt])
            visit(nxt, [*path, nxt])

    assert "sandbox" in graph and graph["grade"] >= {"sandbox", "job", "config"}
    for module in sorted(units):
        visit(module, [module])
