"""A hostile class, graded with JOBS=2: every attack fails, is undone, or is flagged for review.

tests/grading/hostile_class/ holds one submission per way of attacking the grader (written by
tests/grading/make_classes.py, which says what each does). To it the fixture adds what git
cannot hold: symbolic links (to /proc/kmsg, to the source notebook, to another student's
folder), a FIFO, a notebook nested too deeply to parse, one too large to read, and copies of
a correct submission under names that are not UTF-8, start with a dot or `=`, or are named
like the assignment.

For every row: the exact score, status and review flag; and no score above what the same
answers earn without the trick unless the row is flagged. Around the run: no process, no
file and no disk space left behind, nothing of the hidden tests in any feedback, no live
script in any page, no control character in the CSV or on the terminal.
"""

from __future__ import annotations

import csv
import html
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from grader import similarity

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "grading" / "hostile_class"
SOURCE_NB = ROOT / "exercises" / "source" / "lazy-init-pytorch" / "lazy-init-pytorch.ipynb"
NB = "lazy-init-pytorch"
UID_BASE = 1_900_000_000  # exercises/nbgrader_config.py

# student: (score, status, what the review must say ("" = nothing), honest score): the honest
# score is what the same answers earn without the trick.
EXPECTED = {
    # the machine
    "root": ("15", "ok", "names '/proc' in a string", 15),
    "netspy": ("15", "ok", "imports socket", 15),
    "porthog": ("15", "ok", "imports socket", 15),
    "immortal": ("15", "ok", "imports ctypes", 15),
    "diskfill": ("15", "disk limit", "", 15),
    "outbomb": ("15", "output truncated", "", 15),
    "forkbomb": ("15", "ok", "uses os.fork", 15),
    "snoop": ("15", "ok", "", 15),
    "killall": ("15", "ok", "uses os.kill", 15),
    # the verdict
    "forgive": ("0", "ok", "IPython post_run_cell callbacks changed", 0),
    "partial": ("0", "ok", "IPython post_execute callbacks changed", 0),
    "neutral": ("0", "ok", "input transformers (post) changed", 0),
    "guardbreak": ("0", "ok", "the grader's checks stopped working", 0),
    "tags": ("0", "not attempted; tests restored", "", 0),  # blank answers, tampered tags
    "dupes": ("15", "tests restored; cells dropped", "", 15),
    "bonus": ("15", "cells dropped", "", 15),
    "patch": ("13", "ok", "module torch: allclose replaced", 13),
    "livepatch": ("13", "ok", "rebinds torch.allclose", 13),
    # the hidden tests
    "leakprint": ("15", "output truncated", "imports inspect", 15),
    "leakerror": ("11", "ok", "imports inspect", 13),  # its layer_sizes fails the checks too
    # the instructor's terminal, spreadsheet and browser; a warning in a test
    "escapes": ("15", "memory limit", "", 15),
    "script": ("15", "ok", "", 15),
    "warns": ("15", "ok", "", 15),
    "seeds": ("15", "ok", "", 15),
    # verdicts forged from inside the kernel: each scores what its answers earn
    "lying": ("0", "ok", "defines __eq__ on a subclass of list", 0),
    "framereader": ("11", "ok", "sys.exc_info", 11),
    "guardswap": ("0", "ok", "sys.modules", 0),
    "delpatch": ("13", "ok", "rebinds torch.allclose", 13),
    "forger": ("0", "ok", "get_ipython", 0),
    "encoder": ("15", "ok", "linecache", 15),
    # the grader's own memory and time, and what it writes
    "frames": ("0", "timeout", "get_ipython", 15),
    "brackets": ("15", "ok", "", 15),
    "surrogate": ("15", "ok", "", 15),
    "xss": ("15", "ok", "", 15),
    # added by the fixture: files and names
    "kmsg": ("0", "symlink", "", 0),
    "copycat": ("0", "symlink", "", 0),
    "borrower": ("0", "symlink", "", 0),
    "fifo": ("0", "not a notebook file", "", 0),
    "nested": ("0", "invalid notebook", "", 0),
    "huge": ("0", "invalid notebook", "", 0),
    "st\\xffudent": ("15", "ok", "", 15),
    "'=2+5": ("15", "ok", "", 15),
    ".dotted": ("15", "ok", "", 15),
    "lazy-init-pytorch": ("15", "ok", "", 15),
    "seeds-twin": ("15", "ok", "", 15),
}
MARKERS = ("sleep 7777", "sleep 7778")  # the immortal student's daemons


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (real uid, command line) of every living process on this machine (a zombie has
    ended: it waits only for its parent to notice, as grader/sandbox/uids.py counts it)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            status = (proc / "status").read_text()
            uid = int(status.split("\nUid:")[1].split()[0])
            state = status.split("\nState:")[1].split()[0]
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if state not in ("Z", "X"):
            found[int(proc.name)] = (uid, cmd)
    return found


