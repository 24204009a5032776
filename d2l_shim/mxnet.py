"""d2l helpers for MXNet Gluon: `from d2l_shim import mxnet as d2l`.

MXNet 1.9.1 is retired upstream; it imports only with numpy<1.24, which has no wheels for
Python newer than 3.11 (MXNet's own wheel fits any Python 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

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


def _blocks(block: nn.Block, prefix: str = "") -> Iterator[tuple[str, nn.Block]]:
    """(name, block) for every block below `block`, depth first, like torch's named_modules."""
    for name, child in block._children.items():  # Gluon 1.x has no public named iterator
        child = child() if callable(child) and not isinstance(child, nn.Block) else child
        full = f"{prefix}.{name}" if prefix else name
        yield full, child
        yield from _blocks(child, full)


class Module(nn.Block, HyperParameters):
    """d2l's Module, reduced to what lazy initialization needs: `self.net` and apply_init."""

    def forward(self, X, *args):
        if "net" not in self._children:
            raise missing_net_error(self)
        return self.net(X, *args)

    def apply_init(self, inputs, init: Callable | mx.init.Initializer | None = None) -> None:
        """Materialize every deferred parameter with a dry run on `inputs`, then apply `init`.

        inputs: a tuple or list of example inputs, one per argument of forward; only their
            first row is used, since shapes are all a dry run needs.
        init: either an `mx.init.Initializer` (e.g. `mx.init.Normal(0.01)`), which re-initializes
            every parameter, or a function applied to every block of self.net (Block.apply).

        Calls `initialize()` first if nobody has. The dry run runs in predict mode without
        recording, so BatchNorm uses, and does not update, its running statistics.
        """
        inputs = check_example_inputs(inputs)
        if not isinstance(init, mx.init.Initializer):
            check_init(init)
        if "net" not in self._children:
            raise missing_net_error(self)
        params = self.collect_params().values()
        if any(p._data is None and p._deferred_init == () for p in params):
            self.initialize()  # Gluon needs initialize() before any forward pass
        layers = ((f"'{name}' ({type(b).__name__} {b.name})", b) for name, b in _blocks(self))
        with autograd.pause(train_mode=False), \
                LayerTracker.watching(layers, unhook="detach") as tracker:
            try:
                self.forward(*map(one_row, inputs))
            except mx.base.MXNetError as e:
                shapes = [tuple(x.shape) for x in inputs]
                raise shape_mismatch_error(tracker.innermost, shapes, e) from e
        if isinstance(init, mx.init.Initializer):
            self.collect_params().initialize(init, force_reinit=True)
        elif init is not None:
            self.net.apply(init)


def layer_table(net: nn.Sequential, X, show: bool = True):
    """Run X through a Sequential block by block, listing input and parameter shapes.

    Returns rows (layer, input shape, {parameter name: shape}) and, with show=True, prints
    them. The pass completes each block's deferred initialization, like any first call.
    """
    rows = []
    for block in net:
        shape = tuple(X.shape)
        X = block(X)
        rows.append((f"{block.name} {type(block).__name__}", shape,
                     {k: tuple(p.shape) for k, p in block.collect_params().items()}))
    if show:
        print(format_layer_table(rows))
    return rows
