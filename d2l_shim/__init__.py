"""The few helpers from the `d2l` package that the Lazy Initialization notebooks use.

Import the submodule for your framework, as the book imports `d2l`:

    from d2l_shim import torch as d2l        # or tensorflow, mxnet, jax

This file imports no framework: each submodule imports only its own, so each works in an
environment where the other three are not installed. The real `d2l` package pins
numpy 1.23.5 and breaks on modern Python; this shim is why the notebooks do not need it.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["add_to_class", "HyperParameters", "format_layer_table", "describe_cascade",
           "draw_cascade", "expect_error", "layer_name"]


def add_to_class(Class: type) -> Callable:
    """Decorator that attaches the decorated function to `Class` as a method.

    Unlike d2l's version it returns the function, so the decorated name stays bound
    in the notebook too.
    """

    def wrapper(obj: Callable) -> Callable:
        setattr(Class, obj.__name__, obj)
        return obj

    return wrapper


class HyperParameters:
    """Mixin whose `save_hyperparameters` stores the caller's `__init__` arguments."""

    def save_hyperparameters(self, ignore: Sequence[str] = ()) -> None:
        """Save every argument of the calling `__init__` (except `ignore`) as an attribute."""
        frame = inspect.currentframe().f_back
        _, _, _, local_vars = inspect.getargvalues(frame)
        self.hparams = {
            k: v for k, v in local_vars.items()
            if k not in set(ignore) | {"self"} and not k.startswith("_")
        }
        for k, v in self.hparams.items():
            setattr(self, k, v)


class expect_error:
    """A block that must raise `expected`: show that error in one line, and go on.

        with d2l.expect_error(RuntimeError):
            net[0].weight.shape

    prints `RuntimeError: <the message's first line>` instead of a traceback of dozens of
    lines, and the cell does not fail, so Run All reaches the last cell in every frontend
    (VS Code and Colab ignore nbconvert's `raises-exception` tag). A block that raises
    nothing, or an error of another type, raises AssertionError: a lesson that stopped
    being true on a new version stops the run instead of passing unnoticed. A subclass of
    `expected` counts, and its own name is shown. The caught error stays in `.error`.
    """

    def __init__(self, expected: type[BaseException] | tuple[type[BaseException], ...],
                 max_chars: int = 200):
        types = expected if isinstance(expected, tuple) else (expected,)
        if not types or not all(isinstance(t, type) and issubclass(t, BaseException)
                                for t in types):
            raise TypeError(f"expect_error(expected): expected must be an exception class or "
                            f"a tuple of them, e.g. expect_error(RuntimeError), not "
                            f"{expected!r}")
        self.expected = types
        self.max_chars = max_chars
        self.error: BaseException | None = None

    def __enter__(self) -> expect_error:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        wanted = " or ".join(t.__name__ for t in self.expected)
        if error is None:
            raise AssertionError(f"expect_error: the block should have raised {wanted}, but "
                                 "it raised nothing; the behaviour it shows has changed")
        if not isinstance(error, self.expected):
            if not isinstance(error, Exception):
                return False  # KeyboardInterrupt, SystemExit: not ours to judge
            raise AssertionError(f"expect_error: the block should have raised {wanted}, but "
                                 f"it raised {one_line(error, self.max_chars)}") from error
        self.error = error
        print(one_line(error, self.max_chars))
        return True  # the error is shown and swallowed


# Keras wraps a layer's error in "Exception encountered when calling <layer>.call()." and
# puts the error itself on the next line, in bold (terminal escapes).
_WRAPPER = re.compile(r"Exception encountered when calling .*\.$")
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def one_line(error: BaseException, max_chars: int = 200) -> str:
    """`Type: first line of the message`, shortened to `max_chars` characters."""
    lines = [line.strip() for line in _ESCAPES.sub("", str(error)).splitlines() if line.strip()]
    if len(lines) > 1 and _WRAPPER.match(lines[0]):
        lines = lines[1:]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= max_chars else text[:max_chars - 1].rstrip() + "…"


# --- checks shared by the frameworks' apply_init -------------------------------------------

def one_row(x: Any) -> Any:
    """The first example of a batch: shapes are all a dry run needs, not the batch's rows.

    Tensors of every framework have `.shape` and slice the same way; anything else (a
    flag, a scalar) passes through unchanged.
    """
    return x[:1] if hasattr(x, "shape") and len(x.shape) > 0 else x


