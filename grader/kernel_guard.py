"""What the grader runs inside the grading kernel, between the notebook's cells.

The grading job sends this file's source to the kernel once, before the first cell (as a
module of its own, `_d2l_grading_guard`; nothing lands in the student's namespace), and then
calls it in the user expressions of silent executions that store no history (evaluated
after the execution, so every call sees the kernel in the same state):

  install(config)   import the modules the tests use, then remember how the kernel is put
                    together: IPython's event callbacks, input and AST transformers, custom
                    exception handlers, display and traceback machinery; sys hooks (trace,
                    profile, display, except, import); the kernel's and shell's methods;
                    builtins; and the functions and classes of the modules the tests use.
  before(...)       before each cell: for the course's cells, restore(): put all of that
                    back as it was, so that nothing a student's cell installed decides how a
                    test runs or how its result is reported; before a test, seed `random`,
                    numpy and the framework; before a hidden test, save the names it binds.
  after(...)        after every cell: after a hidden test, put back the names it bound and
                    forget its source and last exception, so later cells cannot print them;
                    then check(): what differs from how it was (JSON, each change once),
                    and what the student's code did that the kernel cannot undo: threads
                    running the student's code, modules imported from files outside the
                    installed packages (a module the student wrote), and the audit events
                    of the student's code (below).

install() also adds an audit hook (sys.addaudithook, which cannot be removed) that notes
when code of the student's cells calls what reaches frames, hooks, processes, the network,
raw memory or pickles (sys._getframe, sys.settrace, os.system, subprocess.Popen,
socket.connect, ctypes, pickle.find_class, ...) or writes a code file (.py, .pth, .so). Whose
code it is, is told by the frames: cells are known by the file names IPython gives them
(linecache), learned as they run; code of installed packages and of the grader is nobody's.

This runs in a process the student's code controls, so it is no proof: code written to
defeat it can, and code a test calls can change things while the test runs (check reports
it afterwards). The static audit (grader/audit.py) flags the code that could do either.
It imports only the standard library and IPython, since it runs in every framework's env.
"""

from __future__ import annotations

import builtins
import importlib
import json
import linecache
import os
import sys
import tempfile
import threading
import time
import types

from IPython import get_ipython

_MISSING = object()
_state: dict = {"reported": set(), "names": {}, "dirty": False, "events": [],
                "files": {}, "snapshot": set(), "cell": "student", "written": set(),
                "checked": {}, "threads": set(), "hooked": False,
                "prefixes": (sys.prefix + "/", sys.base_prefix + "/"), "roots": (),
                "dists": set(), "install_time": 0.0}
_GRADER_FILES = {"<grading guard>", "<grading checks>"}
_CODE_SUFFIXES = (".py", ".pyc", ".pth", ".so", ".pyd")
# Files libraries write and import as they run (TensorFlow's autograph, PyTorch's inductor)
_GENERATED = ("__autograph_generated_file",)
_GENERATED_PATHS = ("/torchinductor_", "/triton/", "/.triton/")
_MAX_EVENTS = 40


def _is_library(func) -> bool:
    """Code from an installed package, not from a notebook cell or a file the student wrote."""
    func = getattr(func, "__func__", func)
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin, or a callable object: judged by its class's module
        module = getattr(type(func), "__module__", "") or ""
        return module.split(".")[0] in ("builtins", "IPython", "ipykernel", "matplotlib_inline")
    name = code.co_filename
    return any(name.startswith(p + "/") for p in {sys.prefix, sys.base_prefix})


def _relevant(value) -> bool:
    if isinstance(value, types.ModuleType) or "Lazy" in type(value).__name__:
        return False  # submodules and lazy loaders replace themselves on first use
    return callable(value) or isinstance(value, (property, classmethod, staticmethod))


def _members(obj) -> dict:
    """The functions, classes and descriptors an object's __dict__ holds."""
    try:
        return {k: v for k, v in list(vars(obj).items()) if _relevant(v)}
    except TypeError:
        return {}


