"""d2l_shim.tensorflow against real Keras 3 layers on TensorFlow 2.21 (CPU)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_shim import tensorflow as d2l  # noqa: E402

layers = keras.layers


def mlp() -> keras.Sequential:
    return keras.Sequential([layers.Dense(256, activation="relu"), layers.Dense(10)])


def lenet() -> keras.Sequential:
    return keras.Sequential([
        layers.Conv2D(6, 5, padding="same", activation="sigmoid"), layers.AveragePooling2D(2),
        layers.Conv2D(16, 5, activation="sigmoid"), layers.AveragePooling2D(2),
        layers.Flatten(), layers.Dense(120, activation="sigmoid"),
        layers.Dense(84, activation="sigmoid"), layers.Dense(10)])


class Model(d2l.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net


def with_batchnorm() -> Model:
    return Model(keras.Sequential([layers.Dense(8), layers.BatchNormalization(),
                                   layers.ReLU(), layers.Dense(3)]))


def constant_init(layer) -> None:
    if isinstance(layer, layers.Dense):
        layer.kernel.assign(tf.fill(layer.kernel.shape, 0.5))
        layer.bias.assign(tf.zeros(layer.bias.shape))


def test_env_holds_tensorflow_only_and_the_shim_imports_only_it(assert_isolated):
    assert_isolated("tensorflow", {"tensorflow", "keras"})


def test_weights_are_empty_until_the_first_batch_then_in_by_out():
    net = mlp()
    assert [layer.get_weights() for layer in net.layers] == [[], []]
    assert net.get_weights() == []  # Keras 3: an empty list, no error
    net(tf.random.uniform((2, 20)))
    assert [w.shape for w in net.get_weights()] == [(20, 256), (256,), (256, 10), (10,)]


def test_apply_init_builds_and_applies_init_to_every_layer():
    model = Model(keras.Sequential([mlp(), layers.Dense(4)]))  # nested: init must reach in
    model.apply_init([tf.random.uniform((2, 20))], constant_init)
    dense = [layer for layer in d2l.walk_layers(model.net) if isinstance(layer, layers.Dense)]
    assert [tuple(d.kernel.shape) for d in dense] == [(20, 256), (256, 10), (10, 4)]
    for d in dense:
        assert np.all(d.kernel.numpy() == 0.5) and np.all(d.bias.numpy() == 0)


def test_lenet_flattened_size_is_inferred():
    model = Model(lenet())
    model.apply_init([tf.zeros((1, 28, 28, 1))])
    assert tuple(model.net.layers[5].kernel.shape) == (16 * 5 * 5, 120)
    bigger = Model(lenet())
    bigger.apply_init([tf.zeros((1, 32, 32, 1))])
    assert tuple(bigger.net.layers[5].kernel.shape) == (16 * 6 * 6, 120)


def test_dry_run_leaves_batchnorm_statistics_alone():
    model = with_batchnorm()
    model.apply_init([tf.random.normal((16, 5)) * 3 + 7])
    bn = model.net.layers[1]
    assert np.all(bn.moving_mean.numpy() == 0) and np.all(bn.moving_variance.numpy() == 1)


def test_the_books_dry_run_in_training_would_have_changed_them():
    """The contrast that makes the test above meaningful."""
    model = with_batchnorm()
    model(tf.random.normal((16, 5)) * 3 + 7, training=True)
    assert not np.all(model.net.layers[1].moving_mean.numpy() == 0)


def test_result_does_not_depend_on_the_dummy_batch_size():
    weights = []
    for batch in (1, 64):
        X = tf.random.uniform((batch, 20))
        keras.utils.set_random_seed(0)
        model = Model(mlp())
        model.apply_init([X])
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


def test_a_bare_tensor_is_refused_with_what_to_pass_instead():
    with pytest.raises(TypeError, match=r"apply_init\(\[X\]\)"):
        Model(mlp()).apply_init(tf.zeros((2, 20)))


def test_a_module_without_net_is_refused():
    class NoNet(d2l.Module):
        pass

    with pytest.raises(AttributeError, match="self.net"):
        NoNet().apply_init([tf.zeros((2, 20))])


def test_an_init_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="init must be a function"):
        Model(mlp()).apply_init([tf.zeros((2, 20))], init=0.01)


def test_inputs_that_do_not_fit_name_the_layer():
    model = Model(mlp())
    model.apply_init([tf.zeros((2, 20))])
    with pytest.raises(ValueError, match=r"of layer 'dense") as e:
        model.apply_init([tf.zeros((2, 30))])
    assert "(2, 30)" in str(e.value)


def test_layer_table_follows_the_cascade():
    rows = d2l.layer_table(mlp(), tf.zeros((2, 20)), show=False)
    assert [(shape, list(params.values())) for _, shape, params in rows] == [
        ((2, 20), [(20, 256), (256,)]), ((2, 256), [(256, 10), (10,)])]
