"""d2l_shim.mxnet against real Gluon blocks on MXNet 1.9.1 (numpy 1.23.5)."""

from __future__ import annotations

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np, npx
from mxnet.gluon import nn

from d2l_shim import mxnet as d2l

npx.set_np()


def mlp() -> nn.Sequential:
    net = nn.Sequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(10))
    return net


def lenet() -> nn.Sequential:
    net = nn.Sequential()
    net.add(nn.Conv2D(6, kernel_size=5, padding=2, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(16, kernel_size=5, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"),
            nn.Dense(10))
    return net


class Model(d2l.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net


def with_batchnorm() -> Model:
    net = nn.Sequential()
    net.add(nn.Dense(8), nn.BatchNorm(), nn.Activation("relu"), nn.Dense(3))
    return Model(net)


def constant_init(block) -> None:
    if isinstance(block, nn.Dense):
        block.weight.set_data(np.full(block.weight.shape, 0.5))
        block.bias.set_data(np.zeros(block.bias.shape))


def shapes(block) -> list[tuple]:
    return [p.shape for p in block.collect_params().values()]


def test_env_holds_mxnet_only_and_the_shim_imports_only_it(assert_isolated):
    assert_isolated("mxnet", {"mxnet"})
    assert onp.__version__ == "1.23.5"


def test_unknown_input_sizes_are_minus_one_until_the_first_batch():
    net = mlp()
    assert shapes(net) == [(256, -1), (256,), (10, -1), (10,)]
    net.initialize()
    assert shapes(net) == [(256, -1), (256,), (10, -1), (10,)]  # initialize() alone: no change
    with pytest.raises(mx.gluon.parameter.DeferredInitializationError):
        net[0].weight.data()
    net(np.random.uniform(size=(2, 20)))
    assert shapes(net) == [(256, 20), (256,), (10, 256), (10,)]


def test_apply_init_initializes_and_applies_a_block_function_everywhere():
    inner = mlp()
    outer = nn.Sequential()
    outer.add(inner, nn.Dense(4))  # nested: init must reach inside
    model = Model(outer)
    model.apply_init([np.random.uniform(size=(2, 20))], constant_init)  # no initialize() call
    assert shapes(model) == [(256, 20), (256,), (10, 256), (10,), (4, 10), (4,)]
    for dense in (inner[0], inner[1], outer[1]):
        assert (dense.weight.data() == 0.5).all() and (dense.bias.data() == 0).all()


def test_apply_init_also_takes_an_mxnet_initializer():
    model = Model(mlp())
    model.apply_init([np.zeros((2, 20))], mx.init.Constant(0.25))
    assert (model.net[0].weight.data() == 0.25).all()


def test_lenet_flattened_size_is_inferred():
    model = Model(lenet())
    model.apply_init([np.zeros((1, 1, 28, 28))])
    assert model.net[4].weight.shape == (120, 16 * 5 * 5)
    bigger = Model(lenet())
    bigger.apply_init([np.zeros((1, 1, 32, 32))])
    assert bigger.net[4].weight.shape == (120, 16 * 6 * 6)


def test_dry_run_leaves_batchnorm_statistics_and_gradients_alone():
    model = with_batchnorm()
    X = np.random.normal(7, 3, size=(16, 5))
    with autograd.record():  # even inside a caller's recording scope
        model.apply_init([X])
    bn = model.net[1]
    assert (bn.running_mean.data() == 0).all() and (bn.running_var.data() == 1).all()


def test_a_training_step_does_change_them():
    """The contrast that makes the test above meaningful. In MXNet 1.9.1 the running
    statistics move on backward(), so a plain forward (the book's dry run) leaves them too."""
    model = with_batchnorm()
    model.initialize()
    with autograd.record():
        y = model(np.random.normal(7, 3, size=(16, 5)))
    y.backward()
    assert not (model.net[1].running_mean.data() == 0).all()


def test_result_does_not_depend_on_the_dummy_batch_size():
    weights = []
    for batch in (1, 64):
        X = np.random.uniform(size=(batch, 20))
        mx.random.seed(0)
        model = Model(mlp())
        model.apply_init([X])
        weights.append([p.data().asnumpy() for p in model.collect_params().values()])
    assert all(onp.array_equal(a, b) for a, b in zip(*weights, strict=True))


def test_a_bare_array_is_refused_with_what_to_pass_instead():
    with pytest.raises(TypeError, match=r"apply_init\(\[X\]\)"):
        Model(mlp()).apply_init(np.zeros((2, 20)))


def test_a_module_without_net_is_refused():
    class NoNet(d2l.Module):
        pass

    with pytest.raises(AttributeError, match="self.net"):
        NoNet().apply_init([np.zeros((2, 20))])


def test_an_init_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="init must be a function"):
        Model(mlp()).apply_init([np.zeros((2, 20))], init="normal")


def test_inputs_that_do_not_fit_name_the_layer():
    model = Model(mlp())
    model.apply_init([np.zeros((2, 20))])
    with pytest.raises(ValueError, match=r"layer 'net\.0' \(Dense") as e:
        model.apply_init([np.zeros((2, 30))])
    assert "(2, 30)" in str(e.value)


def test_layer_table_follows_the_cascade():
    net = mlp()
    net.initialize()
    rows = d2l.layer_table(net, np.zeros((2, 20)), show=False)
    assert [(shape, list(params.values())) for _, shape, params in rows] == [
        ((2, 20), [(256, 20), (256,)]), ((2, 256), [(10, 256), (10,)])]
