"""Run every test suite in its own env, then lint; fail if any fails or runs no test.

Usage (from the tools env): python ci/test_all.py [pytorch tensorflow mxnet jax]

Each framework's suite (tests/<framework>/) runs with that framework's interpreter, since
no env holds two frameworks; tests/tools/ (notebooks, runner, grading, repository checks)
runs in the tools env, on two pytest-xdist workers (tests/tools/conftest.py says which tests
share one). The framework suites are small: they run one after another while the tools
suite runs, their output held back until it ends so that the two do not interleave. Every
suite runs even when another one failed, and the last line adds them all up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "test-results"
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
# The tools suite's workers: two, the cores of the machine CI runs on. Its gradings run two
# kernels each (JOBS=2), so more workers would not make it faster on such a machine.
TOOLS_WORKERS = ["-n", "2"]  # tests/tools/conftest.py groups the tests


def run_suite(name: str, python: Path, path: str, *options: str,
              held: list[str] | None = None) -> dict[str, int]:
    """Run one suite; with `held`, its output is kept there instead of printed."""
    xml = RESULTS / f"{name}.xml"
    xml.unlink(missing_ok=True)
    heading = f"\n=== {name}: {path} (in .venvs/{python.parent.parent.name}) ==="
    if held is None:
        print(heading, flush=True)
    start = time.monotonic()
    proc = subprocess.run([str(python), "-m", "pytest", path, f"--junitxml={xml}", "-q",
                           "-p", "no:cacheprovider", *options], cwd=ROOT,
                          capture_output=held is not None, text=True)
    if held is not None:
        held.append(f"{heading}\n{proc.stdout}{proc.stderr}")
    rc = proc.returncode
    counts = {"passed": 0, "failed": 0, "skipped": 0, "seconds": time.monotonic() - start}
    if xml.exists():
        for suite in ET.parse(xml).getroot().iter("testsuite"):
            total = int(suite.get("tests", 0))
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped = int(suite.get("skipped", 0))
            counts["passed"] += total - failed - skipped
            counts["failed"] += failed
            counts["skipped"] += skipped
    if rc != 0 and counts["failed"] == 0:
        counts["failed"] = 1  # no test ran (exit 5), or pytest itself broke: still a failure
    return counts


def main() -> int:
    frameworks = sys.argv[1:] or list(FRAMEWORKS)
    os.environ["D2L_FRAMEWORKS"] = " ".join(frameworks)  # tests/conftest.py: `frameworks`
    RESULTS.mkdir(parents=True, exist_ok=True)
    venvs = ROOT / ".venvs"
    suites: dict[str, dict] = {}
    held: list[str] = []

    def framework_suites() -> None:
        for fw in frameworks:
            suites[fw] = run_suite(fw, venvs / fw / "bin" / "python", f"tests/{fw}", held=held)

    beside = threading.Thread(target=framework_suites)
    beside.start()
    tools = run_suite("tools", venvs / "tools" / "bin" / "python", "tests/tools", *TOOLS_WORKERS)
    beside.join()
    print("".join(held), end="", flush=True)
    suites = {**{fw: suites[fw] for fw in frameworks}, "tools": tools}

    print(f"\n{'suite':<12}{'passed':>8}{'failed':>8}{'skipped':>9}{'seconds':>9}")
    for name, c in suites.items():
        print(f"{name:<12}{c['passed']:>8}{c['failed']:>8}{c['skipped']:>9}{c['seconds']:>9.0f}")
    totals = {k: sum(c[k] for c in suites.values()) for k in ("passed", "failed", "skipped")}
    print(f"\ntest: {totals['passed']} passed, {totals['failed']} failed, "
          f"{totals['skipped']} skipped")
    return 1 if totals["failed"] or not totals["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