def _resolve(path: str):
    """The module at a dotted path, imported, or reached as an attribute (mxnet.np)."""
    try:
        return importlib.import_module(path)
    except Exception:
        pass
    head, _, attr = path.rpartition(".")
    parent = _resolve(head) if head else None
    value = getattr(parent, attr, None)
    return value if isinstance(value, types.ModuleType) else None


def _objects() -> dict:
    """The kernel's own objects whose behaviour decides what a cell's execution reports."""
    ip = get_ipython()
    found = {"shell": ip, "kernel": getattr(ip, "kernel", None),
             "displayhook": ip.displayhook, "display_pub": ip.display_pub,
             "events": ip.events, "compile": ip.compile,
             "input_transformer_manager": ip.input_transformer_manager,
             "stdout": sys.stdout, "stderr": sys.stderr}
    found["session"] = getattr(found["kernel"], "session", None)
    return {k: v for k, v in found.items() if v is not None}


def _classes(objs) -> dict:
    found = {}
    for obj in objs:
        for cls in (obj if isinstance(obj, type) else type(obj)).__mro__:
            if cls is not object:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def _lists() -> dict:
    """The kernel's mutable lists of hooks, by name: restored by content."""
    ip = get_ipython()
    tm = ip.input_transformer_manager
    found = {"input transformers (cleanup)": ip.input_transformers_cleanup,
             "input transformers (post)": ip.input_transformers_post,
             "AST transformers": ip.ast_transformers,
             "sys.meta_path": sys.meta_path, "sys.path_hooks": sys.path_hooks}
    for attr in ("cleanup_transforms", "line_transforms", "token_transformers"):
        if isinstance(getattr(tm, attr, None), list):
            found[f"input transformers ({attr})"] = getattr(tm, attr)
    for event, callbacks in ip.events.callbacks.items():
        found[f"IPython {event} callbacks"] = callbacks
    return found


def _hooks() -> dict:
    """Single hooks: (getter, setter) by name."""
    ip = get_ipython()
    return {
        "sys.displayhook": (lambda: sys.displayhook, lambda v: setattr(sys, "displayhook", v)),
        "sys.excepthook": (lambda: sys.excepthook, lambda v: setattr(sys, "excepthook", v)),
        "sys.stdout": (lambda: sys.stdout, lambda v: setattr(sys, "stdout", v)),
        "sys.stderr": (lambda: sys.stderr, lambda v: setattr(sys, "stderr", v)),
        "sys.settrace": (sys.gettrace, sys.settrace),
        "sys.setprofile": (sys.getprofile, sys.setprofile),
        "threading.settrace": (lambda: getattr(threading, "_trace_hook", None),
                               threading.settrace),
        "threading.setprofile": (lambda: getattr(threading, "_profile_hook", None),
                                 threading.setprofile),
        "IPython custom exception handlers": (
            lambda: (ip.custom_exceptions, ip.CustomTB),
            lambda v: (setattr(ip, "custom_exceptions", v[0]), setattr(ip, "CustomTB", v[1]))),
    }


def _take() -> dict:
    """How the kernel is put together now (references, to compare and to put back)."""
    objects = _objects()
    classes = _classes(objects.values())
    modules = _state["modules"]
    for module in modules.values():
        classes.update(_classes(v for v in list(vars(module).values()) if isinstance(v, type)))
    return {"lists": {k: list(v) for k, v in _lists().items()},
            "hooks": {k: get() for k, (get, _) in _hooks().items()},
            "instances": {k: _members(v) for k, v in objects.items()},
            "classes": {k: (c, _members(c)) for k, c in classes.items()},
            "modules": {k: _members(m) for k, m in modules.items()},
            "sys.modules": {k: sys.modules.get(k) for k in modules},
            "builtins": _members(builtins),
            "user_ns": dict(get_ipython().user_ns)}


