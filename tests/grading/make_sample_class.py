"""Write the sample class graded by tests/tools/test_grading.py (the files are committed).

Usage (tools env, from the repository root): python tests/grading/make_sample_class.py

Every submission starts from the released notebook (what students get) and fills in the
solution cells the way that student would: the source's solution (a correct student), an
answer that only fits the visible tests, nothing at all, or something hostile. The expected
score and status of each student are asserted in tests/tools/test_grading.py; change both
together.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "grading" / "sample_class"

TIMEOUT = """while True:  # waits for something that never happens
    pass

"""
STUBBORN = """import signal
import subprocess

signal.signal(signal.SIGINT, signal.SIG_IGN)  # no interrupting this one
subprocess.Popen(["sleep", "4321"], start_new_session=True)  # and a process left behind
while True:
    pass

"""
KILL = """import os

os._exit(1)  # ends the kernel process itself

"""
HOG = """hog = []
while True:  # keeps every block, so memory only grows
    hog.append(b"x" * 2**26)

"""
FLOOD = """print("x" * 3_000_000)
for i in range(200_000):
    print(i)

"""
# Tries to change grades and hidden tests: the gradebook (scores, points, the hidden tests
# it stores) and the source and release notebooks, wherever walking up from the working
# directory finds them, plus two guesses relative to a grading scratch directory. (Other
# students' scratch gradebooks are left alone: without namespaces a concurrent attack on
# them could succeed, see exercises/README.md, and the expected grades must not depend on
# the machine.) It prints what became of each attempt; the test reads that back.
TAMPER = '''import glob
import os
import sqlite3

targets = set()
here = os.getcwd()
while True:
    for pattern in ("gradebook.db", "build/gradebook.db", "exercises/source/*/*.ipynb",
                    "source/*/*.ipynb", "release/*/*.ipynb"):
        targets.update(glob.glob(os.path.join(here, pattern)))
    if here == os.path.dirname(here):
        break
    here = os.path.dirname(here)
targets.update(os.path.abspath(p) for p in ("../gradebook.db", "../../../../gradebook.db"))

for path in sorted(targets):
    try:
        if path.endswith(".db"):
            if not os.path.exists(path):
                raise FileNotFoundError(path)
            db = sqlite3.connect(path)
            db.execute("UPDATE grade SET auto_score = 99")
            db.execute("UPDATE grade_cells SET max_score = 99")
            db.execute("UPDATE source_cell SET source = 'pass'")
            db.commit()
            db.close()
        else:
            with open(path, "w") as f:
                f.write("{}")
        print("TAMPER changed", path)
    except Exception as e:
        print("TAMPER blocked", path, type(e).__name__)
print("TAMPER tried", len(targets), "paths")
'''

# student: (framework, what they did). Kinds of change, applied in order:
#   ("solve", grade_id)           the source's solution, markers removed
#   ("replace", grade_id, a, b)   in that solution, replace text a by b
#   ("prepend", grade_id, code)   code before that solution (or the stub)
#   ("append", grade_id, code)    code after it
#   ("set", grade_id, code)       that cell's source, whatever it was
#   ("delete", grade_id)          remove that cell
#   ("kernel", name)              the notebook's kernelspec name
# and ("file", how) writes something that is not a graded notebook.
SOLVED = [("solve", "ex1-solution"), ("solve", "ex2-solution"), ("solve", "ex3-solution")]
CLASS = {
    # correct, in two frameworks; ben's notebook also names the wrong kernel (nbgrader #1375)
    "ada": ("pytorch", SOLVED),
    "ben": ("jax", [*SOLVED, ("kernel", "python3")]),
    # partially correct: answers that fit the visible tests only, or an exercise left out
    "cleo": ("tensorflow", [
        *SOLVED,
        ("replace", "ex2-solution", "return net.layers[0].kernel.shape[0]", "return 20"),
        ("replace", "ex3-solution", "keras.ops.mean(H, axis=1)", "keras.ops.sum(H, axis=1)")]),
    "dev": ("mxnet", [("solve", "ex1-solution"), ("solve", "ex3-solution")]),
    # broken and hostile
    "eve": ("pytorch", [*SOLVED, ("prepend", "ex2-solution", TIMEOUT)]),
    "fay": ("jax", [*SOLVED, ("prepend", "ex2-solution", KILL)]),
    "mia": ("pytorch", [*SOLVED, ("prepend", "ex3-solution", STUBBORN)]),
    "gus": ("mxnet", [*SOLVED, ("prepend", "ex3-solution", HOG)]),
    "hal": ("jax", [*SOLVED,
                    ("append", "ex1-solution", "\n\n\ndef created(net):  # surely they all do"
                     "\n    return [True, True]"),
                    ("set", "ex1-visible", "assert True  # these tests are fine as they are\n"),
                    ("delete", "ex3-hidden")]),
    "ivy": ("jax", [("file", "not json")]),
    "jon": ("tensorflow", [("file", "misnamed")]),
    "kim": ("pytorch", [*SOLVED, ("prepend", "ex1-solution", FLOOD)]),
    "leo": ("pytorch", [("solve", "ex1-solution"), ("solve", "ex3-solution"),
                        ("set", "ex2-solution", TAMPER),
                        ("set", "ex2-hidden", "pass  # nothing to see here\n")]),
}


def solution(source_nb, grade_id: str) -> str:
    for cell in source_nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION\n", "", cell.source + "\n",
                          flags=re.M).rstrip("\n")
    raise KeyError(grade_id)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "grader", "release", "--build", tmp],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        shutil.rmtree(OUT, ignore_errors=True)
        for student, (fw, changes) in CLASS.items():
            name = f"lazy-init-{fw}"
            released = nbformat.read(Path(tmp, "release", name, f"{name}.ipynb"), as_version=4)
            source = nbformat.read(ROOT / "exercises" / "source" / name / f"{name}.ipynb",
                                   as_version=4)
            folder = OUT / student / name
            folder.mkdir(parents=True)
            cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in released.cells}
            for change in changes:
                kind, *args = change
                if kind == "solve":
                    cells[args[0]].source = solution(source, args[0])
                elif kind == "replace":
                    grade_id, old, new = args
                    assert old in cells[grade_id].source, (student, old)
                    cells[grade_id].source = cells[grade_id].source.replace(old, new)
                elif kind == "prepend":
                    cells[args[0]].source = args[1] + cells[args[0]].source
                elif kind == "append":
                    cells[args[0]].source += args[1]
                elif kind == "set":
                    cells[args[0]].source = args[1]
                elif kind == "delete":
                    released.cells.remove(cells.pop(args[0]))
                elif kind == "kernel":
                    released.metadata.kernelspec = {"name": args[0], "language": "python",
                                                    "display_name": "Python 3 (ipykernel)"}
            for i, cell in enumerate(released.cells):  # numbered as nbstripout does
                cell.id = str(i)
            path = folder / f"{name}.ipynb"
            if changes[0] == ("file", "not json"):  # cut off mid-file, as by a failed upload
                text = json.dumps(nbformat.from_dict(released), indent=1)
                path.write_text(text[: len(text) // 2])
            elif changes[0] == ("file", "misnamed"):  # saved under the default name
                nbformat.write(released, folder / "Untitled.ipynb")
            else:
                nbformat.write(released, path)
            print(f"wrote {path.relative_to(ROOT) if path.exists() else folder.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
