"""The advisory checks of the student's code: the static audit (grader/audit.py) and the guard
in the kernel (grader/kernel_guard.py).

Neither decides a score; both name, for the `review` column, code that reaches where a correct
answer never needs to. Each blind spot an attacker found has a snippet the audit must flag,
with the finding's exact reason; the rules that are structure rather than names (dunders,
private attributes, computed attribute names, special methods) are shown on names no list
holds. Against that: the reference solutions of all four frameworks and everyday code give no
finding, and the chapter notebooks no finding beyond the few known ones.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from grader import audit

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[^\n]*\n?", re.M)


def source(fw: str):
    name = f"lazy-init-{fw}"
    return nbformat.read(ROOT / "exercises" / "source" / name / f"{name}.ipynb", as_version=4)


def course_code(fw: str) -> list[str]:
    return [c.source for c in source(fw).cells if c.cell_type == "code"
            and not (c.metadata.get("nbgrader") or {}).get("solution")]


def solutions(fw: str) -> list[tuple[str, str]]:
    """The reference solutions as a student would hand them in: the marker lines gone."""
    return [(c.metadata.nbgrader["grade_id"], MARKER.sub("", c.source))
            for c in source(fw).cells
            if c.cell_type == "code" and (c.metadata.get("nbgrader") or {}).get("solution")]


def findings(code: str, fw: str = "pytorch") -> list[str]:
    return audit.audit([("cell", textwrap.dedent(code))], course_code(fw))


# ------------------------------------------------------------------ what must be flagged

BLIND_SPOTS = [
    # getattr and its kin, aliased or reached another way
    ("g = getattr\ng(net, 'weight')",
     "uses getattr as a value (reaches attributes the audit cannot see)"),
    ("f = functools.partial(setattr, net)", "uses setattr as a value"),
    ("list(map(delattr, [net], ['weight']))", "uses delattr as a value"),
    ("import builtins\nbuiltins.getattr(net, 'weight')",
     "uses builtins.getattr (runs or reaches code the audit cannot see)"),
    ("vars(net)['weight'] = 1", "uses vars() (runs or reaches code the audit cannot see)"),
    ("__builtins__['getattr'](net, 'x')", "uses `__builtins__` (IPython's history or internals)"),
    ("import operator\noperator.attrgetter('weight')(net)",
     "uses operator.attrgetter (reaches attributes by name)"),
    ("from operator import methodcaller\nmethodcaller('forward')(net)",
     "imports operator.methodcaller (reaches attributes by name)"),
    # frames and tracebacks
    ("import sys\ntype_, value, tb = sys.exc_info()",
     "uses sys.exc_info (reaches tracebacks and their frames)"),
    ("from sys import exc_info", "imports sys.exc_info (reaches tracebacks and their frames)"),
    ("import sys\nframe = sys._getframe(1)", "uses sys._getframe (an interpreter hook)"),
    ("import logging\nframe = logging.currentframe()",
     "uses logging.currentframe (reaches frames and their variables)"),
    ("try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__",
     "reaches `__traceback__` (object internals)"),
    ("x = tb.tb_frame", "reaches `tb_frame` (frames and code objects)"),
    ("x = frame.f_back", "reaches `f_back` (frames and code objects)"),
    ("x = frame.f_locals", "reaches `f_locals` (frames and code objects)"),
    ("x = frame.f_globals", "reaches `f_globals` (frames and code objects)"),
    ("def g():\n    yield\nx = g().gi_frame", "reaches `gi_frame` (frames and code objects)"),
    ("async def c():\n    pass\nx = c().cr_frame", "reaches `cr_frame` (frames and code objects)"),
    ("x = '{0.gi_frame.f_back}'.format(gen)", "names 'gi_frame' in a string"),
    ("import inspect", "imports inspect (reaches the interpreter's internals)"),
    # code the audit cannot see: other runners, imports, modules written to disk
    ("import runpy\nrunpy.run_path('helper')", "imports runpy (runs code the audit cannot see)"),
    ("import importlib\nhelper = importlib.import_module('helper')",
     "imports importlib (reaches the interpreter's internals)"),
    ("helper = __import__('helper')", "uses __import__() (runs or reaches code"),
    ("open('helper.py', 'w').write('X = 1')\nimport helper",
     "names the code file 'helper.py' (code the audit cannot see)"),
    ("from pathlib import Path\nPath('hel' + 'per.p' + 'y').write_text(code)\nimport helper",
     "imports helper, which is no known package, and the submission writes files "
     "(cell line 2)"),
    ("import sys\nsys.path.insert(0, '/tmp')", "uses sys.path (changes where imports come from)"),
    ("import sys\nsys.modules['torch']", "uses sys.modules (an interpreter hook)"),
    # pickles
    ("state = torch.load('w.pt', weights_only=False)",
     "calls torch.load without weights_only=True (unpickling runs code)"),
    ("state = torch.load('w.pt')", "calls torch.load without weights_only=True"),
    ("import pickle\npickle.loads(blob)", "uses pickle.loads (unpickling runs code)"),
    ("import pickle", "imports pickle (reaches the interpreter's internals)"),
    ("import marshal", "imports marshal (reaches the interpreter's internals)"),
    ("import dill", "imports dill (reaches the interpreter's internals)"),
    ("import cloudpickle", "imports cloudpickle (reaches the interpreter's internals)"),
    ("import joblib", "imports joblib (loads pickles, which runs code)"),
    ("import joblib\nnet = joblib.load('net.pkl')", "uses joblib.load (unpickling runs code)"),
    ("import numpy as np\nw = np.load('w.npy', allow_pickle=True)",
     "calls np.load() with allow_pickle (unpickling runs code)"),
    ("import pandas as pd\nw = pd.read_pickle('w.pkl')",
     "uses pd.read_pickle (unpickling runs code)"),
    # IPython.display beyond showing outputs, and IPython's machinery
    ("import IPython.display\nns = IPython.display.__dict__",
     "uses IPython.display.__dict__ (reaches into the kernel)"),
    ("from IPython.display import display\nns = display.__globals__",
     "reaches `__globals__` (object internals)"),
    ("from IPython.display import display\nns = display.__globals__",
     "uses IPython.display.display.__globals__ (reaches into the kernel)"),
    ("import IPython.display\nip = IPython.get_ipython()",
     "uses IPython.get_ipython (reaches into the kernel)"),
    ("from IPython.display import publish_display_data",
     "imports IPython.display.publish_display_data (reaches into the kernel)"),
    ("f = get_ipython().display_formatter.formatters",
     "uses `.display_formatter` (reaches into the kernel)"),
    ("f = shell.display_formatter.formatters",
     "uses shell.display_formatter.formatters (reaches into the kernel)"),
    ("shell.user_ns['x'] = 1", "uses shell.user_ns (reaches into the kernel)"),
    # the framework's dispatch
    ("class T(torch.Tensor):\n    @classmethod\n"
     "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n        return True",
     "defines __torch_function__ (takes over the framework's operations)"),
    ("class M:\n    def __torch_dispatch__(self, func, types, args=(), kwargs=None):\n"
     "        pass", "defines __torch_dispatch__ (takes over the framework's operations)"),
    ("from torch.overrides import TorchFunctionMode",
     "imports torch.overrides.TorchFunctionMode (takes over the framework's operations)"),
    ("class M(torch.overrides.TorchFunctionMode):\n    pass",
     "uses torch.overrides.TorchFunctionMode (takes over the framework's operations)"),
    ("from torch.utils._python_dispatch import TorchDispatchMode",
     "imports torch.utils._python_dispatch.TorchDispatchMode (takes over the framework's "
     "operations)"),
    ("class A:\n    def __array_function__(self, func, types, args, kwargs):\n        pass",
     "defines __array_function__ (takes over the framework's operations)"),
    ("class A:\n    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):\n        pass",
     "defines __array_ufunc__ (takes over the framework's operations)"),
    ("lib = torch.library.Library('aten', 'IMPL')",
     "uses torch.library.Library (takes over the framework's operations)"),
    # special methods that run code at times no cell chooses
    ("class A:\n    def __del__(self):\n        pass",
     "defines __del__ (runs code when the object is collected, at no time a cell chooses)"),
    ("class A:\n    def __init_subclass__(cls):\n        pass",
     "defines __init_subclass__ (runs code whenever a class is made)"),
    ("class A:\n    def __set_name__(self, owner, name):\n        pass",
     "defines __set_name__ (runs code whenever a class is made)"),
    ("class A:\n    def __class_getitem__(cls, item):\n        pass",
     "defines __class_getitem__ (runs code when the class is subscripted)"),
    ("class A:\n    def __getattr__(self, name):\n        return True",
     "defines __getattr__ (decides what attribute access does)"),
    ("class A:\n    def __instancecheck__(cls, obj):\n        return True",
     "defines __instancecheck__ (decides what isinstance() says)"),
    ("class A:\n    def __reduce__(self):\n        return (print, ('x',))",
     "defines __reduce__ (decides what pickling and copying run)"),
    ("class M(type):\n    pass", "defines the metaclass M (runs code whenever a class is made)"),
    ("class A(metaclass=Meta):\n    pass",
     "defines A with a metaclass (runs code whenever a class is made)"),
    # values that lie to the tests' comparisons
    ("class L(list):\n    def __eq__(self, other):\n        return True",
     "defines __eq__ on a subclass of list"),
    ("class S(str):\n    def __ne__(self, other):\n        return False",
     "defines __ne__ on a subclass of str"),
    ("class I(int):\n    def __hash__(self):\n        return 0",
     "defines __hash__ on a subclass of int"),
    ("class T(tuple):\n    def __contains__(self, x):\n        return True",
     "defines __contains__ on a subclass of tuple"),
    ("class D(dict):\n    def __bool__(self):\n        return True",
     "defines __bool__ on a subclass of dict"),
    ("class F(float):\n    def __len__(self):\n        return 2",
     "defines __len__ on a subclass of float"),
    ("class B(bool.__base__):\n    def __index__(self):\n        return 1",
     "reaches `__base__` (object internals)"),
    ("class L(list):\n    def __iter__(self):\n        return iter([True, True])",
     "defines __iter__ on a subclass of list"),
    ("class I(int):\n    def __index__(self):\n        return 3",
     "defines __index__ on a subclass of int"),
    ("class I(int):\n    def __int__(self):\n        return 3",
     "defines __int__ on a subclass of int"),
    ("class E(Exception):\n    def __eq__(self, other):\n        return True",
     "defines __eq__ on a subclass of Exception"),
    ("class E(RuntimeError):\n    def __eq__(self, other):\n        return True",
     "defines __eq__ on a subclass of RuntimeError"),
    ("class L(list):\n    __eq__ = lambda self, other: True",
     "defines __eq__ on a subclass of list"),
    ("import collections\nclass U(collections.UserList):\n    def __eq__(self, o):\n"
     "        return True", "defines __eq__ on a subclass of collections.UserList"),
    ("class S(torch.Size):\n    def __eq__(self, other):\n        return True",
     "defines __eq__ on a subclass of torch.Size"),
    ("class A:\n    def __eq__(self, other):\n        return True",
     "defines __eq__ (decides what the tests' comparisons see)"),
    ("C = type('C', (list,), namespace)",
     "calls type() with three arguments (builds a class the audit cannot see)"),
    ("C = type('C', (list,), {'__eq__': lambda s, o: True})", "names '__eq__' in a string"),
    # how warnings are shown
    ("import warnings\nwarnings.formatwarning = lambda *a, **k: ''",
     "replaces warnings.formatwarning (how warnings are shown)"),
    ("import warnings\nwarnings.showwarning = print",
     "replaces warnings.showwarning (how warnings are shown)"),
    ("import warnings as w\nsetattr(w, 'showwarning', print)",
     "replaces warnings.showwarning (how warnings are shown)"),
    ("import linecache", "imports linecache (reaches the interpreter's internals)"),
    # code that goes on running
    ("import threading\nthreading.Thread(target=spin).start()",
     "imports threading (runs code in the background)"),
    ("import _thread", "imports _thread (runs code in the background)"),
    ("import multiprocessing", "imports multiprocessing (starts processes)"),
    ("import concurrent.futures", "imports concurrent.futures (runs code in the background)"),
    ("import asyncio", "imports asyncio (runs code in the background)"),
    ("import torch.multiprocessing as mp", "imports torch.multiprocessing (starts processes)"),
    ("import atexit", "imports atexit (reaches the interpreter's internals)"),
    ("import signal", "imports signal (handles signals or file descriptors)"),
    ("import weakref\nweakref.finalize(net, print)",
     "imports weakref (reaches the interpreter's internals)"),
    ("import posix\nposix.system('ls')", "uses posix.system (starts or signals processes)"),
    # object internals and every object
    ("def f():\n    pass\nc = f.__code__", "reaches `__code__` (object internals)"),
    ("def f():\n    pass\ng = f.__globals__", "reaches `__globals__` (object internals)"),
    ("def f():\n    pass\nc = f.__closure__", "reaches `__closure__` (object internals)"),
    ("d = net.__dict__", "reaches `__dict__` (object internals)"),
    ("import gc\nobjs = gc.get_objects()",
     "uses gc.get_objects (reaches every object in the interpreter)"),
    ("import gc\nrefs = gc.get_referrers(torch.allclose)",
     "uses gc.get_referrers (reaches every object in the interpreter)"),
    ("import gc", "imports gc (reaches the interpreter's internals)"),
    ("import ctypes", "imports ctypes (reaches the interpreter's memory)"),
    ("import sys\nsys.settrace(tracer)", "uses sys.settrace (an interpreter hook)"),
    ("import sys\nsys.setprofile(tracer)", "uses sys.setprofile (an interpreter hook)"),
    ("import sys\nsys.addaudithook(print)", "uses sys.addaudithook (an interpreter hook)"),
    ("import threading\nthreading.settrace(tracer)",
     "uses threading.settrace (an interpreter hook)"),
    ("import nbformat", "imports nbformat (reaches the grader)"),
]


@pytest.mark.parametrize("code, reason", BLIND_SPOTS)
def test_the_audit_flags_each_blind_spot(code, reason):
    found = findings(code)
    assert any(reason in f for f in found), found


# The structural rules, shown on names that no list in the audit holds.
STRUCTURE = [
    ("x = net.__weird_new_thing__", "reaches `__weird_new_thing__` (object internals)"),
    ("x = getattr(net, '__weird_new_thing__')",
     "reaches `__weird_new_thing__` (object internals)"),
    ("x = net.__len__", "reaches `__len__` (object internals)"),
    ("type(net).__eq__ = f", "sets `__eq__` (object internals)"),
    ("setattr(type(net), '__init__', f)", "sets `__init__` (object internals)"),
    ("x = __class__", "uses `__class__` (interpreter internals)"),
    ("x = __build_class__", "uses `__build_class__` (interpreter internals)"),
    ("k = '__weird_new_thing__'", "names '__weird_new_thing__' in a string"),
    ("class A:\n    def __weird_new_thing__(self):\n        pass",
     "defines __weird_new_thing__ (changes how Python treats the object)"),
    ("class A:\n    __module__ = 'builtins'",
     "defines __module__ (changes how Python treats the object)"),
    ("class L(list):\n    def __weird_new_thing__(self):\n        pass",
     "defines __weird_new_thing__ on a subclass of list"),
    ("def __getattr__(name):\n    return True",
     "defines __getattr__ (decides what attribute access does)"),
    ("x = torch._C", "reaches torch._C (a library's private internals)"),
    ("f = nn.Module._call_impl", "reaches nn.Module._call_impl (a library's private internals)"),
    ("x = torch.nn.modules._anything_at_all",
     "reaches torch.nn.modules._anything_at_all (a library's private internals)"),
    ("from torch import _anything", "imports torch._anything (a library's private internals)"),
    ("x = getattr(net, name)", "getattr() with a computed attribute name"),
    ("x = getattr(net, 'wei' + 'ght')", "getattr() with a computed attribute name"),
    ("x = getattr(net, *names)", "getattr() with a computed attribute name"),
    ("setattr(net, name, 1)", "setattr() with a computed attribute name"),
    ("delattr(net, name)", "delattr() with a computed attribute name"),
    ("x = getattr(net, b'weight')", "getattr() with a computed attribute name"),
    ("x = getattr(net, '_getframe')", "uses net._getframe (reaches frames and their variables)"),
]


@pytest.mark.parametrize("code, reason", STRUCTURE)
def test_the_structural_rules_flag_what_no_list_names(code, reason):
    found = findings(code)
    assert any(reason in f for f in found), found


def test_findings_name_their_cell_and_line():
    found = audit.audit([("ex1-solution", "x = 1\nimport inspect\n")], course_code("pytorch"))
    assert found == ["ex1-solution line 2: imports inspect (reaches the interpreter's "
                     "internals)"]


def test_an_alias_made_in_one_cell_counts_in_the_next():
    cells = [("a", "import IPython.display as d\n"), ("b", "ip = d.get_ipython()\n"),
             ("c", "import warnings\nW = warnings\n"), ("d", "W.showwarning = print\n")]
    found = audit.audit(cells, course_code("pytorch"))
    assert "b line 1: uses IPython.display.get_ipython (reaches into the kernel)" in found
    assert "d line 1: replaces warnings.showwarning (how warnings are shown)" in found


def test_a_written_file_and_an_unknown_import_are_flagged_across_cells():
    cells = [("w", "with open(name, 'w') as f:\n    f.write(code)\n"),
             ("i", "import numpy, os\nimport helper\n")]
    assert audit.audit(cells, course_code("pytorch")) == [
        "i line 2: imports helper, which is no known package, and the submission writes "
        "files (w line 1)"]


# ------------------------------------------------------------------ what must not be

EVERYDAY = [
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.output = nn.LazyLinear(3)\n\n    def forward(self, X):\n"
    "        return self.output(X)",
    "class Spy(nn.Module):\n    def __call__(self, x):\n        return x",
    "if __name__ == '__main__':\n    print(__name__)",
    "try:\n    net(X)\nexcept Exception as e:\n    kind = type(e).__name__",
    "print(torch.__version__, type(net).__qualname__, type(net).__module__)",
    "class Data:\n    def __init__(self, xs):\n        self.xs = xs\n\n"
    "    def __len__(self):\n        return len(self.xs)\n\n"
    "    def __getitem__(self, i):\n        return self.xs[i]\n\n"
    "    def __iter__(self):\n        return iter(self.xs)\n\n"
    "    def __repr__(self):\n        return 'Data()'",
    "class ShapeError(ValueError):\n    def __init__(self, msg):\n        super().__init__(msg)\n\n"
    "    def __str__(self):\n        return 'shape: ' + self.args[0]",
    "import collections\nPoint = collections.namedtuple('Point', 'x y')\n"
    "p = Point(1, 2)._replace(x=3)",
    "from dataclasses import dataclass\n\n@dataclass\nclass Cfg:\n    lr: float = 0.1",
    "from IPython.display import display, HTML, Markdown\ndisplay(HTML('<b>x</b>'))\n"
    "display(Markdown('*x*'))",
    "import IPython.display\nIPython.display.display(IPython.display.Markdown('x'))",
    "x = hasattr(net, '__len__') and callable(net)",
    "x = getattr(net, 'weight', None)",
    "with open('notes.txt', 'w') as f:\n    f.write('x')\nimport numpy as np",
    "state = torch.load('w.pt', weights_only=True)",
    "import numpy as np\nw = np.load('w.npy')",
    "import os\nprint(os.getcwd(), os.path.join('a', 'b'))",
    "import sys\nprint('sizes', file=sys.__stderr__, flush=True)",
    "def f():\n    \"\"\"Calls __torch_function__ and friends, in words only.\"\"\"\n    return 1",
    "s = 'text'.replace('a', 'b')",
    "import warnings\nwith warnings.catch_warnings():\n    warnings.simplefilter('ignore')",
    "import logging\nlogging.getLogger(__name__).info('x')",
    "with torch.no_grad():\n    net.eval()\n    y = net(X)",
    "nn.init.normal_(net[0].weight)",
    "total = sum(p.numel() for p in net.parameters())",
]


@pytest.mark.parametrize("code", EVERYDAY)
def test_everyday_code_raises_no_finding(code):
    assert findings(code) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_the_reference_solutions_without_their_markers_raise_no_finding(fw):
    cells = solutions(fw)
    assert len(cells) >= 3
    assert audit.audit(cells, course_code(fw)) == []


# What the chapter notebooks' code cells are known to give: the Colab install cell (importlib,
# subprocess, sys.modules) and two lessons that look at an exception's MRO and probe names.
CHAPTER_KNOWN = ("imports importlib (", "imports importlib.util (", "imports subprocess (",
                 "uses sys.modules (", "reaches `__mro__` (object internals)",
                 "hasattr() with a computed attribute name")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_the_chapter_notebooks_raise_only_the_known_findings(fw):
    nb = nbformat.read(ROOT / "notebooks" / f"lazy-init-{fw}.ipynb", as_version=4)
    cells = [(f"cell {i}", c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    found = audit.audit(cells, course_code(fw))
    assert [f for f in found if not any(k in f for k in CHAPTER_KNOWN)] == []


def test_what_the_courses_released_code_does_is_no_finding():
    course = ["import torch\n",
              "def probe(net, names):\n    return [hasattr(net, n) for n in names]\n",
              "def answer(net):\n    ### BEGIN SOLUTION\n    import inspect\n"
              "    return getattr(net, name)\n    ### END SOLUTION\n",
              "assert answer(1) == 1\n### BEGIN HIDDEN TESTS\nimport gc\n"
              "### END HIDDEN TESTS\n"]
    student = [("s", "def probe(net, names):\n    return [hasattr(net, n) for n in names]\n"
                     "import inspect\nimport gc\nx = getattr(net, name)\ntorch = None\n")]
    found = audit.audit(student, course)
    assert not any("hasattr()" in f for f in found), found  # the course's own code does it
    for reason in ("imports inspect", "imports gc", "getattr() with a computed attribute name",
                   "rebinds `torch`"):  # only its solutions and hidden tests do these
        assert any(reason in f for f in found), (reason, found)


def test_the_audit_keeps_its_signature_and_gives_strings():
    found = audit.audit([("a", "import ctypes\n"), ("b", "def broken(:\n")], ["import torch\n"])
    assert found == ["a line 1: imports ctypes (reaches the interpreter's memory)"]


# ------------------------------------------------------------------ the guard in the kernel

GUARD = ROOT / "grader" / "kernel_guard.py"
# Runs cells in an IPython shell with the guard loaded as the grader loads it, and prints what
# after() reported for each: a process of its own, since an audit hook cannot be removed.
RUNNER = """
import json, sys, types
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
guard = types.ModuleType("_d2l_grading_guard")
exec(compile(open(sys.argv[1]).read(), "<grading guard>", "exec"), guard.__dict__)
sys.modules["_d2l_grading_guard"] = guard
guard.install(json.dumps({"modules": ["random"]}))
reports = []
for kind, code in json.loads(sys.stdin.read()):
    if kind == "course":
        guard.before(True, None, None)
    shell.run_cell(code, store_history=True)
    reports.append(json.loads(guard.after(None, [], [])))
