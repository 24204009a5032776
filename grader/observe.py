"""What runs inside the grading kernel after the student's last cell: the course's checks.

A check is the code of a test cell's hidden region (between `### BEGIN HIDDEN TESTS` and
`### END HIDDEN TESTS`). It calls the student's functions on inputs drawn from `rng` (seeded
by the grader) and records what came back with `observe(key, value)`. It decides nothing:
the grader compares the observations, outside this process, with those the reference
solution gave in a kernel of its own for the same seed (grader/checks.py). So the expected
values never exist here; a lying `__eq__`, a replaced module or a forged reply can at most
make the student's own observations wrong.

Values are recorded as plain data, by exact type: None, bool, int, float, str, lists and
tuples of those (as lists), dicts with str keys, and the frameworks' arrays, shapes and
scalars (as nested lists). Anything else is recorded as not plain data, which fails the
check: a value is never converted through its own methods.

The grader sends this file's source once (as the module `_d2l_grading_observe`) and calls
`run(source, seed)` for each check; `last` holds the JSON of its observations. Standard
library and IPython only: it runs in every framework's env.
"""

from __future__ import annotations

import json
import math
import random
import sys

from IPython import get_ipython

MAX_ITEMS = 100_000  # numbers in one observation; more is not plain data here
_records: dict = {}
last = ""


def _array_classes() -> dict:
    """The exact array, shape and scalar classes of the frameworks loaded, by how to read them."""
    found = {}
    np = sys.modules.get("numpy")
    if np is not None:
        found[np.ndarray] = "numpy"
        for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                  np.uint8, np.bool_):
            found[t] = "numpy scalar"
    torch = sys.modules.get("torch")
    if torch is not None:
        found[torch.Tensor] = "torch"
        found[torch.Size] = "shape"
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        ops = sys.modules.get("tensorflow.python.framework.ops")  # tf.python is not public
        if ops is not None and hasattr(ops, "EagerTensor"):
            found[ops.EagerTensor] = "numpy()"
        found[tf.TensorShape] = "tensorshape"
    mx = sys.modules.get("mxnet")
    if mx is not None:
        found[mx.numpy.ndarray] = "asnumpy()"
        found[mx.ndarray.NDArray] = "asnumpy()"
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            found[type(jax.numpy.zeros(()))] = "jax"
        except Exception:
            pass
    return found


def plain(value, _classes=None, _budget=None):
    """`value` as plain data, judged by exact type; {"not plain": type name} otherwise."""
    classes = _array_classes() if _classes is None else _classes
    budget = [MAX_ITEMS] if _budget is None else _budget
    budget[0] -= 1
    if budget[0] < 0:
        raise OverflowError("observation too large")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind in (list, tuple):
        return [plain(v, classes, budget) for v in value]
    if kind is dict and all(type(k) is str for k in value):
        return {k: plain(v, classes, budget) for k, v in value.items()}
    how = classes.get(kind)
    if how == "shape":
        return [plain(int(d), classes, budget) for d in value]
    if how == "tensorshape":
        return [None if d is None else int(d) for d in value.as_list()]
    if how == "numpy scalar":
        return plain(value.item(), classes, budget)
    if how is not None:
        if how == "torch":
            value = value.detach().cpu().numpy()
        elif how == "numpy()":
            value = value.numpy()
        elif how == "asnumpy()":
            value = value.asnumpy()
        elif how == "jax":
            value = sys.modules["numpy"].asarray(value)
        if value.size > budget[0]:
            raise OverflowError("observation too large")
        return plain(value.tolist(), classes, budget)
    return {"not plain": f"{kind.__module__}.{kind.__qualname__}"[:200]}


def observe(key: str, value, close: float | None = None, contains: bool = False,
            agree: bool = False) -> None:
    """Record `value` under `key` (what the student's feedback names if it differs).

    By default it must equal the reference's; with `close`, numbers may differ by that much
    (relative and absolute); with `contains`, it is a string that must contain the
    reference's (and be at most four times as long, plus 200 characters); with `agree`, it is a
    list of values that must agree with each other (within `close`), whatever the
    reference's are: for what a visible test asks of the student's own network."""
    try:
        data = plain(value)
    except OverflowError:
        data = {"not plain": "too large"}
    judge = {"close": float(close)} if close is not None else {}
    if contains:
        judge["contains"] = True
    if agree:
        judge["agree"] = True
    _records[str(key)] = {"value": data, **judge}


def outcome(fn, *args) -> dict:
    """What calling fn(*args) raised: {"raised": qualified class name, "message": str}, or
    {"raised": None} when it returned."""
    try:
        fn(*args)
    except Exception as e:  # the student's exception: read by type only
        kind = type(e)
        text = e.args[0] if len(e.args) == 1 and type(e.args[0]) is str else None
        return {"raised": f"{kind.__module__}.{kind.__qualname__}", "message": text}
    return {"raised": None}


def _seed(n: int) -> None:
    random.seed(n)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(n % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(n)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(n % 2**32)
    if "mxnet" in sys.modules:
        sys.modules["mxnet"].random.seed(n % 2**31)


def run(source: str, seed: int) -> None:
    """Run one check in a copy of the notebook's namespace (what it binds goes with it)."""
    global last
    _records.clear()
    _seed(seed)
    ns = dict(get_ipython().user_ns)
    ns.update(observe=observe, outcome=outcome, rng=random.Random(seed))
    error = None
    try:
        exec(compile(source, "<hidden check>", "exec"), ns)
    except BaseException as e:  # KeyboardInterrupt too: the grader's own interrupt
        error = type(e).__name__ if type(type(e).__name__) is str else "error"
    last = json.dumps({"observations": dict(_records), "error": error})
