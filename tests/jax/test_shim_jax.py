"""d2l_shim.jax against real Flax linen modules on JAX 0.10.2 / Flax 0.12.8 (CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from d2l_shim import jax as d2l


def mlp() -> nn.Sequential:
    return nn.Sequential([nn.Dense(256), nn.relu, nn.Dense(10)])


class LeNet(nn.Module):
    @nn.compact
    def __call__(self, X):
        X = nn.avg_pool(nn.sigmoid(nn.Conv(6, (5, 5), padding=2)(X)), (2, 2), strides=(2, 2))
        X = nn.avg_pool(nn.sigmoid(nn.Conv(16, (5, 5), padding="VALID")(X)), (2, 2),
                        strides=(2, 2))
        X = X.reshape((X.shape[0], -1))
        X = nn.sigmoid(nn.Dense(120)(X))
        X = nn.sigmoid(nn.Dense(84)(X))
        return nn.Dense(10)(X)


class Model(d2l.Module):
    def setup(self):
        self.net = mlp()


class WithBatchNorm(d2l.Module):
    def setup(self):
        self.net = nn.Sequential([nn.Dense(8), nn.BatchNorm(use_running_average=False),
                                  nn.relu, nn.Dense(3)])


def test_env_holds_jax_only_and_the_shim_imports_only_it(assert_isolated):
    assert_isolated("jax", {"jax", "jaxlib", "flax"})


def test_init_returns_a_plain_dict_of_in_by_out_shapes():
    params = mlp().init(d2l.get_key(), jnp.zeros((2, 20)))
    assert type(params) is dict  # so the book's .tree_flatten_with_keys() is gone
    assert not hasattr(params, "tree_flatten_with_keys")
    assert d2l.param_shapes(params) == {
        "params/layers_0/bias": (256,), "params/layers_0/kernel": (20, 256),
        "params/layers_2/bias": (10,), "params/layers_2/kernel": (256, 10)}


def test_apply_init_returns_the_params_of_every_layer():
    params = Model().apply_init([jnp.zeros((2, 20))], d2l.get_key())
    assert d2l.param_shapes(params)["params/net/layers_0/kernel"] == (20, 256)
    assert d2l.param_shapes(params)["params/net/layers_2/kernel"] == (256, 10)


def test_lenet_flattened_size_is_inferred():
    for size, flat in ((28, 16 * 5 * 5), (32, 16 * 6 * 6)):
        params = LeNet().init(d2l.get_key(), jnp.zeros((1, size, size, 1)))
        assert params["params"]["Dense_0"]["kernel"].shape == (flat, 120)


def test_init_leaves_batchnorm_statistics_at_their_initial_values():
    variables = WithBatchNorm().apply_init([jax.random.normal(d2l.get_key(), (16, 5)) * 3 + 7],
                                           d2l.get_key())
    stats = variables["batch_stats"]["net"]["layers_1"]
    assert jnp.all(stats["mean"] == 0) and jnp.all(stats["var"] == 1)


def test_a_training_step_does_change_them():
    """The contrast that makes the test above meaningful."""
    model = WithBatchNorm()
    X = jax.random.normal(d2l.get_key(), (16, 5)) * 3 + 7
    variables = model.apply_init([X], d2l.get_key())
    _, updates = model.apply(variables, X, mutable=["batch_stats"])
    assert not jnp.all(updates["batch_stats"]["net"]["layers_1"]["mean"] == 0)


def test_result_does_not_depend_on_the_dummy_batch_size():
    key = d2l.get_key()
    small = Model().apply_init([jnp.ones((1, 20))], key)
    large = Model().apply_init([jnp.ones((64, 20))], key)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, small, large))


def test_get_key_is_fresh_each_call_and_reproducible_after_set_seed():
    d2l.set_seed(42)
    first = [d2l.get_key() for _ in range(3)]
    d2l.set_seed(42)
    again = [d2l.get_key() for _ in range(3)]
    assert all(jnp.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not jnp.array_equal(first[0], first[1])


def test_a_bare_array_is_refused_with_what_to_pass_instead():
    with pytest.raises(TypeError, match=r"apply_init\(\[X\]\)"):
        Model().apply_init(jnp.zeros((2, 20)), d2l.get_key())


def test_a_module_without_net_is_refused():
    class NoNet(d2l.Module):
        pass

    with pytest.raises(AttributeError, match=r"self\.net.*setup"):
        NoNet().apply_init([jnp.zeros((2, 20))], d2l.get_key())


def test_layer_table_follows_the_cascade():
    rows = d2l.layer_table(mlp(), jnp.zeros((2, 20)), show=False)
    assert [(shape, params) for _, shape, params in rows] == [
        ((2, 20), {"bias": (256,), "kernel": (20, 256)}), ((2, 256), {}),
        ((2, 256), {"bias": (10,), "kernel": (256, 10)})]
