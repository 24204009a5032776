"""d2l helpers for PyTorch: `from d2l_shim import torch as d2l`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import (
    HyperParameters,
    LayerTracker,
    add_to_class,
    check_example_inputs,
    check_init,
    draw_cascade,
    expect_error,
    format_layer_table,
    missing_net_error,
    one_row,
    shape_mismatch_error,
)

__all__ = ["add_to_class", "HyperParameters", "draw_cascade", "expect_error",
           "Module", "layer_table", "one_row"]


class Module(nn.Module, HyperParameters):
    """d2l's Module, reduced to what lazy initialization needs: `self.net` and apply_init."""

    def forward(self, X, *args, **kwargs):
        if "net" not in self._modules:
            raise missing_net_error(self)
        return self.net(X, *args, **kwargs)

    def apply_init(self, inputs, init: Callable[[nn.Module], None] | None = None) -> None:
        """Materialize every lazy parameter with a dry run on `inputs`, then apply `init`.

        inputs: a tuple or list of example inputs, one per argument of forward; only their
            first row is used, since shapes are all a dry run needs.
        init: a function applied to every submodule of self.net (like net.apply(init)).

        The dry run changes nothing but the parameters: it runs in eval mode (BatchNorm
        uses, and does not update, its running statistics) without recording gradients,
        and each submodule's training mode is restored afterwards.
        """
        inputs = check_example_inputs(inputs)
        check_init(init)
        if "net" not in self._modules:
            raise missing_net_error(self)
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            layers = ((f"'{name}' ({type(m).__name__})", m)
                      for name, m in self.named_modules() if name)  # each layer, not self
            with torch.no_grad(), LayerTracker.watching(layers) as tracker:
                try:
                    self.forward(*map(one_row, inputs))
                except RuntimeError as e:
                    shapes = [tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor)]
                    raise shape_mismatch_error(tracker.innermost, shapes, e) from e
        finally:
            for m, training in modes.items():
                m.training = training
        if init is not None:
            with torch.no_grad():
                self.net.apply(init)


def layer_table(net: nn.Module, X: torch.Tensor, show: bool = True):
    """Run X through net and list each leaf layer's input shape and parameter shapes.

    Returns rows (layer, input shape, {parameter name: shape}) and, with show=True, prints
    them as a table. The forward pass materializes lazy layers, like any first call; a
    layer whose class it changed is named by both, "0 LazyLinear -> Linear" (the class is
    read before the pass, since a lazy layer's own pre-hook changes it before ours runs).
    """
    declared = {m: type(m).__name__ for m in net.modules()}
    rows: dict[nn.Module, tuple[str, tuple]] = {}

    def record(name: str):
        def hook(module, args):  # returns None: a pre-hook's return value replaces the input
            rows.setdefault(module, (name, tuple(args[0].shape)))
        return hook

    handles = [m.register_forward_pre_hook(record(name))
               for name, m in net.named_modules() if name and not list(m.children())]
    try:
        with torch.no_grad():
            net(X)
    finally:
        for h in handles:
            h.remove()
    table = [(f"{name} {declared[m]}" + (f" -> {type(m).__name__}"
                                         if type(m).__name__ != declared[m] else ""), shape,
              {k: tuple(p.shape) for k, p in m.named_parameters(recurse=False)})
             for m, (name, shape) in rows.items()]
    if show:
        print(format_layer_table(table))
    return table
