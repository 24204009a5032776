"""One apply_init measurement, run by ci/bench.py inside a framework's own env.

Usage: python ci/bench_apply_init.py FRAMEWORK MODEL BATCH VARIANT
  MODEL: mlp (wide: 1024 -> 4096 -> 4096 -> 10) or lenet (1x28x28 images)
  VARIANT: shim (d2l_shim's apply_init) or book (the book's: a plain forward on the whole
  dummy batch, then the initializer)

Prints one JSON object: seconds (best of 5 or more, fresh model each time), peak_mb (how far the
process's peak resident memory rose during the first call: one measurement per process,
since the peak never comes down), the parameter shapes, and a checksum of the initialized
parameters, so ci/bench.py can check that both variants give identical results.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
FRAMEWORK, MODEL, BATCH, VARIANT = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
MLP_IN = 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def torch_case():
    import torch
    from torch import nn

    from d2l_shim import torch as d2l

    torch.set_num_threads(os.cpu_count() or 1)

    def build():
        if MODEL == "mlp":
            net = nn.Sequential(nn.LazyLinear(4096), nn.ReLU(), nn.LazyLinear(4096), nn.ReLU(),
                                nn.LazyLinear(10))
        else:
            net = nn.Sequential(
                nn.LazyConv2d(6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                nn.LazyConv2d(16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
                nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(),
                nn.LazyLinear(10))
        model = d2l.Module()
        model.net = net
        return model

    def init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    X = torch.rand(BATCH, MLP_IN) if MODEL == "mlp" else torch.rand(BATCH, 1, 28, 28)

    def run():
        torch.manual_seed(0)
        model = build()
        if VARIANT == "shim":
            model.apply_init([X], init)
        else:  # the book's apply_init
            model.forward(X)
            model.net.apply(init)
        return [p.detach().numpy() for p in model.parameters()]

    return run


def tensorflow_case():
    import keras
    import tensorflow as tf

    from d2l_shim import tensorflow as d2l

    L = keras.layers

    def build():
        if MODEL == "mlp":
            net = keras.Sequential([L.Dense(4096, activation="relu"),
                                    L.Dense(4096, activation="relu"), L.Dense(10)])
        else:
            net = keras.Sequential([
                L.Conv2D(6, 5, padding="same", activation="sigmoid"), L.AveragePooling2D(2),
                L.Conv2D(16, 5, activation="sigmoid"), L.AveragePooling2D(2), L.Flatten(),
                L.Dense(120, activation="sigmoid"), L.Dense(84, activation="sigmoid"),
                L.Dense(10)])
        model = d2l.Module()
        model.net = net
        return model

    def init(layer):
        if isinstance(layer, (L.Dense, L.Conv2D)):
            layer.kernel.assign(keras.random.normal(layer.kernel.shape, stddev=0.01, seed=1))
            layer.bias.assign(tf.zeros(layer.bias.shape))

    X = tf.random.uniform((BATCH, MLP_IN) if MODEL == "mlp" else (BATCH, 28, 28, 1))

    def run():
        keras.utils.set_random_seed(0)
        model = build()
        if VARIANT == "shim":
            model.apply_init([X], init)
        else:
            model(X)
            for layer in d2l.walk_layers(model.net):
                init(layer)
        return [w for w in model.get_weights()]

    return run


def mxnet_case():
    import mxnet as mx
    from mxnet import np, npx
    from mxnet.gluon import nn

    from d2l_shim import mxnet as d2l

    npx.set_np()

    def build():
        net = nn.Sequential()
        if MODEL == "mlp":
            net.add(nn.Dense(4096, activation="relu"), nn.Dense(4096, activation="relu"),
                    nn.Dense(10))
        else:
            net.add(nn.Conv2D(6, 5, padding=2, activation="sigmoid"), nn.AvgPool2D(2, 2),
                    nn.Conv2D(16, 5, activation="sigmoid"), nn.AvgPool2D(2, 2),
                    nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"),
                    nn.Dense(10))
        model = d2l.Module()
        model.net = net
        return model

    init = mx.init.Normal(0.01)
    X = np.random.uniform(size=(BATCH, MLP_IN) if MODEL == "mlp" else (BATCH, 1, 28, 28))

    def run():
        mx.random.seed(0)
        model = build()
        if VARIANT == "shim":
            model.apply_init([X], init)
        else:
            model.initialize()
            model.forward(X)
            model.collect_params().initialize(init, force_reinit=True)
        params = [p.data().asnumpy() for p in model.collect_params().values()]
        npx.waitall()
        return params

    return run


def jax_case():
    import jax
    from flax import linen as nn

    from d2l_shim import jax as d2l

    normal = nn.initializers.normal(0.01)

    class Net(d2l.Module):
        def setup(self):
            if MODEL == "mlp":
                self.net = nn.Sequential([nn.Dense(4096, kernel_init=normal), nn.relu,
                                          nn.Dense(4096, kernel_init=normal), nn.relu,
                                          nn.Dense(10, kernel_init=normal)])
            else:
                self.net = LeNet()

    class LeNet(nn.Module):
        @nn.compact
        def __call__(self, X):
            X = nn.avg_pool(nn.sigmoid(nn.Conv(6, (5, 5), padding=2, kernel_init=normal)(X)),
                            (2, 2), strides=(2, 2))
            X = nn.avg_pool(nn.sigmoid(nn.Conv(16, (5, 5), padding="VALID",
                                               kernel_init=normal)(X)), (2, 2), strides=(2, 2))
            X = X.reshape((X.shape[0], -1))
            X = nn.sigmoid(nn.Dense(120, kernel_init=normal)(X))
            X = nn.sigmoid(nn.Dense(84, kernel_init=normal)(X))
            return nn.Dense(10, kernel_init=normal)(X)

    X = jax.random.uniform(jax.random.PRNGKey(1),
                           (BATCH, MLP_IN) if MODEL == "mlp" else (BATCH, 28, 28, 1))

    def run():
        key = jax.random.PRNGKey(0)
        if VARIANT == "shim":
            params = Net().apply_init([X], key)
        else:  # the book's: init on the whole dummy batch
            params = Net().init(key, X)
        leaves = jax.block_until_ready(jax.tree_util.tree_leaves(params))
        return [jax.device_get(leaf) for leaf in leaves]

    return run


def main() -> None:
    run = {"pytorch": torch_case, "tensorflow": tensorflow_case, "mxnet": mxnet_case,
           "jax": jax_case}[FRAMEWORK]()
    before = peak_mb()
    start = time.perf_counter()
    params = run()
    times = [time.perf_counter() - start]
    peak = peak_mb() - before
    # At least 5 more runs, more while they are quick (up to 1 s in all): the minimum of
    # many is what survives a noisy 2-core machine for calls of a few milliseconds.
    while len(times) < 6 or (sum(times[1:]) < 1.0 and len(times) < 50):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "seconds": min(times), "peak_mb": round(peak, 1),
        "shapes": [list(p.shape) for p in params],
        "checksum": float(sum(float(abs(p).sum()) for p in params)),
    }))


if __name__ == "__main__":
    main()
