"""d2l helpers for TensorFlow with Keras 3: `from d2l_shim import tensorflow as d2l`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras
import tensorflow as tf

from . import (
    HyperParameters,
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
           "Module", "layer_table", "one_row",
           "walk_layers"]


def walk_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer below `layer` (itself included), depth first.

    Keras 3 has no public recursive iterator over nested models: `Model.layers` is one level.
    """
    yield layer
    for sub in getattr(layer, "layers", []):
        yield from walk_layers(sub)


class Module(keras.Model, HyperParameters):
    """d2l's Module, reduced to what lazy initialization needs: `self.net` and apply_init."""

    def call(self, X, *args, training=None, **kwargs):
        if not hasattr(self, "net"):
            raise missing_net_error(self)
        return self.net(X, *args, training=training, **kwargs)

    def apply_init(self, inputs, init: Callable[[keras.layers.Layer], None] | None = None):
        """Build every layer with a dry run on `inputs`, then apply `init` to every layer.

        inputs: a tuple or list of example inputs, one per argument of call; only their
            first row is used, since shapes are all a dry run needs.
        init: a function applied to each layer of self.net, nested ones included, that sets
            the layer's weights (e.g. layer.kernel.assign(...)).

        The dry run passes training=False, so BatchNormalization uses, and does not update,
        its moving statistics, and it records no gradients.
        """
        inputs = check_example_inputs(inputs)
        check_init(init)
        if not hasattr(self, "net"):
            raise missing_net_error(self)
        try:
            # Keras' own error names the layer ("Input 0 of layer "dense_1" is incompatible").
            self(*map(one_row, inputs), training=False)
        except (ValueError, tf.errors.InvalidArgumentError) as e:
            raise shape_mismatch_error(None, [tuple(x.shape) for x in inputs], e) from e
        if init is not None:
            for layer in walk_layers(self.net):
                init(layer)


def layer_table(net: keras.Sequential, X, show: bool = True):
    """Run X through a Sequential layer by layer, listing input shapes and weight shapes.

    Returns rows (layer, input shape, {weight name: shape}) and, with show=True, prints them.
    The pass builds (initializes) each layer, like any first call.
    """
    rows = []
    for layer in net.layers:
        shape = tuple(X.shape)
        X = layer(X)
        rows.append((f"{layer.name} {type(layer).__name__}", shape,
                     {w.name: tuple(w.shape) for w in layer.weights}))
    if show:
        print(format_layer_table(rows))
    return rows
