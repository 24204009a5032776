"""A static audit of the student's code: what reaches into the grader's ground, flagged for review.

Nothing is executed: each student code cell is turned into plain Python the way IPython
would (magics and shell escapes become calls), parsed, and walked. A finding does not
change the score; it goes to the `review` column of grades.csv and the instructor's summary,
so that a person looks at the notebook. The rules are deliberately broad: a correct answer to
these exercises needs none of what they flag.

Flagged, by name (the attacks thought of):
  - modules that reach the kernel, the grader, the interpreter's internals, processes,
    signals, threads, the network, raw memory or pickles (IPython, ctypes, socket,
    subprocess, gc, inspect, runpy, joblib, ...);
  - sys hooks and internals (sys.settrace, sys.modules, sys.path, sys._getframe,
    sys.exc_info, ...), os calls that start or signal processes, and the names that reach
    frames, hooks and every object (currentframe, get_referrers, ...) whatever module
    re-exports them;
  - eval, exec, compile, __import__, globals/locals/vars, getattr-like calls with a computed
    attribute name, those functions passed around as values or reached as attributes
    (`g = getattr`, `builtins.getattr`), operator.attrgetter/methodcaller, type() with
    three arguments;
  - IPython's history and magics (In, Out, _ih, get_ipython, %magics other than timing,
    shell commands), and of IPython.display anything but its display functions and
    classes; IPython's display and execution machinery (display_formatter, user_ns, ...);
  - the framework's dispatch hooks (TorchFunctionMode, torch.overrides, torch.library);
    loading pickles (pickle/joblib loads, torch.load without weights_only=True,
    allow_pickle, safe_mode=False);
  - paths under /proc, /sys and /dev, and code files named in a string ('x.py'); writing
    a file in a submission that imports a module that is no known package;
  - replacing how warnings are shown (warnings.showwarning = ...);
  - rebinding an attribute of an imported library (`torch.allclose = ...`, `setattr(nn, ...)`),
    or rebinding a name the course's own cells import and the tests use (`torch = ...`).

Flagged by structure (what no list of names covers):
  - any dunder attribute other than a few everyday ones (__init__, __name__, __version__,
    ...), read or set, by attribute or getattr/setattr with a literal name, or named in a
    string; any dunder name other than __name__ and its kin;
  - a library's private attributes (torch._C, np._core, nn.Module._call_impl);
  - defining a dunder method other than the ordinary ones (__init__, __call__, __repr__,
    __len__, __getitem__, ...): __del__, __init_subclass__, __torch_function__,
    __getattr__, ...; defining a comparison (__eq__, __hash__, __bool__, ...) on any class,
    and any special method but __init__/__repr__/__str__ on a subclass of a built-in type
    (list, str, int, tuple, an exception...) or of a tensor; metaclasses.

What the course's own code does is not flagged: the names its cells import are the ones the
tests rely on (importing them again is fine, rebinding them is not), and what its released
code (set-up, visible tests, the code around the solution regions) does itself gives no
finding in a student's cell, which starts as a copy of it.

The same module also answers what the grading job needs to know about the course's cells:
the modules they use and the names they bind.
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
import sys

MODULE_REASONS = {
    "reaches into the kernel": {"IPython", "ipykernel", "jupyter_client", "jupyter_core",
                                "zmq", "traitlets", "tornado", "comm", "debugpy"},
    "reaches the grader": {"grader", "nbgrader", "nbclient", "nbconvert", "nbformat",
                           "jupyter_server", "notebook"},
    "reaches the interpreter's memory": {"ctypes", "_ctypes", "cffi"},
    "reaches the interpreter's internals": {"builtins", "importlib", "inspect", "gc",
                                            "linecache", "traceback", "code", "codeop",
                                            "marshal", "pickle", "dill", "cloudpickle",
                                            "shelve", "atexit", "site", "sysconfig", "dis",
                                            "tracemalloc", "faulthandler", "_imp",
                                            "weakref", "_weakref", "pdb", "bdb", "trace",
                                            "cProfile", "profile", "_lsprof", "opcode",
                                            "_opcode", "_testcapi", "_testinternalcapi",
                                            "_xxsubinterpreters", "_frozen_importlib",
                                            "_frozen_importlib_external"},
    "runs code the audit cannot see": {"runpy", "pkgutil", "zipimport", "imp", "zipapp",
                                       "py_compile", "compileall"},
    "loads pickles, which runs code": {"joblib", "_pickle", "copyreg"},
    "starts processes": {"subprocess", "_posixsubprocess", "multiprocessing", "pty",
                         "pexpect", "popen2", "sh", "posix", "nt", "_multiprocessing"},
    "runs code in the background": {"threading", "_thread", "concurrent", "asyncio",
                                    "sched", "_asyncio"},
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
SYS_MORE = {"exc_info": "reaches tracebacks and their frames",
            "exception": "reaches tracebacks and their frames",
            "_getframemodulename": "reaches frames and their variables",
            "path": "changes where imports come from",
            "monitoring": "an interpreter hook", "call_tracing": "an interpreter hook",
            "setdlopenflags": "an interpreter hook"}
OS_MODULES = {"os", "posix", "nt"}
OS_ATTRS = {"system", "popen", "fork", "forkpty", "kill", "killpg", "setsid", "setpgid",
            "setpgrp", "setuid", "setgid", "seteuid", "setresuid", "setreuid", "chroot",
            "ptrace", "posix_spawn", "posix_spawnp", "pidfd_open", "register_at_fork",
            "unshare", "setns", "memfd_create", "write", "dup2", "dup", "openpty"}
OS_PREFIXES = ("exec", "spawn")
TYPES_ATTRS = {"FunctionType", "CodeType", "LambdaType", "FrameType", "TracebackType",
               "CellType", "MethodType", "BuiltinFunctionType", "ModuleType", "new_class",
               "prepare_class"}
BUILTIN_CALLS = {"eval", "exec", "compile", "__import__", "globals", "locals", "vars",
                 "breakpoint", "memoryview"}
ATTR_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
HISTORY_NAMES = {"In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "get_ipython",
                 "__builtins__", "__builtin__", "__loader__", "__spec__"}
HISTORY_PATTERN = re.compile(r"_i?\d+")
# dunder attributes a correct answer reads: super().__init__(), type(x).__name__,
# torch.__version__; and the original streams (print(..., file=sys.__stderr__))
SAFE_DUNDERS = {"__init__", "__name__", "__qualname__", "__doc__", "__version__",
                "__module__", "__stdout__", "__stderr__"}
SAFE_NAMES = {"__name__", "__doc__", "__file__", "__debug__", "__package__"}
SAFE_STRINGS = {"__main__", "__init__", "__name__", "__qualname__", "__doc__", "__version__",
                "__module__", "__call__", "__len__", "__iter__", "__getitem__"}
# Attribute names that reach frames, hooks or every object, whichever module re-exports
# them (logging.currentframe, inspect's, a module's `sys`), or that reach attributes and
# code by name; flagged on any object.
ATTR_REASONS = {
    **dict.fromkeys(("_getframe", "_current_frames", "_current_exceptions", "currentframe",
                     "exc_info", "_getframemodulename"), "reaches frames and their variables"),
    **dict.fromkeys(("settrace", "setprofile", "addaudithook"), "an interpreter hook"),
    **dict.fromkeys(("get_objects", "get_referrers", "get_referents"),
                    "reaches every object in the interpreter"),
    **dict.fromkeys(("attrgetter", "methodcaller"), "reaches attributes by name"),
    **dict.fromkeys(("getattr", "setattr", "delattr", "globals", "locals", "vars",
                     "__import__"), "runs or reaches code the audit cannot see"),
    **dict.fromkeys(("TorchFunctionMode", "TorchDispatchMode", "BaseTorchFunctionMode",
                     "_python_dispatch"), "takes over the framework's operations"),
    **dict.fromkeys(("read_pickle", "Unpickler", "enable_unsafe_deserialization"),
                    "unpickling runs code"),
    **dict.fromkeys(("display_formatter", "formatters", "display_pub", "user_ns",
                     "user_global_ns", "user_ns_hidden", "ast_transformers",
                     "input_transformers_cleanup", "input_transformers_post",
                     "input_transformer_manager", "custom_exceptions", "set_custom_exc",
                     "CustomTB", "InteractiveTB", "SyntaxTB", "showtraceback",
                     "history_manager", "magics_manager", "register_magic_function",
                     "iopub_socket", "run_cell", "run_cell_async", "run_ast_nodes",
                     "ipython_display_formatter", "mimebundle_formatter"),
                    "reaches into the kernel"),
}
# what of IPython.display only shows an output (which the grader caps and sanitizes)
DISPLAY_NAMES = {"display", "HTML", "Markdown", "Latex", "Math", "Image", "SVG", "JSON",
                 "Code", "Pretty", "clear_output", "IFrame", "Audio", "Video", "FileLink",
                 "FileLinks", "YouTubeVideo", "Javascript", "ProgressBar", "DisplayHandle",
                 "update_display", "set_matplotlib_formats", "GeoJSON", "DisplayObject",
                 "TextDisplayObject"}
PATH_REASONS = {"torch.overrides": "takes over the framework's operations",
                "torch.library": "takes over the framework's operations",
                "torch.utils._python_dispatch": "takes over the framework's operations",
                "torch.multiprocessing": "starts processes"}
UNPICKLERS = {"pickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
WARNING_HOOKS = {"showwarning", "formatwarning", "_showwarnmsg", "_showwarnmsg_impl",
                 "_formatwarnmsg", "_formatwarnmsg_impl", "filters"}
FRAME_ATTR = re.compile(r"^(f|tb|gi|cr|ag|co)_[a-z]+$")
DUNDER = re.compile(r"^__\w+__$")
DANGEROUS_STRING = re.compile(r"__(globals|builtins|subclasses|code|closure|dict|class|bases|"
                              r"mro|getattribute|setattr|delattr|import|loader|spec|self|"
                              r"func|defaults|kwdefaults|reduce|reduce_ex|traceback)__|"
                              r"/proc\b|/sys/|/dev/|\bf_globals\b|\bf_back\b|\bf_locals\b|"
                              r"\b(f_builtins|f_code|tb_frame|tb_next|gi_frame|cr_frame|"
                              r"ag_frame|gi_code|co_code|co_consts)\b")
DUNDER_IN_STRING = re.compile(r"(?<!\w)__[A-Za-z0-9]\w*?__(?!\w)")
CODE_FILE = re.compile(r"\.(py[cdiow]?|pth|so|pyd)$")
# public names with a leading underscore (os._exit, a namedtuple's _replace)
PUBLIC_UNDERSCORE = {"_exit", "_asdict", "_replace", "_fields", "_make", "_field_defaults"}
ALLOWED_MAGICS = {"time", "timeit", "matplotlib"}  # %time and %timeit: the code is audited

# Special methods an ordinary class defines (a Dataset's __len__, a module's __call__)
ORDINARY_METHODS = {"__init__", "__call__", "__repr__", "__str__", "__len__", "__iter__",
                    "__next__", "__getitem__", "__setitem__", "__delitem__", "__enter__",
                    "__exit__", "__post_init__", "__add__", "__radd__", "__sub__",
                    "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
                    "__floordiv__", "__mod__", "__pow__", "__matmul__", "__rmatmul__",
                    "__neg__", "__pos__", "__abs__", "__slots__"}
COMPARISONS = {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
               "__bool__", "__contains__"}
# what a special method defined on a built-in type's subclass may change without notice
PLAIN_ON_BUILTINS = {"__init__", "__repr__", "__str__", "__slots__"}
METHOD_REASONS = {
    **dict.fromkeys(("__torch_function__", "__torch_dispatch__", "__array_function__",
                     "__array_ufunc__", "__array_wrap__", "__array_prepare__",
                     "__array_finalize__", "__array_priority__", "__array__",
                     "__array_interface__", "__array_namespace__", "__jax_array__",
                     "__tf_tensor__", "__dlpack__", "__cuda_array_interface__"),
                    "takes over the framework's operations"),
    "__del__": "runs code when the object is collected, at no time a cell chooses",
    **dict.fromkeys(("__init_subclass__", "__set_name__", "__prepare__", "__mro_entries__"),
                    "runs code whenever a class is made"),
    "__class_getitem__": "runs code when the class is subscripted",
    **dict.fromkeys(("__getattr__", "__getattribute__", "__setattr__", "__delattr__",
                     "__get__", "__set__", "__delete__", "__dir__"),
                    "decides what attribute access does"),
    **dict.fromkeys(("__instancecheck__", "__subclasscheck__", "__subclasshook__"),
                    "decides what isinstance() says"),
    **dict.fromkeys(("__reduce__", "__reduce_ex__", "__getstate__", "__setstate__",
                     "__getnewargs__", "__getnewargs_ex__", "__copy__", "__deepcopy__"),
                    "decides what pickling and copying run"),
    **dict.fromkeys(COMPARISONS, "decides what the tests' comparisons see"),
}
BUILTIN_TYPES = {n for n, v in vars(builtins).items()
                 if isinstance(v, type) and n not in ("object", "type")}
VALUE_TYPES = {"collections.UserList", "collections.UserDict", "collections.UserString",
               "collections.OrderedDict", "collections.defaultdict", "collections.Counter",
               "collections.deque", "typing.NamedTuple", "torch.Tensor", "torch.Size",
               "torch.nn.Parameter", "torch.nn.parameter.Parameter", "numpy.ndarray",
               "numpy.generic", "jax.Array", "tensorflow.Tensor", "tensorflow.Variable",
               "mxnet.np.ndarray", "mxnet.numpy.ndarray"}
# Packages a submission may import after writing a file without that being a module it wrote
KNOWN_PACKAGES = {"numpy", "scipy", "pandas", "matplotlib", "torch", "torchvision",
                  "torchaudio", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax",
                  "chex", "mxnet", "d2l", "d2l_shim", "sklearn", "PIL", "tqdm", "seaborn",
                  "IPython", "ipywidgets", "sympy", "einops", "pytest"}
WRITE_METHODS = {"write_text", "write_bytes", "symlink_to", "hardlink_to"}
WRITE_FUNCTIONS = {"shutil.copy", "shutil.copyfile", "shutil.copy2", "shutil.copytree",
                   "shutil.move", "os.rename", "os.replace", "os.symlink", "os.link",
                   "os.write"}
# a solution or hidden-test region of a course cell, as nbgrader's release replaces it
SOLUTION_REGION = re.compile(r"^([ \t]*)### BEGIN (SOLUTION|HIDDEN TESTS)[^\n]*\n.*?"
                             r"^[ \t]*### END \2[^\n]*(?:\n|$)", re.M | re.S)


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


def _path_reason(path: str, store: bool) -> str | None:
    """Why reaching the resolved dotted `path` (`IPython.core.x`) is flagged, if it is."""
    parts = path.split(".")
    if parts[0] == "IPython":
        if parts[:2] == ["IPython", "display"] and (
                len(parts) == 2 or (len(parts) == 3 and parts[2] in DISPLAY_NAMES)):
            return None
        return "reaches into the kernel"
    for prefix, why in PATH_REASONS.items():
        if path == prefix or path.startswith(prefix + "."):
            return why
    if parts[0] in UNPICKLERS and parts[-1] in ("load", "loads", "Unpickler", "open"):
        return "unpickling runs code"
    if store and len(parts) == 2 and parts[0] == "warnings" and parts[1] in WARNING_HOOKS:
        return "how warnings are shown"
    return None


class _Context:
    """What the audit of one submission carries from cell to cell."""

    def __init__(self, protected: dict[str, str]):
        self.protected = protected  # names the course's cells import: alias -> module path
        self.libraries: set[str] = set(protected)  # names bound to a library object
        self.aliases: dict[str, str] = dict(protected)  # name -> the module path it holds
        self.writes: list[tuple[str, int]] = []  # (label, line) of calls that write files
        self.imported: list[tuple[str, int, str]] = []  # (label, line, module)


class _Auditor(ast.NodeVisitor):
    def __init__(self, ctx: _Context):
        self.ctx = ctx
        self.protected = ctx.protected
        self.libraries = ctx.libraries
        self.aliases = ctx.aliases
        self.found: list[tuple[int, str]] = []
        self.depth = 0  # inside a function or class body
        self.globals: set[str] = set()
        self.inner: set[int] = set()  # attribute nodes inside a chain already judged
        self.members: set[int] = set()  # a class's definitions, judged with the class
        self.docstrings: set[int] = set()

    def flag(self, node, why: str) -> None:
        self.found.append((getattr(node, "lineno", 0), why))

    def resolve(self, node) -> str | None:
        """The module path an attribute chain stands for (`nn.Linear` -> torch.nn.Linear),
        None when its root is no import."""
        name = dotted(node)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        if head not in self.aliases:
            return None
        return f"{self.aliases[head]}.{rest}" if rest else self.aliases[head]

    # imports
    def _module(self, node, module: str) -> None:
        top = module.split(".")[0]
        if module == "IPython.display" or module.startswith("IPython.display."):
            return  # it only shows outputs, which the grader caps and sanitizes
        if top in DENIED_MODULES:
            self.flag(node, f"imports {module} ({DENIED_MODULES[top]})")

    def _imported(self, node, module: str) -> None:
        if module and not getattr(node, "level", 0):
            self.ctx.imported.append((self.label, node.lineno, module.split(".")[0]))

    def visit_Import(self, node):
        for a in node.names:
            self._module(node, a.name)
            self._imported(node, a.name)
            why = _path_reason(a.name, False)
            if why and not a.name.startswith("IPython"):  # IPython: flagged as a module
                self.flag(node, f"imports {a.name} ({why})")
            name = a.asname or a.name.split(".")[0]
            self._binds(node, name, a.name if a.asname else a.name.split(".")[0])
            self.libraries.add(name)
            self.aliases[name] = a.name if a.asname else name
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self._module(node, module)
        self._imported(node, module)
        for a in node.names:
            path = f"{module}.{a.name}"
            if module in OS_MODULES and (a.name in OS_ATTRS or a.name.startswith(OS_PREFIXES)):
                self.flag(node, f"imports {path} (starts or signals processes)")
            elif module == "sys" and a.name in SYS_ATTRS:
                self.flag(node, f"imports sys.{a.name} (an interpreter hook)")
            elif module == "sys" and a.name in SYS_MORE:
                self.flag(node, f"imports sys.{a.name} ({SYS_MORE[a.name]})")
            elif (why := _path_reason(path, False)) and not (
                    module.split(".")[0] == "IPython" and module != "IPython.display"):
                self.flag(node, f"imports {path} ({why})")
            elif a.name in ATTR_REASONS:
                self.flag(node, f"imports {path} ({ATTR_REASONS[a.name]})")
            elif a.name.startswith("_") and not DUNDER.match(a.name) and not node.level and (
                    a.name not in PUBLIC_UNDERSCORE):
                self.flag(node, f"imports {path} (a library's private internals)")
            if a.name == "*":
                self.flag(node, f"`from {module} import *` can rebind names the tests use")
                continue
            name = a.asname or a.name
            self._binds(node, name, f"{module}.{a.name}")
            self.libraries.add(name)
            if not node.level:
                self.aliases[name] = path
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
        elif node.id in ATTR_CALLS - {"hasattr"}:  # a call's function is not visited here
            self.flag(node, f"uses {node.id} as a value (reaches attributes the audit "
                            "cannot see)")
        elif DUNDER.match(node.id) and node.id not in SAFE_NAMES and id(node) not in self.members:
            self.flag(node, f"uses `{node.id}` (interpreter internals)")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._binds(node, node.id)

    def visit_Global(self, node):
        self.globals.update(node.names)

    def _scoped(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._binds(node, node.name)
            for d in node.decorator_list:
                self.visit(d)
            self._docstring(node)
        if isinstance(node, ast.ClassDef):
            self._class(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and DUNDER.match(
                node.name) and id(node) not in self.members:
            self._defines(node, node.name, None)
        self.depth += 1
        saved = set(self.globals)
        for child in ast.iter_child_nodes(node):
            if child not in getattr(node, "decorator_list", []):
                self.visit(child)
        self.globals = saved
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _scoped

    def visit_Module(self, node):
        self._docstring(node)
        self.generic_visit(node)

    def _docstring(self, node) -> None:
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:  # string statements do nothing: docstrings, notes
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    self.docstrings.add(id(stmt.value))

    # classes
    def _value_base(self, base) -> str | None:
        """How a class base that is a built-in type or a value type is written, else None."""
        if isinstance(base, ast.Name) and base.id in BUILTIN_TYPES:
            return base.id
        if isinstance(base, ast.Call) and (dotted(base.func) or "").split(".")[-1] in (
                "namedtuple", "NamedTuple"):
            return "namedtuple(...)"
        name, path = dotted(base), self.resolve(base)
        if name and name.startswith("builtins.") and name.split(".", 1)[1] in BUILTIN_TYPES:
            return name
        if path in VALUE_TYPES:
            return name
        return None

    def _class(self, node: ast.ClassDef) -> None:
        for kw in node.keywords:
            if kw.arg == "metaclass":
                self.flag(node, f"defines {node.name} with a metaclass (runs code whenever "
                                "a class is made)")
        if any(isinstance(b, ast.Name) and b.id == "type" or dotted(b) == "builtins.type"
               for b in node.bases):
            self.flag(node, f"defines the metaclass {node.name} (runs code whenever a class "
                            "is made)")
        value_base = next(filter(None, map(self._value_base, node.bases)), None)
        for stmt in node.body:
            names = []
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.append((stmt, stmt.name))
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names += [(t, t.id) for t in targets if isinstance(t, ast.Name)]
            for target, name in names:
                if DUNDER.match(name):
                    self.members.add(id(target))
                    self._defines(stmt, name, value_base)

    def _defines(self, node, name: str, value_base: str | None) -> None:
        """`name`, a dunder, defined by a def or an assignment in a class body (value_base:
        the built-in or value type the class subclasses, if any) or a function."""
        if name in METHOD_REASONS and name not in COMPARISONS:
            self.flag(node, f"defines {name} ({METHOD_REASONS[name]})")
        elif value_base is not None and name not in PLAIN_ON_BUILTINS:
            self.flag(node, f"defines {name} on a subclass of {value_base}")
        elif name in METHOD_REASONS:
            self.flag(node, f"defines {name} ({METHOD_REASONS[name]})")
        elif name not in ORDINARY_METHODS:
            self.flag(node, f"defines {name} (changes how Python treats the object)")

    # attributes
    def visit_Attribute(self, node):
        self._attribute(node, node.attr, node.value, isinstance(node.ctx, (ast.Store, ast.Del)),
                        chain=node)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._rebinds(node, node)
        self.generic_visit(node)

    def _library_root(self, value) -> bool:
        root = root_name(value)
        return root in self.libraries or root in self.protected

    def _attribute(self, node, attr: str, value, store: bool, chain=None) -> None:
        """The rules for reaching `value.attr` (reading it, or setting it when `store`).
        `chain`: the attribute node itself, when there is one (not for getattr())."""
        base, named = dotted(value), True
        if base == "sys" and attr in SYS_ATTRS:
            self.flag(node, f"uses sys.{attr} (an interpreter hook)")
        elif base == "sys" and attr in SYS_MORE:
            self.flag(node, f"uses sys.{attr} ({SYS_MORE[attr]})")
        elif attr in ATTR_REASONS:
            what = f"{base}.{attr}" if base else f"`.{attr}`"
            self.flag(node, f"uses {what} ({ATTR_REASONS[attr]})")
        else:
            named = False
        if base in OS_MODULES and (attr in OS_ATTRS or attr.startswith(OS_PREFIXES)):
            self.flag(node, f"uses {base}.{attr} (starts or signals processes)")
            named = True
        if base == "types" and attr in TYPES_ATTRS:
            self.flag(node, f"uses types.{attr} (builds code or functions)")
        if DUNDER.match(attr):
            if store:
                self.flag(node, f"sets `{attr}` (object internals)")
            elif attr not in SAFE_DUNDERS:
                self.flag(node, f"reaches `{attr}` (object internals)")
        elif FRAME_ATTR.match(attr):
            self.flag(node, f"reaches `{attr}` (frames and code objects)")
        elif attr.startswith("_") and not named and attr not in PUBLIC_UNDERSCORE and (
                self._library_root(value)) and not _private_inside(value):
            self.flag(node, f"reaches {base or 'a library'}.{attr} (a library's private "
                            "internals)")
        if chain is not None and id(chain) in self.inner:
            return  # a part of a longer chain, judged as a whole
        if isinstance(value, ast.Attribute):
            self.inner.add(id(value))
        path = self.resolve(value)
        path = f"{path}.{attr}" if path else None
        why = _path_reason(path, store) if path else None
        if why == "how warnings are shown":
            self.flag(node, f"replaces {path} ({why})")
        elif why:
            self.flag(node, f"uses {path} ({why})")

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
            path = self.resolve(node.value)
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.libraries.add(t.id)
                    if path:
                        self.aliases[t.id] = path
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
            literal = len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and (
                isinstance(node.args[1].value, str))
            if not literal:
                self.flag(node, f"{name}() with a computed attribute name")
            elif name in ("setattr", "delattr") and node.args and (
                    root_name(node.args[0]) in self.libraries | set(self.protected)):
                self.flag(node, f"{name}() on {dotted(node.args[0]) or 'a library'}, "
                                "a library the tests use")
            if literal and name != "hasattr":  # getattr(x, "a") reaches what x.a does
                self._attribute(node, node.args[1].value, node.args[0],
                                store=name != "getattr")
            for arg in node.args:
                self.visit(arg)
            for kw in node.keywords:
                self.visit(kw)
            return
        callee = dotted(func)
        if callee in ("operator.attrgetter", "operator.methodcaller") and not all(
                isinstance(a, ast.Constant) for a in node.args):
            self.flag(node, f"{callee}() with a computed attribute name")
        if name == "type" and len(node.args) == 3 and not (  # literal keys: audited strings
                isinstance(node.args[2], ast.Dict) and all(
                    isinstance(k, ast.Constant) for k in node.args[2].keys)):
            self.flag(node, "calls type() with three arguments (builds a class the audit "
                            "cannot see)")
        self._loads(node, callee)
        self._writes(node, name, func)
        magic = self._magic(node)
        if magic is not None:
            for arg in node.args:
                if not isinstance(arg, ast.Constant):
                    self.visit(arg)
            return
        if name in ("__import__",) or self.resolve(func) == "importlib.import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(
                    node.args[0].value, str):
                self.ctx.imported.append((self.label, node.lineno, node.args[0].value))
        self.generic_visit(node)

    def _loads(self, node, callee: str | None) -> None:
        """Loading a pickle runs whatever code it names."""
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        path = self.resolve(node.func)
        if path in ("torch.load", "torch.serialization.load"):
            only = keywords.get("weights_only")
            if not (isinstance(only, ast.Constant) and only.value is True):
                self.flag(node, "calls torch.load without weights_only=True (unpickling runs "
                                "code)")
        what = callee or "a function"
        allow = keywords.get("allow_pickle")
        if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
            self.flag(node, f"calls {what}() with allow_pickle (unpickling runs code)")
        safe = keywords.get("safe_mode")
        if safe is not None and not (isinstance(safe, ast.Constant) and safe.value is True):
            self.flag(node, f"calls {what}() with safe_mode off (loading runs code)")

    def _writes(self, node, name: str | None, func) -> None:
        """Calls that write a file: with an import of an unknown module, code it wrote."""
        path = self.resolve(func) or dotted(func)
        if name == "open" or path in ("io.open", "codecs.open"):
            writes = _writing_mode(node.args[1] if len(node.args) > 1 else None, node)
        elif path == "os.open":
            writes = any(isinstance(n, ast.Attribute) and n.attr in ("O_WRONLY", "O_RDWR",
                                                                     "O_CREAT")
                         for n in ast.walk(node))
        elif isinstance(func, ast.Attribute) and func.attr == "open":  # Path(...).open("w")
            writes = _writing_mode(node.args[0] if node.args else None, node)
        else:
            writes = path in WRITE_FUNCTIONS or (
                isinstance(func, ast.Attribute) and func.attr in WRITE_METHODS)
        if writes:
            self.ctx.writes.append((self.label, node.lineno))

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
                        for line, why in _audit_tree(sub, self.ctx, self.label):
                            self.found.append((node.lineno + max(line - 1, 0), why))
            return magic
        self.flag(node, "uses get_ipython() (reaches into the kernel)")
        return func.attr

    def visit_Constant(self, node):
        if not isinstance(node.value, str):
            return
        m = DANGEROUS_STRING.search(node.value)
        if m:
            self.flag(node, f"names {m.group(0)!r} in a string")
        elif id(node) not in self.docstrings:
            for name in DUNDER_IN_STRING.findall(node.value):
                if name not in SAFE_STRINGS:
                    self.flag(node, f"names {name!r} in a string")
                    break
        text = node.value.strip()
        if len(text) < 300 and "\n" not in text and CODE_FILE.search(text):
            self.flag(node, f"names the code file {text[-60:]!r} (code the audit cannot see)")


def _writing_mode(mode, call) -> bool:
    """Whether open()'s mode (a node, or None: then a `mode=` keyword) writes."""
    if mode is None:
        mode = next((kw.value for kw in call.keywords if kw.arg == "mode"), None)
    if mode is None:
        return False
    return not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)
                and not set(mode.value) & set("wax+"))