print("REPORTS" + json.dumps(reports))
"""
# Whatever the shell itself changes outside a kernel (it is no ipykernel)
SHELL_NOISE = re.compile(r"^(stdout|stderr|displayhook): ")


def guarded(cells: list[tuple[str, str]], tmp_path) -> list[list[str]]:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    proc = subprocess.run([sys.executable, str(runner), str(GUARD)], input=json.dumps(cells),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("REPORTS")), None)
    assert line is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [[r for r in cell if not SHELL_NOISE.match(r)] for cell in json.loads(line[7:])]


@pytest.fixture(scope="module")
def guard_reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard")
    cells = [
        # 0: a course cell doing what the student's may not: nobody's to report
        ("course", "import subprocess\nsubprocess.run(['true'])\nimport random\n"),
        # 1: everyday code whose libraries reach frames themselves
        ("student", "import logging, collections, warnings\n"
                    "logging.getLogger('x').warning('note')\n"
                    "P = collections.namedtuple('P', 'a b')\nwarnings.warn('careful')\n"),
        ("student", "import os\nos.system('true')\n"),  # 2
        ("student", "import sys\nframe = sys._getframe()\n"),  # 3
        ("student", "import subprocess\nsubprocess.run(['true'])\n"),  # 4
        ("student", "import pickle\npickle.loads(pickle.dumps(print))\n"),  # 5
        ("student", f"import sys\nsys.path.insert(0, {str(tmp)!r})\n"  # 6
                    "open('written_helper.py', 'w').write('X = 1\\n')\nimport written_helper\n"),
        ("student", "import threading, time\ndef spin():\n    while True:\n"  # 7
                    "        time.sleep(0.05)\n"
                    "threading.Thread(target=spin, daemon=True, name='spinner').start()\n"),
        ("student", "import threading\ndef later():\n    pass\n"  # 8
                    "t = threading.Timer(60, later)\nt.daemon = True\nt.name = 'timer'\n"
                    "t.start()\nquiet = threading.Timer(60, print)\nquiet.daemon = True\n"
                    "quiet.name = 'library-timer'\nquiet.start()\n"),
        ("student", "import _thread, time\ndef raw():\n    time.sleep(60)\n"  # 9
                    "_thread.start_new_thread(raw, ())\ntime.sleep(0.1)\n"),
        ("student", "def sneaky():\n    import os\n    os.kill(os.getpid(), 0)\n"),  # 10
        ("course", "sneaky()\n"),  # 11: the student's function, called by a test
        ("student", "y = 2\n"),  # 12
    ]
    return guarded(cells, tmp)


def test_the_guard_leaves_the_courses_code_and_libraries_alone(guard_reports):
    assert guard_reports[0] == [] and guard_reports[1] == []
    assert guard_reports[10] == [] and guard_reports[12] == []


def test_the_guard_reports_the_audit_events_of_the_students_code(guard_reports):
    assert guard_reports[2] == ["called os.system"]
    assert guard_reports[3] == ["called sys._getframe"]
    assert guard_reports[4] == ["started a process (['true'])"]
    assert guard_reports[5] == ["unpickled builtins.print"]
    assert guard_reports[11] == ["called os.kill"]  # called from a test, still the student's


def test_the_guard_reports_a_module_the_student_wrote(guard_reports):
    written = [r for r in guard_reports[6] if r.startswith("module written_helper was imported "
                                                            "from ")]
    assert len(written) == 1 and written[0].endswith(
        "written_helper.py, a file outside the installed packages"), guard_reports[6]
    assert any(r.startswith("wrote the code file ") and r.endswith("/written_helper.py")
               for r in guard_reports[6]), guard_reports[6]


def test_the_guard_reports_threads_left_running(guard_reports):
    assert guard_reports[7] == ["threads left running: spinner"]
    assert guard_reports[8] == ["threads left running: spinner, timer"]  # not print's timer
    assert len(guard_reports[9]) == 1 and guard_reports[9][0].startswith(
        "threads left running: spinner, thread ")  # started with _thread: no name of its own


def test_the_guard_imports_only_the_standard_library_and_ipython():
    tree = ast.parse(GUARD.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module and n.module != "__future__"}
    assert modules - set(sys.stdlib_module_names) == {"IPython"}