def _changed(old: dict, new: dict, additions: bool) -> list[str]:
    keys = set(old) | set(new) if additions else set(old)
    return sorted(k for k in keys if old.get(k, _MISSING) is not new.get(k, _MISSING))


def _diff(base: dict, now: dict) -> list[tuple[str, str]]:
    """(key, description) of every difference between two `_take()`s."""
    found = []
    for name, items in base["lists"].items():
        current = now["lists"].get(name, [])
        added = [x for x in current if not any(x is y for y in items)]
        if name.startswith("IPython "):  # a library may add its own (matplotlib's flush)
            added = [x for x in added if not _is_library(x)]
        if added or len(current) < len(items):
            found.append((f"list:{name}", f"{name} changed"))
    for name, value in base["hooks"].items():
        if now["hooks"].get(name) != value:
            found.append((f"hook:{name}", f"{name} replaced"))
    for kind in ("instances", "classes"):
        for owner, members in base[kind].items():
            if kind == "classes":
                members = members[1]
                current = now[kind].get(owner, (None, {}))[1]
            else:
                current = now[kind].get(owner, {})
            changed = _changed(members, current, additions=True)
            if changed:
                found.append((f"{kind}:{owner}", f"{owner}: {', '.join(changed[:5])} replaced"))
    for name, members in base["modules"].items():  # a module may gain names (lazy imports)
        changed = _changed(members, now["modules"].get(name, {}), additions=False)
        if changed:
            found.append((f"module:{name}", f"module {name}: {', '.join(changed[:5])} "
                                             "replaced"))
    for name, module in base["sys.modules"].items():
        if now["sys.modules"].get(name) is not module:
            found.append((f"sys.modules:{name}", f"sys.modules[{name!r}] replaced"))
    changed = _changed(base["builtins"], now["builtins"], additions=False)
    if changed:
        found.append(("builtins", f"builtins: {', '.join(changed[:5])} replaced"))
    for name, value in _state["names"].items():
        if now["user_ns"].get(name, _MISSING) is not value:
            found.append((f"name:{name}", f"`{name}`, which the tests use, was rebound"))
    return found


def _lasting() -> list[tuple[str, str]]:
    """(key, description) of what the student's code did that restore() cannot undo."""
    found = []
    threads = _student_threads()
    if threads:
        found.append((f"threads:{','.join(str(i) for i, _ in threads)}",
                      f"threads left running: {', '.join(sorted(n for _, n in threads)[:5])}"))
    for name, path in _written_modules():
        found.append((f"written module:{name}:{path}",
                      f"module {name} was imported from {path}, a file outside the "
                      "installed packages"))
    for what in list(_state["events"]):
        found.append((f"event:{what}", what))
    return found


def _library_file(name: str) -> bool:
    return name.startswith(_state["prefixes"]) or name.startswith("<frozen")


def _student_threads() -> list[tuple[int, str]]:
    """(ident, name) of the threads started since install() that run the student's code:
    its target, or any frame of its stack, is not from an installed package (a Timer's
    function, a thread started with _thread, one running exec'd code: all of them)."""
    try:
        frames = sys._current_frames()
    except Exception:  # not CPython
        frames = {}
    threads = {t.ident: t for t in threading.enumerate()}
    found = []
    for ident in (set(frames) | set(threads)) - _state["threads"]:
        thread = threads.get(ident)
        if ident == threading.get_ident() or (thread is not None and not thread.is_alive()):
            continue
        student = False
        if thread is not None:
            entry = [f for f in (getattr(thread, "_target", None),
                                 getattr(thread, "function", None)) if f is not None]
            student = any(not _is_library(f) for f in entry) or (
                not entry and not _is_library(thread.run))
        frame = frames.get(ident)
        while frame is not None and not student:
            name = frame.f_code.co_filename
            student = name not in _GRADER_FILES and not _library_file(name)
            frame = frame.f_back
        if student:
            found.append((ident, thread.name if thread is not None else f"thread {ident}"))
    return sorted(found)