def check_example_inputs(inputs: Any, call: str = "apply_init(inputs)") -> tuple:
    """Return `inputs` as a tuple, or say clearly what to pass instead.

    The book's version unpacks `inputs` with `*`: given a bare tensor it would silently feed
    the batch's rows to forward() as separate arguments.
    """
    if isinstance(inputs, (tuple, list)):
        if not inputs:
            raise ValueError(f"{call}: got an empty {type(inputs).__name__}; pass at least "
                             "one example input, e.g. [X]")
        return tuple(inputs)
    shape = getattr(inputs, "shape", None)
    what = f"{type(inputs).__name__}" + (f" of shape {tuple(shape)}" if shape is not None
                                            else "")
    raise TypeError(f"{call} expects a tuple or list of example inputs (one per argument of "
                    f"forward), but got a {what}. Wrap it: apply_init([X]) instead of "
                    "apply_init(X).")


def check_init(init: Any) -> None:
    """`init` must be None or a callable applied to each layer."""
    if init is not None and not callable(init):
        raise TypeError(f"apply_init(inputs, init): init must be a function that takes one "
                        f"layer and initializes its parameters (or None), but got "
                        f"{type(init).__name__} {init!r}.")


def missing_net_error(module: Any, where: str = "__init__") -> AttributeError:
    name = type(module).__name__
    return AttributeError(f"{name} has no attribute 'net': d2l's Module runs self.net, so "
                          f"assign the network in {name}.{where} (e.g. self.net = "
                          f"<a Sequential of layers>), or override forward.")


class LayerTracker:
    """Which layer is running right now, kept by forward hooks, so an error can name it.

    The frameworks' own shape errors ("mat1 and mat2 shapes cannot be multiplied") do not
    say which layer raised them. Works with any layer type that has PyTorch-style
    `register_forward_pre_hook` / `register_forward_hook` (torch modules, Gluon blocks).
    """

    def __init__(self) -> None:
        self.stack: list[str] = []

    def enter(self, label: str) -> Callable:
        def hook(*_) -> None:  # returns None: a returned value would replace the input
            self.stack.append(label)
        return hook

    def leave(self, *_) -> None:  # returns None: a returned value would replace the output
        self.stack.pop()

    @property
    def innermost(self) -> str | None:
        return self.stack[-1] if self.stack else None

    @classmethod
    @contextlib.contextmanager
    def watching(cls, layers: Iterable[tuple[str, Any]], unhook: str = "remove"):
        """Hook every (label, layer) for the duration of the block; `unhook` names the
        handle's method that takes the hook off again (torch: remove, Gluon: detach)."""
        tracker = cls()
        handles = []
        for label, layer in layers:
            handles.append(layer.register_forward_pre_hook(tracker.enter(label)))
            handles.append(layer.register_forward_hook(tracker.leave))
        try:
            yield tracker
        finally:
            for handle in handles:
                getattr(handle, unhook)()


def shape_mismatch_error(layer: str | None, shapes: Sequence, error: Exception) -> ValueError:
    where = f"layer {layer}" if layer else "the network"
    return ValueError(f"apply_init: the example inputs of shape {', '.join(map(str, shapes))} "
                      f"do not fit the network: {where} failed with: {error}. Check the "
                      "input's feature size against the sizes the layers were declared or "
                      "already initialized with.")


def format_layer_table(rows: Sequence[tuple[str, tuple, dict[str, tuple]]]) -> str:
    """Render (layer, input shape, {parameter: shape}) rows as an aligned text table."""
    header = ("layer", "input shape", "parameter shapes")
    body = [(name, str(tuple(shape)),
             ", ".join(f"{k} {tuple(v)}" for k, v in params.items()) or "-")
            for name, shape, params in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in [header, *body]]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def describe_cascade(rows: Sequence[tuple[str, tuple, dict[str, tuple]]],
                     output_shape: tuple) -> str:
    """What draw_cascade draws, in words: the figure's alt text, for readers who cannot see it.

    One sentence per layer, in the order the forward pass reaches them: the input shape that
    arrives and the parameter shapes it fixes.
    """
    steps = []
    for name, shape, params in rows:
        made = (", ".join(f"{k} {tuple(v)}" for k, v in params.items()) if params
                else "no parameters")
        declared, now = layer_name(name, False), layer_name(name, True)
        becomes = f", becomes {now.split()[-1]}" if now != declared else ""
        steps.append(f"{declared} receives {tuple(shape)}{becomes} and gets {made}.")
    layers = "1 layer" if len(rows) == 1 else f"{len(rows)} layers"
    return (f"The forward pass as a cascade of {layers}. Before it, no parameter "
            f"exists and no shape is known. Then, layer by layer: {' '.join(steps)} "
            f"The output has shape {tuple(output_shape)}.")


