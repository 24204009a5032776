"""d2l_shim.torch against real lazy modules on torch 2.13 (CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from d2l_shim import torch as d2l


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))


def lenet() -> nn.Sequential:
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(), nn.LazyLinear(10))


class Model(d2l.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net


def with_batchnorm() -> Model:
    return Model(nn.Sequential(nn.LazyLinear(8), nn.LazyBatchNorm1d(), nn.ReLU(),
                               nn.LazyLinear(3)))


def constant_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.constant_(module.weight, 0.5)
        nn.init.zeros_(module.bias)


def test_env_holds_torch_only_and_the_shim_imports_only_torch(assert_isolated):
    assert_isolated("torch", {"torch"})


def test_mlp_parameters_are_uninitialized_until_the_first_batch():
    net = mlp()
    assert all(isinstance(p, UninitializedParameter) for p in net.parameters())
    net(torch.rand(2, 20))
    assert [tuple(p.shape) for p in net.parameters()] == [(256, 20), (256,), (10, 256), (10,)]


def test_apply_init_materializes_and_applies_init_to_every_layer():
    model = Model(nn.Sequential(mlp(), nn.LazyLinear(4)))  # nested: init must reach inside
    model.apply_init([torch.rand(2, 20)], constant_init)
    assert model.net[0][0].weight.shape == (256, 20)
    for layer in (model.net[0][0], model.net[0][2], model.net[1]):
        assert torch.all(layer.weight == 0.5) and torch.all(layer.bias == 0)


def test_lenet_flattened_size_is_inferred():
    model = Model(lenet())
    model.apply_init([torch.zeros(1, 1, 28, 28)])
    assert model.net[7].weight.shape == (120, 16 * 5 * 5)
    bigger = Model(lenet())
    bigger.apply_init([torch.zeros(1, 1, 32, 32)])
    assert bigger.net[7].weight.shape == (120, 16 * 6 * 6)


def test_dry_run_leaves_batchnorm_statistics_and_gradients_alone():
    model = with_batchnorm()
    model.apply_init([torch.randn(16, 5) * 3 + 7])
    bn = model.net[1]
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
    assert bn.num_batches_tracked == 0
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_the_books_dry_run_would_have_changed_batchnorm_statistics():
    """The contrast that makes the test above meaningful: d2l's apply_init is a plain forward."""
    model = with_batchnorm()
    model.forward(torch.randn(16, 5) * 3 + 7)
    assert model.net[1].num_batches_tracked == 1
    assert not torch.all(model.net[1].running_mean == 0)


@pytest.mark.parametrize("train", [True, False])
def test_training_modes_are_restored(train):
    model = with_batchnorm()
    model.train(train)
    model.net[3].train(not train)  # a mixed state must survive too
    before = {name: m.training for name, m in model.named_modules()}
    model.apply_init([torch.rand(4, 5)])
    assert {name: m.training for name, m in model.named_modules()} == before


def test_result_does_not_depend_on_the_dummy_batch_size():
    shapes_and_values = []
    for batch in (1, 64):
        X = torch.rand(batch, 20)
        torch.manual_seed(0)
        model = Model(mlp())
        model.apply_init([X])
        shapes_and_values.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*shapes_and_values, strict=True))


def test_a_bare_tensor_is_refused_with_what_to_pass_instead():
    with pytest.raises(TypeError, match=r"apply_init\(\[X\]\)") as e:
        Model(mlp()).apply_init(torch.rand(2, 20))
    assert "shape (2, 20)" in str(e.value)


def test_a_module_without_net_is_refused():
    class NoNet(d2l.Module):
        pass

    with pytest.raises(AttributeError, match="self.net"):
        NoNet().apply_init([torch.rand(2, 20)])


def test_an_init_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="init must be a function"):
        Model(mlp()).apply_init([torch.rand(2, 20)], init="xavier")


def test_inputs_that_do_not_fit_name_the_layer():
    model = Model(nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.LazyLinear(10)))
    with pytest.raises(ValueError, match=r"layer 'net\.0' \(Linear\)") as e:
        model.apply_init([torch.rand(2, 30)])
    assert "(2, 30)" in str(e.value)


def test_layer_table_follows_the_cascade(capsys):
    rows = d2l.layer_table(mlp(), torch.rand(2, 20))
    assert rows == [("0 LazyLinear -> Linear", (2, 20), {"weight": (256, 20), "bias": (256,)}),
                    ("1 ReLU", (2, 256), {}),
                    ("2 LazyLinear -> Linear", (2, 256), {"weight": (10, 256), "bias": (10,)})]
    assert "weight (256, 20)" in capsys.readouterr().out
    eager = nn.Sequential(nn.Linear(20, 256), nn.ReLU())
    assert [name for name, _, _ in d2l.layer_table(eager, torch.rand(2, 20), show=False)] == \
        ["0 Linear", "1 ReLU"]


def test_cascade_figure_shows_lazy_layers_as_declared_and_linear_once_reached():
    rows = d2l.layer_table(mlp(), torch.rand(2, 20), show=False)
    fig = d2l.draw_cascade(rows, output_shape=(2, 10))
    texts = [t.get_text() for t in fig.axes[0].texts]
    # drawing order: per row, its label, then each layer's name and detail, then the arrows
    declared_row = texts[:texts.index("reached 0")]
    last_row = texts[texts.index("reached 2"):]
    assert "0 LazyLinear" in declared_row and "0 Linear" not in declared_row
    assert "0 Linear" in last_row and "2 Linear" in last_row and "0 LazyLinear" not in last_row


def test_expect_error_shows_the_placeholder_error_in_one_line(capsys):
    with d2l.expect_error(RuntimeError):
        _ = nn.LazyLinear(3).weight.shape
    assert capsys.readouterr().out.startswith("RuntimeError: Can't access the shape of an "
                                              "uninitialized parameter")
    with pytest.raises(AssertionError, match="raised nothing"):
        with d2l.expect_error(RuntimeError):
            _ = nn.Linear(2, 3).weight.shape


def test_an_optimizer_built_before_the_first_batch_updates_the_materialized_parameters():
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)  # torch 2.13: no error any more
    net(torch.rand(2, 20)).sum().backward()
    before = net[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(before, net[0].weight)