def _private_inside(node) -> bool:
    """Whether an attribute chain already passes through a private attribute (torch._C)."""
    while isinstance(node, ast.Attribute):
        if node.attr.startswith("_") and not DUNDER.match(node.attr) and (
                node.attr not in PUBLIC_UNDERSCORE):
            return True
        node = node.value
    return False


def _audit_tree(tree, ctx: _Context, label: str = "<cell>") -> list[tuple[int, str]]:
    auditor = _Auditor(ctx)
    auditor.label = label
    auditor.visit(tree)
    return auditor.found


def _protected(course_sources: list[str]) -> dict[str, str]:
    protected: dict[str, str] = {}
    for source in course_sources:
        tree = parse(source)
        if tree is not None:
            protected.update(imports(tree))
    return protected


@functools.lru_cache(maxsize=16)
def _course_reasons(course_sources: tuple[str, ...]) -> frozenset[str]:
    """What the audit finds in the code the course gives every student (its cells without
    their solution and hidden-test regions): not a finding in a student's cell."""
    ctx = _Context(_protected(list(course_sources)))
    reasons = set()
    for source in course_sources:
        tree = parse(SOLUTION_REGION.sub(r"\1raise NotImplementedError()\n", source))
        if tree is not None:
            reasons.update(why for _, why in _audit_tree(tree, ctx))
    return frozenset(reasons)


def audit(cells: list[tuple[str, str]], course_sources: list[str]) -> list[str]:
    """Findings for the student's code cells, [(label, source), ...] in notebook order.

    `course_sources` are the course's own cells (set-up, tests): the names they import are
    the ones the tests rely on, and what their released code does is no finding.
    """
    ctx = _Context(_protected(course_sources))
    course = _course_reasons(tuple(course_sources))
    findings = []
    for label, source in cells:
        tree = parse(source, label)
        if tree is None:
            continue
        seen = set()
        for line, why in sorted(_audit_tree(tree, ctx, label)):
            if why not in seen and why not in course:  # one line per reason and cell
                seen.add(why)
                findings.append(f"{label} line {line}: {why}")
    if ctx.writes:  # a module it wrote and imported: the audit never saw its code
        known = set(sys.stdlib_module_names) | KNOWN_PACKAGES | {
            p.split(".")[0] for p in ctx.protected.values()}
        written = ", ".join(f"{label} line {line}" for label, line in ctx.writes[:3])
        for label, line, module in ctx.imported:
            if module.split(".")[0] not in known:
                findings.append(f"{label} line {line}: imports {module}, which is no known "
                                f"package, and the submission writes files ({written})")
    return findings