def layer_name(name: str, reached: bool) -> str:
    """ "0 LazyLinear -> Linear" is "0 LazyLinear" before the layer is reached, "0 Linear"
    after; a name without an arrow stays as it is."""
    declared, arrow, after = name.partition(" -> ")
    if not arrow or not reached:
        return declared
    return f"{declared.split()[0]} {after}" if " " in declared else after


def draw_cascade(rows: Sequence[tuple[str, tuple, dict[str, tuple]]], output_shape: tuple,
                 title: str = "One forward pass, layer by layer"):
    """Draw the cascade of `rows` (from layer_table) as boxes and arrows, one step a row.

    The top row is the network as declared: no parameter exists and no shape is known. Each
    row below is the moment one more layer has been reached: the shape on the arrow into it
    is known, and its parameters (if it has any) are filled in. A layer named
    "0 LazyLinear -> Linear" (the pass changed its class) is drawn as "0 LazyLinear" until
    it is reached and as "0 Linear" after. Returns the matplotlib
    Figure; a notebook shows it. matplotlib is imported here, not at import time, so the
    rest of the shim works without it. The figure carries describe_cascade's text: it is
    the figure's text/plain form in the notebook's output, and its image's alt text
    (output metadata ``{"image/png": {"alt": ...}}``, which the book's page uses).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if not rows:
        raise ValueError("draw_cascade: no layers to draw; pass the rows layer_table returned")
    n = len(rows)
    shapes = [tuple(shape) for _, shape, _ in rows] + [tuple(output_shape)]
    fig, ax = plt.subplots(figsize=(2.6 * n + 1.6, 1.25 * (n + 1) + 0.4))
    for step in range(n + 1):  # step k: layers 0..k-1 have been reached
        y = -1.25 * step
        label = "declared" if step == 0 else f"reached {rows[step - 1][0].split()[0]}"
        ax.text(-0.15, y, label, ha="right", va="center", fontsize=9, style="italic")
        for i, (name, _, params) in enumerate(rows):
            reached = i < step
            x = 2.6 * i + 1.0
            color = ("#cfe3f7" if params else "#eeeeee") if reached else "white"
            ax.add_patch(FancyBboxPatch((x, y - 0.42), 1.8, 0.84, boxstyle="round,pad=0.03",
                                        facecolor=color, edgecolor="#333333"))
            if params:
                detail = "\n".join(f"{k} {tuple(v)}" for k, v in params.items()) \
                    if reached else "parameters: ?"
            else:
                detail = "no parameters"
            ax.text(x + 0.9, y + 0.2, layer_name(name, reached), ha="center", va="center",
                    fontsize=9, weight="bold")
            ax.text(x + 0.9, y - 0.15, detail, ha="center", va="center", fontsize=7.5)
        for i, shape in enumerate(shapes):  # the arrow into layer i (i == n: the output)
            x0, x1 = 2.6 * i + 0.2, 2.6 * i + 1.0
            ax.annotate("", xy=(x1, y), xytext=(x0, y),
                        arrowprops={"arrowstyle": "->", "color": "#333333"})
            known = i < step or (i == n and step == n)
            ax.text((x0 + x1) / 2, y + 0.12, str(shape) if known else "?", ha="center",
                    va="bottom", fontsize=7.5, color="#b03a2e" if known else "#999999")
    ax.set_xlim(-1.6, 2.6 * n + 1.0)
    ax.set_ylim(-1.25 * n - 0.6, 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    alt = describe_cascade(rows, output_shape)
    # IPython asks an object for _repr_mimebundle_ before its other formatters, and the
    # inline backend adds the PNG: the displayed figure gets its words beside its pixels.
    fig._repr_mimebundle_ = lambda include=None, exclude=None: (
        {"text/plain": alt}, {"image/png": {"alt": alt}})
    return fig