def _module_files(module) -> list[str]:
    """The files a module was loaded from, read without running its code."""
    try:
        d = object.__getattribute__(module, "__dict__")
        files = [d.get("__file__")]
        spec = d.get("__spec__")
        if spec is not None and type(spec).__module__.startswith("importlib"):
            files.append(spec.origin)
        path = d.get("__path__")
        if type(path) in (list, tuple):
            files.extend(path)
        return [f for f in files if isinstance(f, str) and f.startswith("/")]
    except Exception:
        return []


def _outside(path: str, name: str) -> bool:
    """Whether a module's file is one the student may have written: outside the installed
    packages, in the kernel's working directory, home or a temporary folder, and no
    installed distribution's (a file written since install() is, wherever it is)."""
    real = os.path.realpath(path)
    if real.startswith(_state["prefixes"]) or any(p in real for p in _GENERATED_PATHS):
        return False
    if real in _state["written"]:
        return True
    try:
        if os.stat(real).st_mtime >= _state["install_time"]:
            return True
    except OSError:
        pass
    return real.startswith(_state["roots"]) and name.split(".")[0] not in _state["dists"]


def _written_modules() -> list[tuple[str, str]]:
    """(name, file) of the modules in sys.modules imported from a file the student may have
    written (each module object examined once)."""
    checked, found = _state["checked"], []
    for name, module in list(sys.modules.items()):
        if checked.get(name) is module or name.startswith(_GENERATED):
            continue
        checked[name] = module
        for path in _module_files(module):
            if _outside(path, name):
                found.append((name, path))
                break
    _state.setdefault("modules found", []).extend(found)
    return _state["modules found"]


# ------------------------------------------------------------------ the audit hook

_DIRECT = {"sys._getframe", "sys._current_frames", "sys._current_exceptions",
           "sys.settrace", "sys.setprofile", "sys.addaudithook", "os.system",
           "marshal.loads", "code.__new__", "gc.get_objects", "gc.get_referrers",
           "gc.get_referents", "ctypes.addressof", "ctypes.string_at", "ctypes.dlsym",
           "ctypes.cdata"}  # the student's code itself called it (not through a library)
_CALLED_FROM = {"subprocess.Popen", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                "os.forkpty", "os.kill", "os.killpg", "socket.connect", "socket.bind",
                "ctypes.dlopen", "pickle.find_class", "open"}  # or through a library
_WATCHED = frozenset(_DIRECT | _CALLED_FROM)
_local = threading.local()


def _kind(frame) -> str:
    """Whose code a frame runs: "library", "grader", "course" or "student"."""
    name = frame.f_code.co_filename
    if name in _GRADER_FILES:
        return "grader"
    if _library_file(name):
        return "library"
    kind = _state["files"].get(name)
    if kind is not None:
        return kind
    if name.startswith("<") or (name in linecache.cache and name not in _state["snapshot"]):
        return _state["cell"]  # the cell running now, or code it compiled
    if name in _state["snapshot"]:
        return "library"  # cached before this cell and no cell's
    try:  # a file: the student's if written since install()
        new = os.path.realpath(name) in _state["written"] or (
            os.stat(name).st_mtime >= _state["install_time"])
    except OSError:
        new = False
    _state["files"][name] = "student" if new else "library"
    return _state["files"][name]


def _describe(event: str, args) -> str | None:
    if event == "open":
        path, mode, flags = args
        if isinstance(mode, str):
            writes = bool(set(mode) & set("wax+"))
        else:
            writes = isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR))
        if not writes or isinstance(path, int):
            return None
        path = os.fsdecode(path)
        if not path.endswith(_CODE_SUFFIXES):
            return None
        return f"wrote the code file {os.path.realpath(path)}"
    if event == "pickle.find_class":
        return f"unpickled {args[0]}.{args[1]}"
    if event == "subprocess.Popen":
        return f"started a process ({str(args[1])[:80]})"
    if event in ("socket.connect", "socket.bind"):
        return f"called {event} ({str(args[1])[:80]})"
    return f"called {event}"


