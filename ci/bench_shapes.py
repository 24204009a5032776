"""Shapes without memory: size a 10.7-billion-parameter MLP without allocating it, against
eagerly creating a model 100 times smaller, in one framework's env.

Usage (in a framework env): python ci/bench_shapes.py FRAMEWORK abstract|eager
Prints one JSON line: parameters counted, seconds, and peak resident memory added (MB)
over what the process held after importing the framework. ci/bench.py runs both modes of
every framework, each in a fresh process, and reports the ratios.

The model is the notebooks' "Shapes without memory" MLP: ten Dense layers of WIDTH units
fed WIDTH features, then 10 outputs. abstract: WIDTH 32768 (43 GB in float32), sized the
way each notebook shows; eager: WIDTH 3277, one tenth as wide, so 100 times fewer
parameters, created for real with the framework's default initializers.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

BIG, SMALL, DEPTH = 32768, 3277, 10


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def pytorch(width: int, abstract: bool) -> int:
    import torch
    from torch import nn

    with torch.device("meta" if abstract else "cpu"):
        net = nn.Sequential(*[nn.Linear(width, width) for _ in range(DEPTH)],
                            nn.Linear(width, 10))
    return sum(p.numel() for p in net.parameters())


def tensorflow(width: int, abstract: bool) -> int:
    import keras

    net = keras.Sequential([keras.layers.Dense(width) for _ in range(DEPTH)]
                           + [keras.layers.Dense(10)])
    if abstract:
        with keras.StatelessScope(initialize_variables=False):
            net.build((None, width))
    else:
        net.build((None, width))
    return net.count_params()


def mxnet(width: int, abstract: bool) -> int:
    import numpy as onp
    from mxnet import np, npx
    from mxnet.gluon import nn

    npx.set_np()
    net = nn.HybridSequential()
    net.add(*[nn.Dense(width) for _ in range(DEPTH)], nn.Dense(10))
    net.initialize()
    if abstract:
        net.infer_shape(np.zeros((1, width)))
    else:
        net(np.zeros((1, width)))
        npx.waitall()  # MXNet computes asynchronously: wait for the real allocation
    return sum(int(onp.prod(p.shape)) for p in net.collect_params().values())


def jax(width: int, abstract: bool) -> int:
    import jax
    from flax import linen as nn
    from jax import numpy as jnp

    net = nn.Sequential([nn.Dense(width) for _ in range(DEPTH)] + [nn.Dense(10)])
    key = jax.random.PRNGKey(0)
    if abstract:
        params = jax.eval_shape(net.init, key, jax.ShapeDtypeStruct((1, width), jnp.float32))
    else:
        params = jax.block_until_ready(net.init(key, jnp.zeros((1, width))))
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))


IMPORTS = {"pytorch": "torch", "tensorflow": "keras", "mxnet": "mxnet", "jax": "flax.linen"}


def main() -> int:
    fw, mode = sys.argv[1:3]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    __import__(IMPORTS[fw])  # the import's own memory and time are not the model's
    base = peak_mb()
    start = time.perf_counter()
    count = globals()[fw](BIG if mode == "abstract" else SMALL, mode == "abstract")
    seconds = time.perf_counter() - start
    print(json.dumps({"parameters": int(count), "seconds": round(seconds, 4),
                      "peak_mb_added": round(peak_mb() - base, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
