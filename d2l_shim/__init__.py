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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["add_to_class", "HyperParameters", "format_layer_table"]


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