def _observe(event: str, args) -> None:
    what = _describe(event, args)
    if what is None or what in _state["events"] or len(_state["events"]) >= _MAX_EVENTS:
        return
    frame = sys._getframe(2)  # the code that caused the event (_observe <- _hook <- it)
    kind = _kind(frame) if frame is not None else "library"
    while event in _CALLED_FROM and kind == "library" and frame.f_back is not None:
        frame = frame.f_back
        kind = _kind(frame)
    if kind != "student":
        return
    if event == "open":
        _state["written"].add(what.split(" ", 4)[-1])
    _state["events"].append(what)


def _hook(event, args, _watched=_WATCHED, _local=_local):
    """Called for every audit event in the process: it must be quick, raise nothing, and not
    see the events it causes itself."""
    if event not in _watched:
        return
    try:
        if getattr(_local, "busy", False):
            return
        _local.busy = True
        try:
            _observe(event, args)
        finally:
            _local.busy = False
    except Exception:
        pass


def _learn_cells() -> None:
    """The file names IPython gave the cells run since the last call are theirs (the
    course's after before(True), the student's otherwise)."""
    cache = set(linecache.cache)
    for name in cache - _state["snapshot"]:
        _state["files"].setdefault(name, _state["cell"])
    _state["snapshot"] = cache


def install(config: str) -> str:
    cfg = json.loads(config)
    _state["modules"] = {}
    for path in cfg["modules"]:
        module = _resolve(path)
        if module is not None:  # else not a module (a class imported by name), or absent
            _state["modules"][path] = module
    _state["threads"] = {t.ident for t in threading.enumerate()}
    try:
        _state["threads"].update(sys._current_frames())
    except Exception:
        pass
    _state["install_time"] = time.time()
    _state["prefixes"] = tuple({os.path.realpath(p) + "/" for p in (sys.prefix, sys.base_prefix)}
                               | {p + "/" for p in (sys.prefix, sys.base_prefix)})
    roots = {os.getcwd(), os.path.expanduser("~"), tempfile.gettempdir(), "/tmp", "/var/tmp",
             "/dev/shm"}
    _state["roots"] = tuple(sorted({os.path.realpath(r).rstrip("/") + "/" for r in roots
                                    if r and r != "/"}))
    try:
        import importlib.metadata

        _state["dists"] = set(importlib.metadata.packages_distributions())
    except Exception:
        _state["dists"] = set()
    _state["checked"] = dict(sys.modules)  # what was there before is nobody's
    _state["snapshot"] = set(linecache.cache)
    _state["base"] = _take()
    if not _state["hooked"] and hasattr(sys, "addaudithook"):
        sys.addaudithook(_hook)
        _state["hooked"] = True
    return "[]"


def restore() -> str:
    """Put the kernel back together as install() found it; what was put back (JSON)."""
    base, put_back = _state["base"], []
    for name, target in _lists().items():
        if name in base["lists"] and (len(target) != len(base["lists"][name]) or any(
                a is not b for a, b in zip(target, base["lists"][name], strict=False))):
            keep = [] if not name.startswith("IPython ") else [
                x for x in target if _is_library(x)
                and not any(x is y for y in base["lists"][name])]
            target[:] = base["lists"][name] + keep
            put_back.append(name)
    hooks = _hooks()
    for name, value in base["hooks"].items():
        get, set_ = hooks[name]
        if get() != value:
            set_(value)
            put_back.append(name)
    objects = _objects()
    for owner, members in base["instances"].items():
        obj = objects.get(owner)
        if obj is None:
            continue
        for name in _changed(members, _members(obj), additions=True):
            try:
                if name in members:
                    setattr(obj, name, members[name])
                else:
                    delattr(obj, name)  # an instance attribute shadowing a method
                put_back.append(f"{owner}.{name}")
            except (AttributeError, TypeError):
                pass
    for owner, (cls, members) in base["classes"].items():
        for name in _changed(members, _members(cls), additions=True):
            try:
                if name in members:
                    setattr(cls, name, members[name])
                else:
                    delattr(cls, name)
                put_back.append(f"{owner}.{name}")
            except (AttributeError, TypeError):  # a built-in type: nobody changed it
                pass
    for path, members in base["modules"].items():
        module = _state["modules"][path]
        for name in _changed(members, _members(module), additions=False):
            setattr(module, name, members[name])
            put_back.append(f"{path}.{name}")
    for name, module in base["sys.modules"].items():
        if sys.modules.get(name) is not module and module is not None:
            sys.modules[name] = module
            put_back.append(f"sys.modules[{name!r}]")
    for name in _changed(base["builtins"], _members(builtins), additions=False):
        setattr(builtins, name, base["builtins"][name])
        put_back.append(f"builtins.{name}")
    user_ns = get_ipython().user_ns
    for name, value in _state["names"].items():
        if user_ns.get(name, _MISSING) is not value:
            user_ns[name] = value
            put_back.append(name)
    return json.dumps(put_back)


