"""A static audit of the student's code: what reaches into the grader's ground, flagged for review.

Nothing is executed: each student code cell is turned into plain Python the way IPython
would (magics and shell escapes become calls), parsed, and walked. A finding does not
change the score; it goes to the `review` column of grades.csv and the instructor's summary,
so that a person looks at the notebook. The rules are deliberately broad: a correct answer to
these exercises needs none of what they flag.

Flagged:
  - modules that reach the kernel, the interpreter's internals, processes, signals, threads,
    the network or raw memory (IPython, ctypes, socket, subprocess, gc, inspect, ...);
  - sys hooks and internals (sys.settrace, sys.modules, sys._getframe, ...), os calls that
    start or signal processes;
  - eval, exec, compile, __import__, globals/locals/vars, getattr-like calls with a computed
    attribute name, and those functions passed around as values;
  - object internals: dunder attributes other than the everyday ones, frame and code objects;
  - IPython's history and magics (In, Out, _ih, get_ipython, %magics other than timing,
    shell commands);
  - paths under /proc, /sys and /dev;
  - rebinding an attribute of an imported library (`torch.allclose = ...`, `setattr(nn, ...)`),
    or rebinding a name the course's own cells import and the tests use (`torch = ...`).

The same module also answers what the grading job needs to know about the course's cells:
the modules they use and the names they bind.
"""

from __future__ import annotations

import ast
import functools
import re

MODULE_REASONS = {
    "reaches into the kernel": {"IPython", "ipykernel", "jupyter_client", "jupyter_core",
                                "zmq", "traitlets", "tornado", "comm", "debugpy"},
    "reaches the interpreter's memory": {"ctypes", "_ctypes", "cffi"},
    "reaches the interpreter's internals": {"builtins", "importlib", "inspect", "gc",
                                            "linecache", "traceback", "code", "codeop",
                                            "marshal", "pickle", "dill", "cloudpickle",
                                            "shelve", "atexit", "site", "sysconfig", "dis",
                                            "tracemalloc", "faulthandler", "_imp"},
    "starts processes": {"subprocess", "_posixsubprocess", "multiprocessing", "pty",
                         "pexpect", "popen2", "sh"},
    "runs code in the background": {"threading", "_thread", "concurrent", "asyncio",
                                    "sched"},
    "handles signals or file descriptors": {"signal", "fcntl", "select", "selectors",
                                            "mmap", "resource", "termios"},
    "opens network connections": {"socket", "_socket", "ssl", "urllib", "urllib3", "http",
                                  "requests", "httpx", "ftplib", "smtplib", "telnetlib",
                                  "xmlrpc", "socketserver", "aiohttp"},
    "opens a database": {"sqlite3", "dbm"},
}
DENIED_MODULES = {m: why for why, mods in MODULE_REASONS.items() for m in mods}
SYS_ATTRS = {"settrace", "setprofile", "gettrace", "getprofile", "displayhook", "excepthook",
             "__displayhook__", "__excepthook__", "modules", "meta_path", "path_hooks",
             "path_importer_cache", "addaudithook", "audit", "_getframe", "_current_frames",
             "_current_exceptions", "last_type", "last_value", "last_traceback", "last_exc",
             "breakpointhook", "unraisablehook", "set_asyncgen_hooks", "setswitchinterval",
             "remote_exec", "_clear_type_cache", "activate_stack_trampoline"}
OS_ATTRS = {"system", "popen", "fork", "forkpty", "kill", "killpg", "setsid", "setpgid",
            "setpgrp", "setuid", "setgid", "seteuid", "setresuid", "setreuid", "chroot",
            "ptrace", "posix_spawn", "posix_spawnp", "pidfd_open", "register_at_fork",
            "unshare", "setns", "memfd_create", "write", "dup2"}