def grading_leftovers(uids: set[int], wait: float = 5.0) -> list[str]:
    """Processes of the run's grading uids, or the immortal student's daemons, still alive
    `wait` seconds after the run: a process killed by the last sweep may be a moment from its
    end (its command line already gone), and is not a survivor."""
    deadline = time.monotonic() + wait
    while True:
        left = sorted(f"{pid} uid={uid} {cmd[:80]}" for pid, (uid, cmd) in processes().items()
                      if uid in uids or any(m in cmd for m in MARKERS))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def scratch_dirs(tmp: Path) -> set[str]:
    return {p.name for p in tmp.glob("d2l-grading-*")}


def add_files(folder: Path) -> None:
    """What a class can hold besides notebooks, and names git does not keep well."""
    def nb_path(student: str) -> Path:
        path = folder / student / NB / f"{NB}.ipynb"
        path.parent.mkdir(parents=True)
        return path

    nb_path("kmsg").symlink_to("/proc/kmsg")  # reading it would hang
    nb_path("copycat").symlink_to(SOURCE_NB)  # the solutions and hidden tests
    (folder / "borrower").symlink_to(folder / "seeds", target_is_directory=True)
    os.mkfifo(nb_path("fifo"))
    nb_path("nested").write_text("[" * 200_000 + "]" * 200_000)
    with nb_path("huge").open("wb") as f:  # sparse: 51 MB on paper, nothing on disk
        f.truncate(51 * 2**20)
    for name in (b"st\xffudent", b"=2+5", b".dotted", b"lazy-init-pytorch", b"seeds-twin"):
        shutil.copytree(folder / "seeds", os.fsdecode(bytes(folder) + b"/" + name))


class GradingTree:
    """The grading run's process tree (the grader and everything it started), sampled every
    0.1 s while the block runs: the largest resident size of any of its own processes (this
    uid's, not the sandboxes'), the grading uids its sandboxes ran as, and whether its scratch
    folders appeared in `tmp`. Read from the tree and the run's own TMPDIR, not from the
    whole machine: under `make test`'s two workers another file may grade beside this one,
    with uids and scratch folders of its own."""

    def __init__(self, root: int, tmp: Path):
        import threading

        self.root, self.tmp = root, tmp
        self.mb, self.uids, self.scratch_seen = 0.0, set(), False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = os.getuid()
        while not self._stop.wait(0.1):
            self.scratch_seen = self.scratch_seen or bool(scratch_dirs(self.tmp))
            procs = {}  # pid -> (parent, uid, resident MB)
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    status = (proc / "status").read_text()
                    fields = dict(line.split(":", 1) for line in status.splitlines()
                                  if line.startswith(("PPid:", "Uid:", "VmRSS:")))
                    procs[int(proc.name)] = (int(fields["PPid"]),
                                             int(fields["Uid"].split()[0]),
                                             int(fields.get("VmRSS", "0 kB").split()[0]) / 1024)
                except (OSError, ValueError, KeyError, IndexError):
                    continue
            tree, grew = {self.root}, True
            while grew:
                below = {pid for pid, (parent, _, _) in procs.items()
                         if parent in tree and pid not in tree}
                tree |= below
                grew = bool(below)
            for pid in tree & procs.keys():
                _, uid, mb = procs[pid]
                if uid == me:
                    self.mb = max(self.mb, mb)
                elif UID_BASE <= uid < UID_BASE + 20_000:
                    self.uids.add(uid)

    def __enter__(self):
        self._thread.start()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def read_csv(path: Path) -> dict[str, dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


GRADE = [sys.executable, "-m", "grader", "grade"]


def grade(submissions: Path, build: Path, jobs: int = 2,
          *more: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GRADE, "--submissions", str(submissions), "--jobs", str(jobs),
                           "--build", str(build), *more],
                          capture_output=True, timeout=1800, cwd=ROOT)


