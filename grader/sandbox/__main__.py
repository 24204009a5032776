"""python -m grader.sandbox launch SPEC.json -- KERNEL_ARGV...: the kernelspec's argv."""

from __future__ import annotations

import sys

from grader.sandbox.launcher import launch


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "launch" and argv[2] == "--":
        launch(argv[1], argv[3:])
    print("usage: python -m grader.sandbox launch SPEC.json -- KERNEL_ARGV...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
