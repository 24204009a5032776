"""Run every test suite in its own env, then lint; fail if any fails or runs no test.

Usage (from the tools env): python ci/test_all.py [pytorch tensorflow mxnet jax]

Each framework's suite (tests/<framework>/) runs with that framework's interpreter, since
no env holds two frameworks; tests/tools/ (notebooks, runner, grading, repository checks)
runs in the tools env. Every suite runs even when an earlier one failed, and the last line
adds them all up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "test-results"
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")


def run_suite(name: str, python: Path, path: str) -> dict[str, int]:
    xml = RESULTS / f"{name}.xml"
    xml.unlink(missing_ok=True)
    print(f"\n=== {name}: {path} (in .venvs/{python.parent.parent.name}) ===", flush=True)
    start = time.monotonic()
    rc = subprocess.run([str(python), "-m", "pytest", path, f"--junitxml={xml}", "-q",
                         "-p", "no:cacheprovider"], cwd=ROOT).returncode
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
    suites = {fw: run_suite(fw, venvs / fw / "bin" / "python", f"tests/{fw}")
              for fw in frameworks}
    suites["tools"] = run_suite("tools", venvs / "tools" / "bin" / "python", "tests/tools")

    print(f"\n{'suite':<12}{'passed':>8}{'failed':>8}{'skipped':>9}{'seconds':>9}")
    for name, c in suites.items():
        print(f"{name:<12}{c['passed']:>8}{c['failed']:>8}{c['skipped']:>9}{c['seconds']:>9.0f}")
    totals = {k: sum(c[k] for c in suites.values()) for k in ("passed", "failed", "skipped")}
    print(f"\ntest: {totals['passed']} passed, {totals['failed']} failed, "
          f"{totals['skipped']} skipped")
    return 1 if totals["failed"] or not totals["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
