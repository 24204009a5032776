"""What the grader runs inside the grading kernel, between the notebook's cells.

The grading job sends this file's source to the kernel once, before the first cell (as a
module of its own, `_d2l_grading_guard`; nothing lands in the student's namespace), and then
calls it in the user expressions of silent executions that store no history (evaluated
after the execution, so every snapshot sees the kernel in the same state):

  install(config)   import the modules the tests use and take a snapshot of every mechanism
                    through which code in the kernel could change how a later cell runs or is
                    reported: IPython's event callbacks, input and AST transformers, custom
                    exception handlers, display and traceback machinery; sys hooks (trace,
                    profile, display, except, import); the kernel's and shell's methods;
                    builtins; and the functions and classes of the modules the tests use.
  seed(n)           seed `random`, numpy and the framework before a test cell.
  check(...)        what changed since the last check (JSON), then a new snapshot.
  hide(names, src)  after a hidden test: put back the names it bound and forget its source
                    (linecache, the last exception), so later cells cannot print it.

This runs in a process the student's code controls, so it cannot be a proof: code written
to defeat it can. It catches the known mechanisms used directly; the static audit
(grader/audit.py) flags the code that could defeat it. It imports nothing of the grader and
only the standard library, since it runs in every framework's env.
"""

from __future__ import annotations

import builtins
import importlib
import json
import linecache
import sys
import threading
import types

from IPython import get_ipython

_MISSING = object()
_state: dict = {}


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


def _ids(mapping) -> dict:
    try:
        items = list(mapping.items())
    except Exception:
        return {}
    return {str(k): id(v) for k, v in items if _relevant(v)}


def _objects() -> dict:
    """The kernel's own objects whose behaviour decides what a cell's execution reports."""
    ip = get_ipython()
    found = {"shell": ip, "kernel": getattr(ip, "kernel", None),
             "displayhook": ip.displayhook, "display_pub": ip.display_pub,
             "events": ip.events, "compile": ip.compile,
             "input_transformer_manager": ip.input_transformer_manager,
             "stdout": sys.stdout, "stderr": sys.stderr}
    kernel = found["kernel"]
    if kernel is not None:
        found["session"] = getattr(kernel, "session", None)
    return {k: v for k, v in found.items() if v is not None}


def _hooks() -> dict:
    ip = get_ipython()
    tm = ip.input_transformer_manager
    events = {}
    for name, callbacks in ip.events.callbacks.items():
        events[name] = sorted(id(cb) for cb in callbacks if not _is_library(cb))
    return {
        "IPython event callbacks": events,
        "input transformers": [id(t) for t in ip.input_transformers_cleanup]
                              + [id(t) for t in ip.input_transformers_post]
                              + [id(t) for t in getattr(tm, "cleanup_transforms", [])]
                              + [id(t) for t in getattr(tm, "line_transforms", [])]
                              + [id(t) for t in getattr(tm, "token_transformers", [])],
        "AST transformers": [id(t) for t in ip.ast_transformers],
        "custom exception handlers": [repr(ip.custom_exceptions), id(ip.CustomTB)],
        "the user namespace": [id(ip.user_ns), id(ip.user_global_ns)],
        "sys.displayhook": id(sys.displayhook), "sys.excepthook": id(sys.excepthook),
        "sys.settrace": id(sys.gettrace()), "sys.setprofile": id(sys.getprofile()),
        "threading trace/profile hooks": [id(getattr(threading, "_trace_hook", None)),
                                          id(getattr(threading, "_profile_hook", None))],
        "sys.meta_path": [id(f) for f in sys.meta_path],
        "sys.path_hooks": [id(f) for f in sys.path_hooks],
        "threads": sorted(t.name for t in threading.enumerate()
                          if not _is_library(getattr(t, "_target", None) or t.run)),
    }


def _classes(objs) -> dict:
    """Every class whose methods decide how the watched objects and modules behave."""
    found = {}
    for obj in objs:
        for cls in (obj if isinstance(obj, type) else type(obj)).__mro__:
            if cls is not object:
                found[id(cls)] = cls
    return found


def _snapshot() -> dict:
    objects = _objects()
    modules = _state["modules"]
    classes = _classes(objects.values())
    for module in modules.values():
        classes.update(_classes(v for v in _values(module) if isinstance(v, type)))
    user_ns = get_ipython().user_ns
    return {
        "hooks": _hooks(),
        "instances": {k: _ids(vars(v)) for k, v in objects.items() if hasattr(v, "__dict__")},
        "classes": {f"{c.__module__}.{c.__qualname__}": _ids(vars(c))
                    for c in classes.values()},
        "modules": {name: _ids(vars(m)) for name, m in modules.items()},
        "module objects": {name: id(sys.modules.get(name, m)) for name, m in modules.items()},
        "builtins": _ids(vars(builtins)),
        "names": {n: id(user_ns.get(n, _MISSING)) for n in _state["names"]},
    }


def _values(module):
    try:
        return list(vars(module).values())
    except Exception:
        return []


def _diff(old: dict, new: dict) -> list[str]:
    changes = []
    for key in old["hooks"]:
        if old["hooks"][key] != new["hooks"][key]:
            changes.append(f"{key} changed")
    for kind in ("instances", "classes"):
        for owner, attrs in old[kind].items():
            now = new[kind].get(owner, {})
            changed = sorted(k for k in set(attrs) | set(now) if attrs.get(k) != now.get(k))
            if changed:
                changes.append(f"{owner}: {', '.join(changed[:5])} replaced")
    for name, attrs in old["modules"].items():  # a module may gain names (lazy imports)
        now = new["modules"].get(name, {})
        changed = sorted(k for k in attrs if attrs[k] != now.get(k))
        if changed:
            changes.append(f"module {name}: {', '.join(changed[:5])} replaced")
    for name, ident in old["module objects"].items():
        if new["module objects"].get(name) != ident:
            changes.append(f"sys.modules[{name!r}] replaced")
    changed = sorted(k for k in set(old["builtins"]) | set(new["builtins"])
                     if old["builtins"].get(k) != new["builtins"].get(k))
    if changed:
        changes.append(f"builtins: {', '.join(changed[:5])} replaced")
    for name, ident in old["names"].items():
        if new["names"].get(name) != ident:
            changes.append(f"`{name}`, which the tests use, was rebound")
    return changes


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


def install(config: str) -> str:
    cfg = json.loads(config)
    _state["modules"] = {}
    for path in cfg["modules"]:
        module = _resolve(path)
        if module is not None:  # else not a module (a class imported by name), or absent
            _state["modules"][path] = module
    _state["names"] = []
    _state["snapshot"] = _snapshot()
    return "[]"


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


def check(expected: list, track: list) -> str:
    """JSON list of what changed since the last check, ignoring the names in `expected`
    (which the cell just run was meant to bind); then watch `track` too, and re-snapshot."""
    old = _state["snapshot"]
    for name in expected:
        old["names"].pop(name, None)
    _state["names"] = sorted((set(_state["names"]) - set(expected)) | set(track))
    new = _snapshot()
    _state["snapshot"] = new
    return json.dumps(_diff(old, new))


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
    _state["snapshot"]["names"] = {
        n: id(user_ns.get(n, _MISSING)) for n in _state["names"]}
    return "[]"
