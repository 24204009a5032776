"""The framework-free part of d2l_shim: it must import with no framework installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

import d2l_shim


def test_the_tools_env_has_no_framework_and_the_package_still_imports():
    assert not any(importlib.util.find_spec(m) for m in ("torch", "tensorflow", "mxnet", "jax"))
    out = subprocess.run([sys.executable, "-c", "import d2l_shim, sys; print(len(sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) < 200  # the stdlib only: no framework came along


def test_add_to_class_attaches_the_method_and_keeps_the_name_bound():
    class A:
        pass

    @d2l_shim.add_to_class(A)
    def double(self, x):
        return 2 * x

    assert A().double(21) == 42
    assert double(None, 1) == 2  # d2l's version would have bound `double` to None


def test_save_hyperparameters_stores_init_arguments_except_ignored():
    class Trainer(d2l_shim.HyperParameters):
        def __init__(self, lr, epochs=3, data=None):
            self.save_hyperparameters(ignore=["data"])

    t = Trainer(0.1, data=[1, 2])
    assert (t.lr, t.epochs) == (0.1, 3)
    assert t.hparams == {"lr": 0.1, "epochs": 3}
    assert not hasattr(t, "data")


@pytest.mark.parametrize("bad, message", [
    (object(), "expects a tuple or list"),
    ([], "empty list"),
])
def test_example_inputs_must_be_a_non_empty_tuple_or_list(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        d2l_shim.check_example_inputs(bad)


def test_example_inputs_come_back_as_a_tuple():
    assert d2l_shim.check_example_inputs([1, 2]) == (1, 2)


def test_layer_tracker_names_the_innermost_running_layer():
    tracker = d2l_shim.LayerTracker()
    tracker.enter("outer")()
    tracker.enter("inner")()
    assert tracker.innermost == "inner"
    tracker.leave()
    assert tracker.innermost == "outer"


def test_format_layer_table_aligns_columns():
    text = d2l_shim.format_layer_table([("0 Linear", (2, 20), {"weight": (256, 20)}),
                                        ("1 ReLU", (2, 256), {})])
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "input", "shape", "parameter", "shapes"]
    assert lines[2].endswith("weight (256, 20)") and lines[3].endswith("-")
    assert lines[2].index("(2, 20)") == lines[3].index("(2, 256)")


def test_draw_cascade_carries_its_alt_text_into_the_displayed_output():
    """The figure says in words what it shows: each layer's input and parameter shapes."""
    pytest.importorskip("matplotlib")
    from IPython.core.formatters import DisplayFormatter

    rows = [("0 Linear", (2, 20), {"weight": (256, 20), "bias": (256,)}),
            ("1 ReLU", (2, 256), {})]
    fig = d2l_shim.draw_cascade(rows, (2, 256))
    alt = d2l_shim.describe_cascade(rows, (2, 256))
    for words in ("0 Linear receives (2, 20)", "weight (256, 20), bias (256,)",
                  "1 ReLU receives (2, 256) and gets no parameters", "output has shape (2, 256)"):
        assert words in alt
    data, metadata = DisplayFormatter().format(fig)
    assert data["text/plain"] == alt
    assert metadata["image/png"]["alt"] == alt


def test_describe_cascade_says_when_a_layer_changes_its_class():
    rows = [("0 LazyLinear -> Linear", (2, 20), {"weight": (256, 20)})]
    alt = d2l_shim.describe_cascade(rows, (2, 256))
    assert "cascade of 1 layer." in alt
    assert "0 LazyLinear receives (2, 20), becomes Linear and gets weight (256, 20)." in alt


def test_expect_error_shows_the_expected_error_in_one_line(capsys):
    with d2l_shim.expect_error(ValueError) as caught:
        raise ValueError("the shape is not known yet\n  File ..., line 3\nmore detail")
    assert capsys.readouterr().out == "ValueError: the shape is not known yet\n"
    assert isinstance(caught.error, ValueError)


def test_expect_error_names_the_subclass_that_was_raised(capsys):
    with d2l_shim.expect_error(LookupError):
        {}["missing"]
    assert capsys.readouterr().out == "KeyError: 'missing'\n"


def test_expect_error_shortens_a_long_first_line(capsys):
    with d2l_shim.expect_error(RuntimeError, max_chars=40):
        raise RuntimeError("x" * 500)
    out = capsys.readouterr().out.rstrip("\n")
    assert len(out) == 40 and out.startswith("RuntimeError: xxx") and out.endswith("…")


def test_expect_error_fails_when_nothing_is_raised(capsys):
    with pytest.raises(AssertionError, match="should have raised RuntimeError, but it raised "
                                             "nothing"):
        with d2l_shim.expect_error(RuntimeError):
            pass
    assert capsys.readouterr().out == ""


def test_expect_error_fails_on_another_error_and_keeps_it_as_the_cause():
    with pytest.raises(AssertionError, match="should have raised ValueError or TypeError, but "
                                             "it raised ZeroDivisionError: division by zero") as e:
        with d2l_shim.expect_error((ValueError, TypeError)):
            _ = 1 / 0
    assert isinstance(e.value.__cause__, ZeroDivisionError)


def test_expect_error_lets_an_interrupt_through():
    with pytest.raises(KeyboardInterrupt):
        with d2l_shim.expect_error(ValueError):
            raise KeyboardInterrupt


@pytest.mark.parametrize("bad", [ValueError("an instance"), "ValueError", (), int])
def test_expect_error_wants_exception_classes(bad):
    with pytest.raises(TypeError, match=r"e\.g\. expect_error\(RuntimeError\)"):
        d2l_shim.expect_error(bad)



@pytest.mark.parametrize("name, reached, shown", [
    ("0 LazyLinear -> Linear", False, "0 LazyLinear"),
    ("0 LazyLinear -> Linear", True, "0 Linear"),
    ("1 ReLU", True, "1 ReLU"),
    ("dense", False, "dense"),
])
def test_layer_name_shows_the_class_of_the_moment(name, reached, shown):
    assert d2l_shim.layer_name(name, reached) == shown


def test_expect_error_shows_the_error_a_keras_wrapper_holds(capsys):
    wrapped = ("Exception encountered when calling Sequential.call().\n\n\x1b[1mInput 0 of layer "
               "'dense' is incompatible with the layer\x1b[0m\n\nArguments received by ...")
    with d2l_shim.expect_error(ValueError):
        raise ValueError(wrapped)
    assert capsys.readouterr().out == \
        "ValueError: Input 0 of layer 'dense' is incompatible with the layer\n"