@pytest.fixture(scope="module")
def run(frameworks, released_copy, tmp_path_factory) -> dict:
    if "pytorch" not in frameworks:
        pytest.skip("the hostile class hands in PyTorch notebooks; its env is not built")
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(HOSTILE, folder, dirs_exist_ok=True)
    add_files(folder)
    build = released_copy("build-hostile")
    # The run's own TMPDIR, where its scratch folders go: as open to the grading uids as
    # /tmp is (pytest's folders are not).
    tmp = Path(tempfile.mkdtemp(prefix="hostile-tmp-"))
    tmp.chmod(0o711)
    proc = subprocess.Popen([*GRADE, "--submissions", str(folder), "--jobs", "2",
                             "--build", str(build)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "TMPDIR": str(tmp)})
    tree = GradingTree(proc.pid, tmp)
    with tree:
        stdout, stderr = proc.communicate(timeout=1800)
    out = stdout.decode("utf-8", "replace")
    print(out[-6000:], stderr.decode(errors="replace")[-3000:])
    assert proc.returncode == 0, out[-3000:] + stderr.decode(errors="replace")[-3000:]
    yield {"folder": folder, "build": build, "stdout": stdout, "out": out, "tmp": tmp,
           "rows": read_csv(build / "grades.csv"), "uids": tree.uids,
           "leftovers": grading_leftovers(tree.uids), "peak_mb": tree.mb,
           "scratch_seen": tree.scratch_seen, "new_tmp": scratch_dirs(tmp)}
    shutil.rmtree(tmp, ignore_errors=True)


def autograded_text(run, student: str) -> str:
    nb = json.loads((run["build"] / "autograded" / student / NB / f"{NB}.ipynb").read_text())
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                     for o in c.get("outputs", []))


def test_every_submission_gets_its_row(run):
    rows = run["rows"]
    assert sorted(rows) == sorted(EXPECTED), "one row per submission, no more"
    wrong = []
    for student, (score, status, review, _) in EXPECTED.items():
        row = rows[student]
        got = (row["score"], row["status"])
        flagged = (review in findings(row)) if review else findings(row) == ""
        if got != (score, status) or not flagged:
            wrong.append(f"{student}: expected {score} {status!r} review {review!r}, got "
                         f"{got} review {row['review']!r} ({row['detail']})")
    assert not wrong, "\n".join(wrong)


def test_no_trick_raises_a_score_unless_the_row_is_flagged(run):
    for student, (*_, honest) in EXPECTED.items():
        row = run["rows"][student]
        assert float(row["score"]) <= honest or findings(row), (student, row)


def findings(row: dict) -> str:
    """The row's review column without the similarity report's lines: nearly every hostile
    submission is the reference solution with an attack added, so nearly all of them pair."""
    return "; ".join(part for part in row["review"].split("; ") if part
                     and not part.startswith(similarity.REVIEW_PREFIX))


def test_the_sandbox_was_bubblewrap(run):
    assert re.search(r"^grade: sandbox: bubblewrap ", run["out"], re.M), run["out"][:2000]
    assert "unsandboxed" not in run["out"]