def check(expected: list, track: list) -> str:
    """What differs from install()'s kernel, each difference once (JSON); `expected` are
    the names the cell just run was meant to bind, `track` those the tests rely on from now
    (the course's imports), remembered as they are now."""
    user_ns = get_ipython().user_ns
    for name in expected:
        if name in _state["names"]:
            _state["names"][name] = user_ns.get(name, _MISSING)
    for name in track:
        _state["names"][name] = user_ns.get(name, _MISSING)
    found = []
    differences, lasting = _diff(_state["base"], _take()), _lasting()
    # only code that ran since can change that, or a thread of the student's still running
    _state["dirty"] = bool(differences) or any(k.startswith("threads:") for k, _ in lasting)
    for key, what in differences + lasting:
        if key not in _state["reported"]:
            _state["reported"].add(key)
            found.append(what)
    return json.dumps(found)


def before(course_cell: bool, seed_n: int | None, binds: list | None) -> str:
    """Before a cell: for one of the course's, put the kernel back together (if the last
    check saw anything changed), seed it if it is a test, remember the names a hidden
    test binds. One call, so one round trip."""
    if course_cell:
        _learn_cells()
        _state["cell"] = "course"
    if course_cell and _state.get("dirty"):
        restore()
    if seed_n is not None:
        seed(seed_n)
    if binds is not None:
        save(binds)
    return "[]"


def after(hidden_source: str | None, expected: list, track: list) -> str:
    """After a cell: forget a hidden test, then check (see check). The next cell is a
    student's unless before(True) says otherwise."""
    _learn_cells()
    _state["cell"] = "student"
    if hidden_source is not None:
        hide(hidden_source)
    return check(expected, track)


def seed(n: int) -> str:
    import random

    random.seed(n)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(n % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(n)
    if "keras" in sys.modules:  # also seeds TensorFlow, Python and numpy
        sys.modules["keras"].utils.set_random_seed(n % 2**32)
    elif "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(n % 2**32)
    if "mxnet" in sys.modules:
        sys.modules["mxnet"].random.seed(n % 2**31)
    return "[]"


def save(names: list) -> str:
    """Before a hidden test: remember what the names it binds refer to now."""
    user_ns = get_ipython().user_ns
    _state["saved"] = {n: user_ns.get(n, _MISSING) for n in names}
    return "[]"


def hide(source: str) -> str:
    """After a hidden test: put back the names it bound, and forget its code and errors."""
    user_ns = get_ipython().user_ns
    for name, value in _state.pop("saved", {}).items():
        if value is _MISSING:
            user_ns.pop(name, None)
        else:
            user_ns[name] = value
    for name, entry in list(linecache.cache.items()):
        try:
            text = "".join(entry[2])
        except Exception:
            continue
        if source.strip() and source.strip() in text:
            del linecache.cache[name]
    for attr in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, attr):
            setattr(sys, attr, None)
    return "[]"