OS_PREFIXES = ("exec", "spawn")
TYPES_ATTRS = {"FunctionType", "CodeType", "LambdaType", "FrameType", "TracebackType",
               "CellType", "MethodType", "BuiltinFunctionType", "ModuleType"}
BUILTIN_CALLS = {"eval", "exec", "compile", "__import__", "globals", "locals", "vars",
                 "breakpoint", "memoryview"}
ATTR_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
HISTORY_NAMES = {"In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "get_ipython",
                 "__builtins__", "__builtin__", "__loader__", "__spec__"}
HISTORY_PATTERN = re.compile(r"_i?\d+")
SAFE_DUNDERS = {"__init__", "__call__", "__name__", "__qualname__", "__doc__", "__len__",
                "__iter__", "__next__", "__getitem__", "__setitem__", "__contains__",
                "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
                "__ge__", "__hash__", "__enter__", "__exit__", "__version__", "__add__",
                "__mul__", "__sub__", "__truediv__", "__matmul__", "__neg__", "__abs__",
                "__bool__", "__float__", "__int__", "__format__", "__annotations__"}
FRAME_ATTR = re.compile(r"^(f|tb|gi|cr|ag|co)_[a-z]+$")
DUNDER = re.compile(r"^__\w+__$")
DANGEROUS_STRING = re.compile(r"__(globals|builtins|subclasses|code|closure|dict|class|bases|"
                              r"mro|getattribute|setattr|delattr|import|loader|spec|self|"
                              r"func|defaults|kwdefaults|reduce|reduce_ex|traceback)__|"
                              r"/proc\b|/sys/|/dev/|\bf_globals\b|\bf_back\b|\bf_locals\b")
ALLOWED_MAGICS = {"time", "timeit", "matplotlib"}  # %time and %timeit: the code is audited


@functools.cache
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def transformed(source: str) -> str:
    """A cell as IPython runs it: magics and shell escapes become get_ipython() calls."""
    return _transformer().transform_cell(source)


@functools.lru_cache(maxsize=512)  # the course's cells are parsed for every submission
def parse(source: str, label: str = "<cell>") -> ast.Module | None:
    """The cell's syntax tree (shared: callers must not change it), None if it cannot run."""
    try:
        return compile(transformed(source), label, "exec",
                       ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):  # it cannot run either: nothing to audit
        return None


def root_name(node) -> str | None:
    """`torch` for torch.nn.Linear.forward, torch[...], torch.f().x."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def dotted(node) -> str | None:
    """"torch.nn.functional" for that attribute chain, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def imports(tree: ast.AST) -> dict[str, str]:
    """The names module-level imports bind: alias -> module (or module.attribute) path."""
    bound = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    bound[a.asname] = a.name
                else:
                    bound[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name != "*":
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
    return bound


def bound_names(source: str) -> list[str]:
    """Every name a cell binds at module level (to put them back after a hidden test)."""
    tree = parse(source)
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)  # its body binds its own locals
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                             ast.GeneratorExp)):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in getattr(tree, "body", []):
        visit(stmt)
    return sorted(names)


def modules_used(sources: list[str]) -> list[str]:
    """Modules the course's cells import or reach through an attribute of an import:
    the guard watches their functions and classes for replacements."""
    found = set()
    for source in sources:
        tree = parse(source)
        if tree is None:
            continue
        aliases = imports(tree)
        found.update(aliases.values())
        for node in ast.walk(tree):
            name = dotted(node) if isinstance(node, ast.Attribute) else None
            if name and name.split(".")[0] in aliases:
                head, *rest = name.split(".")
                path = aliases[head]
                for part in rest[:-1]:  # prefixes that may be submodules
                    path = f"{path}.{part}"
                    found.add(path)
    return sorted(found)