def test_nothing_is_left_running_or_on_disk(run):
    assert run["uids"], "the sandboxes ran as grading uids, seen in the run's process tree"
    assert run["leftovers"] == [], "processes outlived the grading run"
    assert run["scratch_seen"], "the jobs' scratch folders were made in the run's TMPDIR"
    assert run["new_tmp"] == set(), "scratch directories left in TMPDIR"
    left = [p for top in (Path("/tmp"), run["tmp"], run["build"], ROOT)
            for p in top.rglob("filler-*.bin")]
    assert left == [], "the disk filler's files reached the host"
    assert "ATTACK daemons started" in autograded_text(run, "immortal"), "the attack ran"


def test_the_attacks_failed_inside_the_sandbox(run):
    root = autograded_text(run, "root")
    assert root.count("ATTACK blocked") == 4 and "ATTACK succeeded" not in root, root
    assert "ATTACK reached ports: []" in autograded_text(run, "netspy")
    assert "ATTACK found: []" in autograded_text(run, "snoop")
    assert "ATTACK holding True ports" in autograded_text(run, "porthog")
    assert "ATTACK fork stopped: BlockingIOError True" in autograded_text(run, "forkbomb")


def test_the_graders_own_processes_stay_bounded(run):
    # 200 frames of 15 MiB (3 GB) in one message: the process that grades that submission
    # cannot hold them (its address space is capped, grader/job.py), the message never
    # arrives, the cell is stopped; no process of the grader grew past its cap, and every
    # other row was graded.
    assert run["peak_mb"] < 2600, f"a grader process reached {run['peak_mb']:.0f} MB"
    assert "cell 3 ran longer" in run["rows"]["frames"]["detail"], run["rows"]["frames"]
    # 300 kB of nested brackets in markdown: cut from the page, in bounded time
    seconds = re.search(r"\] brackets .* ([0-9.]+) s ", run["out"])
    assert seconds and float(seconds.group(1)) < 150, run["out"][-3000:]
    page = (run["build"] / "feedback" / "brackets" / NB / f"{NB}.html").read_text()
    assert "Score: 15" in html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "markdown part(s) left out" in run["rows"]["brackets"]["detail"]
    # a lone surrogate in a stream: its row and everyone's pages were written
    assert run["rows"]["surrogate"]["score"] == "15"
    assert (run["build"] / "feedback" / "surrogate" / NB / f"{NB}.html").exists()


def test_the_output_cap_counts_everything_a_cell_emits(run):
    path = run["build"] / "autograded" / "outbomb" / NB / f"{NB}.ipynb"
    assert path.stat().st_size < 2 * 2**20, "tracebacks and display metadata were kept"


def hidden_lines() -> set[str]:
    nb = json.loads(SOURCE_NB.read_text())
    hidden, shown = set(), set()
    for cell in nb["cells"]:
        inside = False
        for line in "".join(cell["source"]).splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            else:
                (hidden if inside else shown).add(line.strip())
    shown_text = "\n".join(shown)
    return {line for line in hidden - shown if len(line) > 20 and line not in shown_text}


def test_no_feedback_shows_a_hidden_test(run):
    secret = hidden_lines()
    assert len(secret) > 10
    pages = sorted((run["build"] / "feedback").rglob("*.html"))
    assert len(pages) == len(EXPECTED)
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        leaked = sorted(line for line in secret if line in text)
        assert not leaked, f"{page}: {leaked[:3]}"
    # the check above can fail: the source has them, and the attacks ran
    assert any(line in SOURCE_NB.read_text() for line in secret)
    assert "frame.code_context" not in autograded_text(run, "leakprint")


def decodings(page: str) -> list[str]:
    """A page's text as a student could decode it: plain, reversed, rot13, and every run of
    base64 decoded (zlib-inflated where it inflates)."""
    import base64
    import codecs
    import zlib

    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    found = [text, text[::-1], codecs.encode(text, "rot13")]
    for chunk in re.findall(r"[A-Za-z0-9+/=]{24,}", html.unescape(page)):
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except ValueError:
            continue
        for data in (raw, _inflate(zlib, raw)):
            if data:
                found.append(data.decode("utf-8", "replace"))
    return found


