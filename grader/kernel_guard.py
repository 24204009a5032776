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
                    then check(): what differs from how it was (JSON, each change once).

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
import sys
import threading
import types

from IPython import get_ipython

_MISSING = object()
_state: dict = {"reported": set(), "names": {}, "dirty": False}


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
    threads = [t.name for t in threading.enumerate() if t.ident not in _state["threads"]
               and not _is_library(getattr(t, "_target", None) or t.run)]
    if threads:
        found.append(("threads", f"threads left running: {', '.join(sorted(threads)[:5])}"))
    return found


def install(config: str) -> str:
    cfg = json.loads(config)
    _state["modules"] = {}
    for path in cfg["modules"]:
        module = _resolve(path)
        if module is not None:  # else not a module (a class imported by name), or absent
            _state["modules"][path] = module
    _state["threads"] = {t.ident for t in threading.enumerate()}
    _state["base"] = _take()
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
    differences = _diff(_state["base"], _take())
    _state["dirty"] = bool(differences)  # only code that ran since can change that
    for key, what in differences:
        if key not in _state["reported"]:
            _state["reported"].add(key)
            found.append(what)
    return json.dumps(found)


def before(course_cell: bool, seed_n: int | None, binds: list | None) -> str:
    """Before a cell: for one of the course's, put the kernel back together (if the last
    check saw anything changed), seed it if it is a test, remember the names a hidden
    test binds. One call, so one round trip."""
    if course_cell and _state.get("dirty"):
        restore()
    if seed_n is not None:
        seed(seed_n)
    if binds is not None:
        save(binds)
    return "[]"


def after(hidden_source: str | None, expected: list, track: list) -> str:
    """After a cell: forget a hidden test, then check (see check)."""
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