class _Auditor(ast.NodeVisitor):
    def __init__(self, protected: dict[str, str], libraries: set[str]):
        self.protected = protected  # names the course's cells import: alias -> module path
        self.libraries = set(libraries)  # names bound to a library object (imports, aliases)
        self.found: list[tuple[int, str]] = []
        self.depth = 0  # inside a function or class body
        self.globals: set[str] = set()

    def flag(self, node, why: str) -> None:
        self.found.append((getattr(node, "lineno", 0), why))

    # imports
    def _module(self, node, module: str) -> None:
        top = module.split(".")[0]
        if module == "IPython.display" or module.startswith("IPython.display."):
            return  # it only shows outputs, which the grader caps and sanitizes
        if top in DENIED_MODULES:
            self.flag(node, f"imports {module} ({DENIED_MODULES[top]})")

    def visit_Import(self, node):
        for a in node.names:
            self._module(node, a.name)
            name = a.asname or a.name.split(".")[0]
            self._binds(node, name, a.name if a.asname else a.name.split(".")[0])
            self.libraries.add(name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self._module(node, module)
        for a in node.names:
            if module == "os" and (a.name in OS_ATTRS or a.name.startswith(OS_PREFIXES)):
                self.flag(node, f"imports os.{a.name} (starts or signals processes)")
            if module == "sys" and a.name in SYS_ATTRS:
                self.flag(node, f"imports sys.{a.name} (an interpreter hook)")
            if a.name == "*":
                self.flag(node, f"`from {module} import *` can rebind names the tests use")
                continue
            name = a.asname or a.name
            self._binds(node, name, f"{module}.{a.name}")
            self.libraries.add(name)
        self.generic_visit(node)

    # names
    def _binds(self, node, name: str, module: str | None = None) -> None:
        """A module-level binding of `name` (to `module` when it is an import)."""
        if self.depth and name not in self.globals:
            return
        if name in self.protected and module != self.protected[name]:
            self.flag(node, f"rebinds `{name}`, which the tests use")

    def visit_Name(self, node):
        if node.id in HISTORY_NAMES or HISTORY_PATTERN.fullmatch(node.id):
            self.flag(node, f"uses `{node.id}` (IPython's history or internals)")
        elif node.id in BUILTIN_CALLS:
            self.flag(node, f"uses {node.id}() (runs or reaches code the audit cannot see)")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._binds(node, node.id)

    def visit_Global(self, node):
        self.globals.update(node.names)

    def _scoped(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._binds(node, node.name)
            for d in node.decorator_list:
                self.visit(d)
        self.depth += 1
        saved = set(self.globals)
        for child in ast.iter_child_nodes(node):
            if child not in getattr(node, "decorator_list", []):
                self.visit(child)
        self.globals = saved
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _scoped

    # attributes
    def visit_Attribute(self, node):
        attr, base = node.attr, dotted(node.value)
        if DUNDER.match(attr) and attr not in SAFE_DUNDERS:
            self.flag(node, f"reaches `{attr}` (object internals)")
        elif FRAME_ATTR.match(attr):
            self.flag(node, f"reaches `{attr}` (frames and code objects)")
        if base == "sys" and attr in SYS_ATTRS:
            self.flag(node, f"uses sys.{attr} (an interpreter hook)")
        if base == "os" and (attr in OS_ATTRS or attr.startswith(OS_PREFIXES)):
            self.flag(node, f"uses os.{attr} (starts or signals processes)")
        if base == "types" and attr in TYPES_ATTRS:
            self.flag(node, f"uses types.{attr} (builds code or functions)")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._rebinds(node, node)
        self.generic_visit(node)

    def visit_Subscript(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._rebinds(node, node)
        self.generic_visit(node)

    def _rebinds(self, node, target) -> None:
        root = root_name(target)
        if root == "sys":
            self.flag(node, "assigns to sys (interpreter state)")
        elif root in self.libraries or root in self.protected:
            what = dotted(target) or f"part of {root}"
            self.flag(node, f"rebinds {what}, an attribute of a library the tests use")

    def visit_Assign(self, node):
        # `alias = torch.nn`: the alias is a library object too
        if dotted(node.value) and dotted(node.value).split(".")[0] in self.libraries:
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.libraries.add(t.id)
        self.generic_visit(node)

    def visit_For(self, node):
        if isinstance(node.iter, (ast.Tuple, ast.List, ast.Set)) and isinstance(
                node.target, ast.Name) and any(
                isinstance(e, ast.Name) and e.id in self.libraries for e in node.iter.elts):
            self.libraries.add(node.target.id)
        self.generic_visit(node)

    # calls
    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if name in ATTR_CALLS:
            if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant):
                self.flag(node, f"{name}() with a computed attribute name")
            elif name in ("setattr", "delattr") and node.args and (
                    root_name(node.args[0]) in self.libraries | set(self.protected)):
                self.flag(node, f"{name}() on {dotted(node.args[0]) or 'a library'}, "
                                "a library the tests use")
            for arg in node.args[2:]:
                self.visit(arg)
            for arg in node.args[:2]:
                if not isinstance(arg, ast.Name) or arg.id not in ATTR_CALLS:
                    self.visit(arg)
            for kw in node.keywords:
                self.visit(kw)
            return
        if dotted(func) in ("operator.attrgetter", "operator.methodcaller") and not all(
                isinstance(a, ast.Constant) for a in node.args):
            self.flag(node, f"{dotted(func)}() with a computed attribute name")
        magic = self._magic(node)
        if magic is not None:
            for arg in node.args:
                if not isinstance(arg, ast.Constant):
                    self.visit(arg)
            return
        if name == "open" or dotted(func) in ("io.open", "os.open", "pathlib.Path"):
            pass  # paths are judged by their strings (visit_Constant)
        self.generic_visit(node)

    def _magic(self, node) -> str | None:
        """A call IPython made of %magic or !command: flag it unless it only times code,
        whose code is then audited like the rest. None if the call is no magic."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
                and isinstance(func.value.func, ast.Name)
                and func.value.func.id == "get_ipython"):
            return None
        if func.attr in ("system", "getoutput"):
            self.flag(node, "runs a shell command")
            return "!"
        if func.attr in ("run_line_magic", "run_cell_magic") and node.args and isinstance(
                node.args[0], ast.Constant):
            magic = str(node.args[0].value)
            if magic not in ALLOWED_MAGICS:
                self.flag(node, f"uses the %{magic} magic")
                return magic
            for arg in node.args[1:]:  # %time statement / %%timeit body: audit the code
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    sub = parse(arg.value)
                    if sub is not None:
                        for line, why in _audit_tree(sub, self.protected, self.libraries):
                            self.found.append((node.lineno + max(line - 1, 0), why))
            return magic
        self.flag(node, "uses get_ipython() (reaches into the kernel)")
        return func.attr

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            m = DANGEROUS_STRING.search(node.value)
            if m:
                self.flag(node, f"names {m.group(0)!r} in a string")


def _audit_tree(tree, protected, libraries) -> list[tuple[int, str]]:
    auditor = _Auditor(protected, libraries)
    auditor.visit(tree)
    libraries.update(auditor.libraries)
    return auditor.found


def audit(cells: list[tuple[str, str]], course_sources: list[str]) -> list[str]:
    """Findings for the student's code cells, [(label, source), ...] in notebook order.

    `course_sources` are the course's own cells (set-up, tests): the names they import are
    the ones the tests rely on.
    """
    protected: dict[str, str] = {}
    for source in course_sources:
        tree = parse(source)
        if tree is not None:
            protected.update(imports(tree))
    libraries: set[str] = set(protected)
    findings = []
    for label, source in cells:
        tree = parse(source, label)
        if tree is None:
            continue
        seen = set()
        for line, why in sorted(_audit_tree(tree, protected, libraries)):
            if why not in seen:  # one line per reason and cell
                seen.add(why)
                findings.append(f"{label} line {line}: {why}")
    return findings