def _inflate(zlib, raw: bytes) -> bytes:
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return b""


def test_no_feedback_holds_a_hidden_test_in_any_encoding(run):
    secret = hidden_lines()
    for page in sorted((run["build"] / "feedback").rglob("*.html")):
        for text in decodings(page.read_text(encoding="utf-8")):
            leaked = sorted(line for line in secret if line in text)
            assert not leaked, f"{page}: {leaked[:3]}"
    # the encoder's own cells ran, and its hook printed what it had seen by then
    assert "_leak" in (run["build"] / "autograded" / "encoder" / NB / f"{NB}.ipynb").read_text()


class Scripts(html.parser.HTMLParser):
    """Every script, event handler and javascript: link in a page."""

    def __init__(self):
        super().__init__()
        self.found, self._in_script = [], False

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_data(self, data):
        if self._in_script and ("pwned" in data or "alert(" in data):
            self.found.append(data[:80])


def test_no_feedback_page_runs_student_script(run):
    for page in sorted((run["build"] / "feedback").rglob("*.html")):
        parser = Scripts()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.found == [], f"{page}: {parser.found[:3]}"
    script = (run["build"] / "feedback" / "script" / NB / f"{NB}.html").read_text()
    assert "pwned-md-script" in script, "the payload reached the page, escaped"


def test_csv_and_terminal_hold_no_formula_and_no_control_character(run):
    raw = (run["build"] / "grades.csv").read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw.replace(b"\n", b"")), raw[:300]
    for row in run["rows"].values():
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), row
    assert "\\x1b" in run["rows"]["escapes"]["detail"], "the escape code, shown escaped"
    assert b"\x1b" not in run["stdout"]


def sizes(build: Path, student: str) -> list[str]:
    """The sizes the seeds student's function was called with, as its kernel's own stderr
    (the instructor's kernel.log) recorded them: the feedback never shows the checks'."""
    log = (build / "grading" / student / NB / "kernel.log").read_text(errors="replace")
    return [line for line in log.splitlines() if line.startswith("SIZES")]


def feedback_sizes(build: Path, student: str) -> list[str]:
    page = (build / "feedback" / student / NB / f"{NB}.html").read_text(encoding="utf-8")
    return re.findall(r"SIZES \([0-9, ]+\)", html.unescape(page))


def test_hidden_tests_draw_per_student_and_the_same_on_a_regrade(run, tmp_path):
    first, twin = sizes(run["build"], "seeds"), sizes(run["build"], "seeds-twin")
    # the visible test, then its check, then the hidden check
    assert len(first) == 3 and len(twin) == 3, (first, twin)
    assert first[0] == twin[0] == first[1] == "SIZES (20, 256, 10)", "the visible sizes"
    assert first[2] != twin[2], "two students, the same hidden sizes"
    # (twice: ipykernel also forwards what reaches the process's own stderr)
    assert set(feedback_sizes(run["build"], "seeds")) == {"SIZES (20, 256, 10)"}, \
        "the feedback shows what the visible test printed, and nothing of the checks"
    again = tmp_path / "again"
    shutil.copytree(run["folder"] / "seeds", again / "seeds")
    proc = grade(again, run["build"], 1, "--force")  # the same bytes: graded again, as asked
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"1 graded now" in proc.stdout, proc.stdout[-2000:]
    assert sizes(run["build"], "seeds") == first, "a regrade drew other sizes"
    assert read_csv(run["build"] / "grades.csv")["seeds"]["score"] == "15"
    # a resubmission (other bytes, the same answers) draws new sizes
    path = again / "seeds" / NB / f"{NB}.ipynb"
    path.write_text(path.read_text() + "\n")
    proc = grade(again, run["build"], 1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resubmitted = sizes(run["build"], "seeds")
    assert resubmitted[:2] == first[:2] and resubmitted[2] != first[2], (first, resubmitted)
    assert read_csv(run["build"] / "grades.csv")["seeds"]["score"] == "15"
