"""d2l helpers for JAX and Flax (linen): `from d2l_shim import jax as d2l`."""

from __future__ import annotations

import jax
from flax import linen as nn

from . import (
    HyperParameters,
    add_to_class,
    check_example_inputs,
    draw_cascade,
    expect_error,
    format_layer_table,
    missing_net_error,
    one_row,
)

__all__ = ["add_to_class", "HyperParameters", "draw_cascade", "expect_error",
           "Module", "get_key", "set_seed",
           "layer_table", "param_shapes", "one_row"]

_key = jax.random.PRNGKey(0)


def set_seed(seed: int) -> None:
    """Restart the sequence of keys that get_key() hands out, for reproducible notebooks."""
    global _key
    _key = jax.random.PRNGKey(seed)


def get_key() -> jax.Array:
    """A fresh PRNG key: each call splits a new one off the module's seeded key."""
    global _key
    _key, subkey = jax.random.split(_key)
    return subkey


def param_shapes(params) -> dict[str, tuple]:
    """{'params/layers_0/kernel': (20, 256), ...} for a Flax variables dict.

    Flax's init returns a plain dict, so the book's `.tree_flatten_with_keys()` fails;
    jax.tree_util's path helpers work on any pytree.
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    # GetAttrKey steps (an NNX state's `.value`) are not part of a parameter's name.
    return {"/".join(str(getattr(k, "key", k)) for k in path
                     if not isinstance(k, jax.tree_util.GetAttrKey)): tuple(leaf.shape)
            for path, leaf in leaves}


class Module(nn.Module, HyperParameters):
    """d2l's Module, reduced to what lazy initialization needs: `self.net` and apply_init.

    Flax modules are stateless: parameters live in the dict that init returns, not on the
    module, so apply_init returns them.
    """

    def __call__(self, X, *args, **kwargs):
        if not hasattr(self, "net"):
            raise missing_net_error(self, where="setup")  # linen builds submodules in setup()
        return self.net(X, *args, **kwargs)

    def apply_init(self, dummy_input, key):
        """Initialize and return the variables ({'params': ...}) from a dry run.

        dummy_input: a tuple or list of example inputs, one per argument of __call__; only
            their first row is used, since shapes are all initialization needs.
        key: a PRNG key, or a dict of keys ({'params': ..., 'dropout': ...}).
        """
        dummy_input = check_example_inputs(dummy_input, "apply_init(dummy_input, key)")
        return self.init(key, *map(one_row, dummy_input))


def layer_table(net: nn.Sequential, X, params=None, show: bool = True):
    """Run X through a Sequential layer by layer, listing input and parameter shapes.

    params: the variables from net.init; initialized from a fresh key when not given.
    Returns rows (layer, input shape, {parameter name: shape}) and, with show=True, prints them.
    """
    if params is None:
        params = net.init(get_key(), X)
    rows = []
    for i, layer in enumerate(net.layers):
        shape = tuple(X.shape)
        if isinstance(layer, nn.Module):
            own = params["params"].get(f"layers_{i}", {})
            X = layer.apply({"params": own}, X)
            name = f"layers_{i} {type(layer).__name__}"
        else:  # a plain function such as nn.relu
            own, X = {}, layer(X)
            name = f"layers_{i} {getattr(layer, '__name__', type(layer).__name__)}"
        rows.append((name, shape, param_shapes(own)))
    if show:
        print(format_layer_table(rows))
    return rows
