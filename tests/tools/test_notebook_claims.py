"""Every claim of the chapter notebooks' prose, checked on the values each kernel computed.

Each notebook is executed once, cell by cell, in its framework's kernel (nbclient; testbook
is unmaintained). The kernel stays up afterwards, and a test reads what the notebook
computed: `nb.value(expr)` evaluates an expression in that kernel and returns it as JSON,
`nb.output(snippet)` / `nb.error(snippet)` give what the cell containing `snippet` printed or
raised. Each test's docstring starts with the quoted words of the sentence it backs;
test_every_quote_is_in_its_notebook keeps the quotes and the prose in step, so a reviewer
can go from a sentence (search for it here) to its test.

The same tests run on Colab's stack (`make test-colab`, ci/colab.py): D2L_KERNEL names the
kernel to use instead of the notebook's own, D2L_STACK=colab says which versions run, and
D2L_SHIM_FROM makes the set-up cell pip-install the shim from this checkout instead of the
repository URL, in a kernel where a stand-in `google.colab` is imported, as on Colab.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
STACK = os.environ.get("D2L_STACK", "pinned")  # "colab": Colab's versions (ci/colab.py)
KERNEL = os.environ.get("D2L_KERNEL")  # None: the kernel the notebook's metadata names
SHIM_FROM = os.environ.get("D2L_SHIM_FROM")  # a pip spec replacing the repository URL


def repository_url() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


class ExecutedNotebook:
    """A notebook run top to bottom in a live kernel that tests can still question."""

    def __init__(self, fw: str, stack: contextlib.ExitStack):
        path = ROOT / "notebooks" / f"lazy-init-{fw}.ipynb"
        self.nb = nbformat.read(path, as_version=4)
        kernel = KERNEL or self.nb.metadata.kernelspec.name
        if SHIM_FROM:  # each set-up cell must really install the shim, not find it there
            python = KernelSpecManager().get_kernel_spec(kernel).argv[0]
            subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "d2l-shim"],
                           check=True, capture_output=True)
            # ...from this checkout, where Colab would install the repository's.
            for cell in self.nb.cells:
                cell.source = cell.source.replace(f"git+{repository_url()}", SHIM_FROM)
        self.client = NotebookClient(
            self.nb, kernel_name=kernel, timeout=600,
            startup_timeout=120, resources={"metadata": {"path": str(path.parent)}})
        stack.enter_context(self.client.setup_kernel())
        self.stopped_at: tuple[int, CellExecutionError] | None = None
        for index, cell in enumerate(self.nb.cells):
            try:
                self.client.execute_cell(cell, index)
            except CellExecutionError as e:  # a cell raised: the run stops there
                self.stopped_at = (index, e)
                break

    def cell(self, snippet: str):
        """The code cell whose source contains `snippet` (or is it, when one is exactly)."""
        found = [c for c in self.nb.cells if c.cell_type == "code" and c.source == snippet] \
            or [c for c in self.nb.cells if c.cell_type == "code" and snippet in c.source]
        assert len(found) == 1, f"{len(found)} code cells contain {snippet!r}"
        return found[0]

    def output(self, snippet: str) -> str:
        """Everything the cell containing `snippet` printed or displayed, as text."""
        parts = []
        for o in self.cell(snippet).outputs:
            parts.append(o.get("text", ""))
            parts.append(o.get("data", {}).get("text/plain", ""))
        return re.sub(r"\x1b\[[0-9;]*m", "", "".join(parts))  # no terminal colours

    def error(self, snippet: str) -> tuple[str, str]:
        """(type, message) of the error that the cell containing `snippet` shows through
        d2l.expect_error: the one line it printed, not a traceback."""
        cell = self.cell(snippet)
        assert "d2l.expect_error(" in cell.source, f"{snippet!r} shows no expected error"
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
        shown = re.search(r"^(\w+): (.*)$", self.output(snippet), re.M)
        assert shown, f"the cell containing {snippet!r} printed no error line"
        return shown.group(1), shown.group(2)

    def has_image(self, snippet: str) -> bool:
        return any("image/png" in o.get("data", {}) for o in self.cell(snippet).outputs)

    def run(self, code: str, stream: str | None = None) -> str:
        """Execute `code` in the notebook's kernel; return what it printed (to `stream`
        alone when given: a warning on stderr may arrive before or after stdout's lines)."""
        cell = nbformat.v4.new_code_cell(code)
        self.nb.cells.append(cell)  # nbclient writes the outputs into the notebook's cell
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.nb.cells.pop()
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                       and stream in (None, o.get("name")))

    def value(self, expr: str):
        """The value of `expr` in the notebook's kernel, through JSON."""
        marker = "@@value@@"
        out = self.run(f"import json as _json\nprint({marker!r} + _json.dumps({expr}))")
        return json.loads(out.split(marker, 1)[1])


@pytest.fixture(scope="module")
def executed(frameworks):
    """One executed notebook per framework, its kernel kept up until the module is done."""
    runs: dict[str, ExecutedNotebook] = {}
    with contextlib.ExitStack() as stack:

        def get(fw: str) -> ExecutedNotebook:
            if fw not in frameworks:
                pytest.skip(f"{fw} was not set up in this run (FRAMEWORKS)")
            if fw not in runs:
                runs[fw] = ExecutedNotebook(fw, stack)
            return runs[fw]

        yield get


@pytest.fixture
def pytorch(executed):
    return executed("pytorch")


@pytest.fixture
def tensorflow(executed):
    return executed("tensorflow")


@pytest.fixture
def mxnet(executed):
    if STACK == "colab":
        pytest.skip("MXNet does not run on Colab: test_mxnet_stops_at_set_up_on_colab")
    return executed("mxnet")


@pytest.fixture
def jax(executed):
    return executed("jax")


def no_unexpected_error(nb: ExecutedNotebook) -> None:
    if nb.stopped_at:
        index, e = nb.stopped_at
        pytest.fail(f"cell {index} raised (no cell of the chapter may): {e}")


# --- Colab: the set-up cells, run for real (make test-colab) ---------------------------------

colab_only = pytest.mark.skipif(STACK != "colab", reason="runs under make test-colab")


@colab_only
@pytest.mark.parametrize("fw", ["pytorch", "tensorflow", "jax"])
def test_set_up_cell_installed_the_shim_on_colab(executed, fw):
    """The set-up cell found no d2l_shim, installed this checkout's (not an editable link)."""
    nb = executed(fw)
    no_unexpected_error(nb)
    where = nb.value("__import__('d2l_shim').__file__")
    assert "site-packages" in where and not where.startswith(str(ROOT / "d2l_shim")), where


@colab_only
def test_mxnet_stops_at_set_up_on_colab(executed):
    """"This notebook does not run in Colab, and the cell below says so there" """
    nb = executed("mxnet")
    index, error = nb.stopped_at
    assert nb.nb.cells[index - 1].source.startswith("## Set-up")
    assert error.ename == "RuntimeError" and "make lab" in error.evalue


# --- PyTorch -------------------------------------------------------------------------------

def test_pytorch_runs_through(pytorch):
    no_unexpected_error(pytorch)


def test_pytorch_placeholder(pytorch):
    """"`<UninitializedParameter>`: the parameter is registered with the layer, but no memory
    has been set aside" """
    assert pytorch.output("net[0].weight").strip() == "<UninitializedParameter>"
    declared = "net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))\nnet"
    assert pytorch.output(declared).count("in_features=0") == 2


def test_pytorch_size_dtype_device(pytorch):
    """"`size()` answers: with `torch.Size([0])`" """
    assert pytorch.output("w0 = net[0].weight").strip() == \
        "size(): torch.Size([0]) | dtype: torch.float32 | device: cpu"


def test_pytorch_shape_raises(pytorch):
    """"The `.shape` attribute, unlike `size()`, refuses: it raises a `RuntimeError`" """
    assert pytorch.error("    net[0].weight.shape")[0] == "RuntimeError"


def test_pytorch_computing_raises(pytorch):
    """"Anything that computes with the values fails too, with a `ValueError`" """
    assert pytorch.error("nn.init.normal_(net[0].weight")[0] == "ValueError"


def test_pytorch_no_lazy_module_warning(pytorch):
    """"current PyTorch no longer prints it" """
    assert pytorch.run("import warnings\nwith warnings.catch_warnings(record=True) as _w:\n"
                       "    warnings.simplefilter('always')\n    nn.LazyLinear(3)\n"
                       "print(len(_w))").strip() == "0"


def test_pytorch_optimizers_built_before_the_data(pytorch):
    """"SGD, Adam, AdamW, RMSprop and LBFGS, and the learning-rate schedulers, accept the
    placeholders" """
    table = dict(line.split(None, 1) for line in
                 pytorch.output("for make in (torch.optim.SGD").splitlines())
    assert all(table[name] == "built" for name in ("SGD", "Adam", "AdamW", "RMSprop", "LBFGS"))
    assert pytorch.run(
        "_o = torch.optim.SGD(nn.Sequential(nn.LazyLinear(4)).parameters(), lr=0.1)\n"
        "torch.optim.lr_scheduler.StepLR(_o, 1)\n"
        "torch.optim.lr_scheduler.CosineAnnealingLR(_o, 10)\nprint('ok')").strip() == "ok"


def test_pytorch_optimizers_that_refuse(pytorch):
    """"`Adagrad` fills its state from the values right away, and `Muon` takes only matrices
    (2-D parameters), while a placeholder is 1-D, `torch.Size([0])`" """
    table = dict(line.split(None, 1) for line in
                 pytorch.output("for make in (torch.optim.SGD").splitlines())
    assert table["Adagrad"].startswith("ValueError: Attempted to use an uninitialized")
    assert table["Muon"].startswith("ValueError: Muon only supports 2D")
    assert pytorch.value("len(nn.LazyLinear(3).weight.size())") == 1
    assert "torch.Size([0])" in pytorch.run(
        "try:\n    torch.optim.Muon(nn.LazyLinear(3).parameters())\n"
        "except ValueError as e:\n    print(e)")


def test_pytorch_notes_on_optimizers_were_wrong_not_outdated(pytorch):
    """"Those notes were wrong rather than outdated: since lazy modules first appeared (2020),
    the common optimizers have not needed it" """
    table = dict(line.split(None, 1) for line in
                 pytorch.output("for make in (torch.optim.SGD").splitlines())
    refusing = sorted(name for name, result in table.items() if result != "built")
    assert refusing == ["Adagrad", "Muon"]  # Muon came to torch.optim years later


def test_pytorch_muon_refuses_the_biases_after_the_dry_run(pytorch):
    """"after it `Muon(net.parameters())` still refuses, now naming a bias of 256 numbers" """
    ename, evalue = pytorch.error("torch.optim.Muon(tuned.parameters())")
    assert ename == "ValueError" and "torch.Size([256])" in evalue
    assert not pytorch.value("any(nn.parameter.is_lazy(p) for p in tuned.parameters())")


def test_pytorch_muon_for_the_matrices_only(pytorch):
    """"Muon is meant for the weight matrices only; everything else (biases, and in other
    models embeddings and norms) goes to a second optimizer such as AdamW" """
    assert pytorch.output("matrices = [p for p").strip() == \
        "Muon: [(256, 20), (10, 256)] | AdamW: [(256,), (10,)]"
    assert pytorch.value("[type(o).__name__ for o in optimizers]") == ["Muon", "AdamW"]


def test_pytorch_optimizer_holds_the_materialized_objects(pytorch):
    """"the forward pass turns those very objects into real parameters" """
    assert "the optimizer holds 4 parameter tensors" in pytorch.output("opt = torch.optim.SGD")
    assert "same object: True" in pytorch.output("before = net[0].weight")
    assert pytorch.value("change") > 0


def test_pytorch_one_pass_fixes_every_shape(pytorch):
    """"look for `in_features` turning from 0 into 20 and 256" """
    assert pytorch.value("[net[0].in_features, net[2].in_features]") == [20, 256]
    assert pytorch.value("[type(net[0]).__name__, type(net[2]).__name__]") == ["Linear"] * 2


def test_pytorch_book_cell_shape_after_the_pass(pytorch):
    """"Look for `torch.Size([256, 20])`, the output the book prints" """
    assert pytorch.output("net[0].weight.shape").strip() == "torch.Size([256, 20])"


def test_pytorch_weight_layout_and_count(pytorch):
    """"PyTorch stores a linear layer's weight as (outputs, inputs), so the first weight is
    (256, 20)" """
    assert pytorch.value("[list(p.shape) for p in net.parameters()]") == \
        [[256, 20], [256], [10, 256], [10]]
    assert pytorch.value("sum(p.numel() for p in net.parameters())") == 7946
    assert pytorch.value("gap") < 1e-6


def test_pytorch_batch_size_in_no_parameter(pytorch):
    """"The batch size, 2, appears in the shapes that flow but in no parameter" """
    assert pytorch.value("[list(p.shape) for p in fresh.parameters()]") == \
        [[256, 20], [256], [10, 256], [10]]
    assert "(2, 20)" in pytorch.output("rows = d2l.layer_table(fresh, X)")


def test_pytorch_seven_features_change_only_the_first_weight(pytorch):
    """"Look at which weight changes: only the first one" """
    assert pytorch.output("other = nn.Sequential").strip() == "(256, 7) (10, 256)"


def test_pytorch_cascade_figure(pytorch):
    """"The same cascade as a picture, drawn by `d2l.draw_cascade`" """
    assert pytorch.has_image("d2l.draw_cascade(rows")


def test_pytorch_cascade_declared_row_is_lazy(pytorch):
    """"The top row is the network as declared, its layers still `LazyLinear`; each row below
    is one more layer reached by the pass, which turns that layer into a `Linear`" """
    assert "0 LazyLinear -> Linear" in pytorch.output("rows = d2l.layer_table(fresh, X)")
    texts = pytorch.value(
        "[t.get_text() for t in d2l.draw_cascade(d2l.layer_table(nn.Sequential(nn.LazyLinear("
        "256), nn.ReLU(), nn.LazyLinear(10)), X, show=False), (2, 10)).axes[0].texts]")
    declared, reached = texts[:texts.index("reached 0")], texts[texts.index("reached 0"):]
    assert {"0 LazyLinear", "2 LazyLinear"} <= set(declared) and "0 Linear" not in declared
    assert "0 Linear" in reached and "2 Linear" in reached


def test_pytorch_materializes_layer_by_layer(pytorch):
    """"after layer 0 has run, layer 2 is still a `LazyLinear`" """
    lines = pytorch.output("watched = nn.Sequential").splitlines()
    assert lines[0].split() == ["after", "Linear", "still", "lazy:", "['2']"]
    assert lines[-1].endswith("still lazy: []")


def test_pytorch_failed_pass_leaves_the_network_half_made(pytorch):
    """"a pass that fails half-way leaves the network half-made" """
    assert pytorch.error("half = nn.Sequential")[0] == "RuntimeError"
    assert pytorch.value("[type(half[0]).__name__, list(half[0].weight.shape)]") == \
        ["Linear", [256, 20]]


def test_pytorch_lazy_linear_is_linear_with_the_mixin(pytorch):
    """"it is declared as `LazyLinear(LazyModuleMixin, Linear)`, an ordinary `nn.Linear` with
    `torch.nn.modules.lazy.LazyModuleMixin` in front" """
    assert pytorch.value("[c.__name__ for c in nn.LazyLinear.__bases__]") == \
        ["LazyModuleMixin", "Linear"]
    assert pytorch.value("nn.LazyLinear.cls_to_become is nn.Linear")


def test_pytorch_custom_lazy_layer_calls_initialize_parameters_first(pytorch):
    """"The hook calls `initialize_parameters` with the arguments of the first call, just
    before `forward`" """
    calls = pytorch.run(
        "_calls = []\n\nclass _Recorded(LazyScale):\n"
        "    def initialize_parameters(self, x):\n"
        "        _calls.append(('initialize_parameters', tuple(x.shape)))\n"
        "        super().initialize_parameters(x)\n\n"
        "_r = _Recorded()\n"
        "_r.register_forward_hook(lambda m, a, o: _calls.append(('forward', type(m).__name__)))\n"
        "_r(torch.rand(3, 5))\n_r(torch.rand(3, 5))\nprint(_calls)")
    assert calls.strip() == ("[('initialize_parameters', (3, 5)), ('forward', 'Scale'), "
                             "('forward', 'Scale')]")


def test_pytorch_custom_lazy_layer_reset_passes_over_the_placeholder(pytorch):
    """"Its `reset_parameters` passes over a placeholder, which `nn.init` would refuse" """
    assert pytorch.run("_s = LazyScale()\n_s.reset_parameters()\n"
                       "print(type(_s.weight).__name__)").strip() == "UninitializedParameter"
    assert pytorch.run("try:\n    Scale.reset_parameters(LazyScale())\n"
                       "except ValueError as e:\n    print('ValueError')").strip() == "ValueError"


def test_pytorch_custom_lazy_layer_before_and_after(pytorch):
    """"`LazyScale(num_features=0)` holding a placeholder becomes `Scale(num_features=256)`
    holding 256 factors, a size it read off the output of the layer before it" """
    assert pytorch.output("scaled = nn.Sequential").splitlines() == [
        "before: LazyScale(num_features=0) <UninitializedParameter>",
        "after:  Scale(num_features=256) (256,)"]
    assert pytorch.value("[type(scaled[2]).__name__, hasattr(scaled[2], '_initialize_hook')]") \
        == ["Scale", False]
    assert pytorch.run("_t = LazyScale()\n_t(torch.rand(2, 7))\nprint(_t)").strip() == \
        "Scale(num_features=7)"


def test_pytorch_apply_init(pytorch):
    """"PyTorch's default initializer would have given this layer a standard deviation of
    about 0.13" """
    assert abs(pytorch.value("w.std().item()") - 0.01) < 0.001
    assert pytorch.value("max(m.bias.abs().max().item() for m in model.net "
                         "if isinstance(m, nn.Linear))") == 0
    default_std = pytorch.value("nn.Linear(20, 256).weight.std().item()")
    assert 0.12 < default_std < 0.14


def test_pytorch_apply_init_eval_mode_no_gradients(pytorch):
    """"It runs the pass in evaluation mode and without recording gradients" """
    assert pytorch.run(
        "_m = MLP()\n_m.net.append(nn.LazyBatchNorm1d())\n_m.train()\n"
        "_m.apply_init([X * 5 + 3])\n"
        "print(_m.training, all(p.grad is None for p in _m.parameters()),"
        " int(_m.net[3].num_batches_tracked))").split() == ["True", "True", "0"]


def test_pytorch_apply_init_refuses_a_bare_tensor(pytorch):
    """"The shim refuses it and says what to pass instead: look for `expects a tuple or list`
    in its message" """
    ename, evalue = pytorch.error("MLP().apply_init(X")
    assert ename == "TypeError" and "expects a tuple or list of example inputs" in evalue
    assert "Wrap it: apply_init([X])" in pytorch.run(
        "try:\n    MLP().apply_init(X)\nexcept TypeError as e:\n    print(e)")


def test_pytorch_cnn_flattened_sizes(pytorch):
    """"the first dense layer's weight is (120, 400)" """
    assert pytorch.value("list(cnn[7].weight.shape)") == [120, 400]
    assert pytorch.value("list(cnn32[7].weight.shape)") == [120, 576]


def test_pytorch_meta_device(pytorch):
    """"10,738,073,610 parameters, 43 GB in float32, far more than this machine's memory" """
    assert pytorch.value("huge_count") == 10_738_073_610
    assert pytorch.value("str(huge[0].weight.device)") == "meta"
    assert pytorch.value("all(p.is_meta for p in huge.parameters())")
    memory = pytorch.value("__import__('os').sysconf('SC_PAGE_SIZE') * "
                           "__import__('os').sysconf('SC_PHYS_PAGES')")
    assert 4 * 10_738_073_610 > memory


def test_pytorch_lazy_layers_on_meta(pytorch):
    """"a lazy network fed a meta input of the right shape infers every size without data
    and without memory" """
    assert pytorch.value("lazy_count") == 10_738_073_610
    assert pytorch.value("str(huge_lazy[0].weight.device)") == "meta"


def test_pytorch_to_empty_and_reset_parameters(pytorch):
    """"`to_empty` allocates memory on a real device without filling it" """
    assert pytorch.value("small[0].weight.device.type") == "cpu"
    assert 0.12 < pytorch.value("small[0].weight.std().item()") < 0.14


def test_pytorch_plain_load_copies_into_an_initialized_model(pytorch):
    """"that draws every random number for nothing and holds the model and the checkpoint in
    memory at the same time" """
    assert pytorch.run(
        "_rng = torch.get_rng_state()\n"
        "_m = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))\n"
        "_drawn = not torch.equal(_rng, torch.get_rng_state())\n"
        "_c = torch.load(checkpoint_path, weights_only=True)\n_p = _m[0].weight.data_ptr()\n"
        "_m.load_state_dict(_c)\n"
        "print(_drawn, _m[0].weight.data_ptr() == _p != _c['0.weight'].data_ptr(),"
        " torch.equal(_m[0].weight, _c['0.weight']))").split() == ["True", "True", "True"]


def test_pytorch_mmap_maps_the_checkpoint_file(pytorch):
    """"`torch.load` with `mmap=True` maps the file into memory instead of reading it" """
    assert pytorch.output("checkpoint = torch.load").strip() == \
        "{'0.weight': (256, 20), '0.bias': (256,), '2.weight': (10, 256), '2.bias': (10,)}"
    mapped = pytorch.value(
        "[(int(r.split('-')[0], 16), int(r.split('-')[1], 16)) for r, *_, f in "
        "(l.split() for l in open('/proc/self/maps')) if f == checkpoint_path]")
    address = pytorch.value("checkpoint['0.weight'].data_ptr()")
    assert any(start <= address < end for start, end in mapped), (address, mapped)


def test_pytorch_weights_only_refuses_objects(pytorch):
    """"`weights_only=True` unpickles only tensors and plain containers, never arbitrary
    objects" """
    assert pytorch.run(
        "import pickle as _pickle\nclass _Thing:\n    pass\n\n"
        "_path = os.path.join(checkpoint_dir.name, 'thing.pt')\n"
        "torch.save({'w': torch.ones(2), 'thing': _Thing()}, _path)\n"
        "try:\n    torch.load(_path, weights_only=True)\n"
        "except _pickle.UnpicklingError:\n    print('refused')\n"
        "print(type(torch.load(_path, weights_only=False)['thing']).__name__)"
    ).split() == ["refused", "_Thing"]


def test_pytorch_plain_load_into_meta_goes_nowhere(pytorch):
    """"A plain `load_state_dict` copies the checkpoint's values into the parameters, which on
    `meta` goes nowhere (PyTorch warns, and the model stays on `meta`)" """
    # A fresh load: load_state_dict(assign=True) writes into the state dict's _metadata,
    # and every later load of that same dict assigns too.
    out = pytorch.run(
        "import warnings as _warnings\n"
        "with torch.device('meta'):\n"
        "    _m = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))\n"
        "with _warnings.catch_warnings(record=True) as _w:\n"
        "    _warnings.simplefilter('always')\n"
        "    _m.load_state_dict(torch.load(checkpoint_path, mmap=True, weights_only=True))\n"
        "print(_m[0].weight.device, len(_w), 'assign=True' in str(_w[0].message))")
    assert out.split() == ["meta", "4", "True"]


def test_pytorch_assign_gives_the_checkpoint_tensors_themselves(pytorch):
    """"With `assign=True` each parameter is replaced by a new one made from the checkpoint's
    tensor, memory and all" """
    first, second = pytorch.output("meta_weight = loaded[0].weight").splitlines()
    assert first == "device: cpu | values of net: True | same memory as the checkpoint: True"
    assert second == "same object as before the load: False"
    assert pytorch.value("all(p.device.type == 'cpu' and type(p) is nn.Parameter "
                         "and p.requires_grad for p in loaded.parameters())")


def test_pytorch_optimizer_after_an_assigning_load(pytorch):
    """"It is a new object, though, so an optimizer must be built after the load" """
    assert pytorch.run(
        "with torch.device('meta'):\n    _m = nn.Sequential(nn.Linear(20, 256))\n"
        "_o = torch.optim.SGD(_m.parameters(), lr=0.1)\n"
        "_m.load_state_dict({k: v for k, v in checkpoint.items() if k.startswith('0.')},"
        " assign=True)\n"
        "print(_o.param_groups[0]['params'][0].is_meta, _m[0].weight.is_meta)"
    ).split() == ["True", "False"]


def test_pytorch_training_changes_memory_not_the_file(pytorch):
    """"Training such a model later changes its memory, not the file: the mapping is
    private." """
    assert pytorch.run(
        "_bytes = open(checkpoint_path, 'rb').read()\n"
        "with torch.device('meta'):\n"
        "    _m = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))\n"
        "_m.load_state_dict(torch.load(checkpoint_path, mmap=True, weights_only=True),"
        " assign=True)\n"
        "_o = torch.optim.SGD(_m.parameters(), lr=0.1)\n"
        "_m(X).pow(2).sum().backward()\n_o.step()\n"
        "print(not torch.equal(_m[0].weight, net[0].weight),"
        " open(checkpoint_path, 'rb').read() == _bytes)").split() == ["True", "True"]


def test_pytorch_skip_init_draws_nothing(pytorch):
    """"The layer is real and has its shape, but holds whatever bytes were in its memory: no
    initializer ran and no random number was drawn" """
    assert pytorch.output("bare = torch.nn.utils.skip_init").strip() == \
        "Linear (256, 20) cpu | random numbers drawn: False"
    # ...where building the layer the usual way does draw them.
    assert pytorch.run("_rng = torch.get_rng_state()\nnn.Linear(20, 256)\n"
                       "print(torch.equal(_rng, torch.get_rng_state()))").strip() == "False"


def test_pytorch_skip_init_builds_on_meta_then_to_empty(pytorch):
    """"`torch.nn.utils.skip_init` packs "build on `meta`, then `to_empty`" into one call, for
    a module whose constructor takes a `device` argument" """
    assert pytorch.run(
        "class _Built(nn.Module):\n    def __init__(self, device=None):\n"
        "        super().__init__()\n        self.built_on = str(device)\n"
        "        self.w = nn.Parameter(torch.empty(3, device=device))\n\n"
        "_b = torch.nn.utils.skip_init(_Built)\nprint(_b.built_on, _b.w.device)"
    ).split() == ["meta", "cpu"]
    assert "'device' arg" in pytorch.run(
        "try:\n    torch.nn.utils.skip_init(nn.ReLU)\nexcept RuntimeError as e:\n    print(e)")


def test_pytorch_a_loop_over_children_misses_the_block(pytorch):
    """"the loop misses `2.0`, the layer inside the block, which keeps the bytes `to_empty`
    left" """
    assert pytorch.output("for layer in nested.children()").splitlines() == [
        "a loop over children(): ['0', '3']",
        "nested.apply:           ['0', '2.0', '3']"]


def test_pytorch_apply_reaches_every_submodule(pytorch):
    """"`apply` visits every submodule at any depth, as the book's `apply_init` does" """
    assert pytorch.value("sorted(n for n, m in nested.named_modules()"
                         " if isinstance(m, nn.Linear))") == ["0", "2.0", "3"]
    assert pytorch.value("all(abs(m.weight.std().item() - 0.01) < 0.002 and"
                         " not m.bias.any().item() for m in nested.modules()"
                         " if isinstance(m, nn.Linear))")


def test_pytorch_buffer_is_garbage_after_to_empty(pytorch):
    """"A buffer computed in `__init__`, such as a table of positional encodings, was computed
    on `meta`, that is, not at all, and after `to_empty` holds whatever bytes were there" """
    assert pytorch.output("    positions = Positions()").strip() == "table as computed: False"
    assert pytorch.value("[str(positions.P.device), list(positions.P.shape)]") == \
        ["cpu", [16, 32]]
    assert pytorch.run("with torch.device('meta'):\n    print(Positions().P.is_meta)").strip() \
        == "True"


def test_pytorch_buffer_recomputed_by_reset_parameters(pytorch):
    """"The cure is to compute such a buffer where the initialization happens" """
    assert pytorch.output("class ResetPositions").strip() == "table as computed: True"


def test_pytorch_non_persistent_buffer_stays_on_meta(pytorch):
    """"it is not in the `state_dict`, so `load_state_dict(..., assign=True)` leaves it on
    `meta`" """
    assert pytorch.run(
        "class _Kept(Positions):\n    def __init__(self):\n        nn.Module.__init__(self)\n"
        "        self.num_hiddens, self.max_len = 32, 16\n"
        "        self.register_buffer('P', self.table(), persistent=False)\n\n"
        "with torch.device('meta'):\n    _k = _Kept()\n"
        "print(list(_k.state_dict()), list(Positions().state_dict()))\n"
        "_k.load_state_dict(_Kept().state_dict(), assign=True)\nprint(_k.P.device)"
    ).splitlines() == ["[] ['P']", "meta"]


def test_pytorch_fully_shard_on_meta(pytorch):
    """"which turns each parameter into a `DTensor` split by rows, `Shard(dim=0)`" """
    assert pytorch.output("from torch.distributed.fsdp import fully_shard").strip() == \
        "FSDPLinear DTensor meta (Shard(dim=0),)"


def test_pytorch_fsdp_to_empty_then_initialize(pytorch):
    """"only then `to_empty`, so that each process allocates only its own rows" """
    out = pytorch.output("sharded.to_empty(device=\"cpu\")").strip()
    device, std, output = re.fullmatch(r"(\w+) std ([\d.]+) \| output: (.*)", out).groups()
    assert device == "cpu" and 0.12 < float(std) < 0.14 and output == "(2, 10)"
    # One process holds every row: its shard is the whole weight, now in real memory.
    assert pytorch.value("[type(sharded[0].weight).__name__, "
                         "list(sharded[0].weight.to_local().shape), "
                         "sharded[0].weight.to_local().device.type]") == \
        ["DTensor", [256, 20], "cpu"]
    assert not pytorch.value("dist.is_initialized()")


def test_pytorch_dtensor_warns_about_random_operators_on_cpu(pytorch):
    """"On a CPU mesh DTensor warns that its random operators may not be fully supported" """
    out = pytorch.run(
        "import warnings as _warnings\n"
        "dist.init_process_group('gloo', store=dist.HashStore(), rank=0, world_size=1)\n"
        "with torch.device('meta'):\n    _s = nn.Linear(20, 256)\n"
        "fully_shard(_s)\n_s.to_empty(device='cpu')\n"
        "with _warnings.catch_warnings(record=True) as _w:\n"
        "    _warnings.simplefilter('always')\n    _s.reset_parameters()\n"
        "dist.destroy_process_group()\nprint([str(w.message) for w in _w])")
    assert "DTensor random operators may not have complete support on cpu device mesh" in out


def test_pytorch_ddp_refuses_placeholders(pytorch):
    """"`DistributedDataParallel` copies every parameter from one process to the others when
    it is created, so it refuses placeholders" """
    ename, evalue = pytorch.error("DistributedDataParallel(nn.Sequential(nn.LazyLinear")
    assert ename == "RuntimeError" and "uninitialized parameters" in evalue
    assert pytorch.output("ready = nn.Sequential").strip() == "DistributedDataParallel"


def test_pytorch_state_dict_before_the_first_pass(pytorch):
    """"`state_dict()` of a lazy network does not fail: it holds the placeholders" """
    assert set(pytorch.value("[type(v).__name__ for v in lazy_state.values()]")) == \
        {"UninitializedParameter"}
    assert pytorch.error("eager.load_state_dict(lazy_state)")[0] == "RuntimeError"


def test_pytorch_load_state_dict_into_a_lazy_network(pytorch):
    """"`load_state_dict` gives each placeholder the saved shape and values" """
    out = pytorch.output("restored = nn.Sequential")
    assert out.startswith("LazyLinear(in_features=0, out_features=256")
    assert "loaded: True" in out and "after the first call: True" in out


def test_pytorch_random_stream_lazy_vs_eager(pytorch):
    """"the same architecture therefore gets different values whenever anything else draws
    random numbers in between" """
    assert pytorch.output("lazy_net = nn.Sequential").strip() == "same first weight: False"
    # ...and only then: with nothing drawn in between, the values agree.
    assert pytorch.run(
        "torch.manual_seed(0)\n_a = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), "
        "nn.LazyLinear(10))\n_a(torch.zeros(2, 20))\ntorch.manual_seed(0)\n"
        "_b = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))\n"
        "print(torch.equal(_a[0].weight, _b[0].weight))").strip() == "True"


def test_pytorch_jit_script_refuses_placeholders(pytorch):
    """"`torch.jit.script` turns a module into a static program and refuses one whose
    parameters are still placeholders" """
    ename, evalue = pytorch.error("torch.jit.script(")
    assert ename == "RuntimeError" and "uninitialized parameters" in evalue
    assert "forward pass" in evalue


def test_pytorch_dtype_before_the_dry_run(pytorch):
    """"`.double()` or `.to(...)` change them before any data: the parameters are then created
    with them" """
    assert pytorch.output("doubled = nn.Sequential").strip() == "torch.float64 torch.float64"
    assert pytorch.value("str(nn.LazyLinear(3).double().weight.dtype)") == "torch.float64"


def test_pytorch_unreached_branch_stays_lazy(pytorch):
    """"In a model with two heads, of which the dry run uses one, the other keeps its
    placeholders, and whatever needs every parameter then fails, `Adagrad` for one" """
    assert pytorch.output("class TwoHeads(nn.Module)").strip() == \
        "{'head_a': 'Linear', 'head_b': 'LazyLinear'}"
    ename, evalue = pytorch.error("with d2l.expect_error(ValueError):\n"
                                  "    torch.optim.Adagrad(two.parameters())")
    assert ename == "ValueError" and "uninitialized parameter" in evalue


def test_pytorch_dry_run_through_every_branch(pytorch):
    """"The cure is a dry run that reaches every branch, here one call per head" """
    assert pytorch.output("two(X, use_b=True)").splitlines() == [
        "{'head_a': 'Linear', 'head_b': 'Linear'}", "Adagrad built"]


# --- TensorFlow / Keras 3 ------------------------------------------------------------------

def test_tensorflow_runs_through(tensorflow):
    no_unexpected_error(tensorflow)


def test_tensorflow_tf_keras_is_keras_3(tensorflow):
    """"Since TensorFlow 2.16, `tf.keras` is Keras 3" """
    assert tensorflow.value("tf.keras.layers.Dense is keras.layers.Dense")
    assert tensorflow.value("keras.__version__").startswith("3.")


def test_tensorflow_nothing_built_and_no_weights(tensorflow):
    """"Each layer answers with an empty list: the layer objects exist, their weights do
    not" """
    assert "network built: False | layers built: [False, False]" in \
        tensorflow.output('print("network built:"')
    assert tensorflow.output("[layer.get_weights() for layer in net.layers]").strip() == \
        "[[], []]"


def test_tensorflow_get_weights_no_longer_raises(tensorflow):
    """"With Keras 3 it quietly returns `[]`" """
    assert tensorflow.output("net.get_weights()").strip() == "[]"


def test_tensorflow_kernel_and_count_params_raise(tensorflow):
    """"What does raise is reaching for a weight that does not exist yet" """
    assert tensorflow.error("    net.layers[0].kernel")[0] == "AttributeError"
    ename, evalue = tensorflow.error("    net.count_params()")
    assert ename == "ValueError" and "isn't built" in evalue


def test_tensorflow_summary_before_build(tensorflow):
    """"output shapes are `?` and every layer reports `0 (unbuilt)` parameters" """
    text = tensorflow.output("net.summary()")
    assert text.count("0 (unbuilt)") == 2 and "?" in text


def test_tensorflow_kernel_layout_and_count(tensorflow):
    """"Keras stores a dense layer's weight (its `kernel`) as (inputs, outputs)" """
    assert tensorflow.value("[list(w.shape) for w in net.weights]") == \
        [[20, 256], [256], [256, 10], [10]]
    assert tensorflow.value("net.count_params()") == 7946
    assert tensorflow.value("gap") < 1e-6


def test_tensorflow_seven_features_change_only_the_first_kernel(tensorflow):
    """"Look at which kernel changes: only the first one" """
    assert tensorflow.output("other = keras.Sequential").strip() == "[(7, 256), (256, 10)]"


def test_tensorflow_cascade_figure(tensorflow):
    """"The same cascade as a picture, drawn by `d2l.draw_cascade`" """
    assert tensorflow.has_image("d2l.draw_cascade(rows")


def test_tensorflow_first_batch_shape_is_recorded(tensorflow):
    """"`input_shape` and the summary's output shapes record the whole shape of that first
    batch, (2, 20), not (None, 20)" """
    assert tensorflow.value("list(net.input_shape)") == [2, 20]
    assert "(2, 256)" in tensorflow.output('print("input_shape:", net.input_shape)')
    assert 2 not in tensorflow.value("[d for w in net.weights for d in w.shape]")


def test_tensorflow_symbolic_pass_first(tensorflow):
    """"first a `SymbolicTensor`, received while the last layer is not built yet, then an
    `EagerTensor`" """
    first, second = tensorflow.output("class Spy(keras.layers.Layer)").splitlines()
    assert first == "Spy receives SymbolicTensor of shape (2, 256); built: [True, True, False]"
    assert second == "Spy receives EagerTensor of shape (2, 256); built: [True, True, True]"


def test_tensorflow_apply_init(tensorflow):
    """"Keras' default (Glorot uniform) would have given this kernel a standard deviation of
    about 0.085" """
    assert abs(tensorflow.value("float(tf.math.reduce_std(kernel))") - 0.01) < 0.001
    assert tensorflow.value("[float(tf.reduce_max(tf.abs(layer.bias))) "
                            "for layer in model.net.layers]") == [0, 0]
    glorot = tensorflow.value("float(tf.math.reduce_std(keras.initializers.GlorotUniform()"
                              "((20, 256))))")
    assert 0.08 < glorot < 0.09


def test_tensorflow_build_without_data(tensorflow):
    """"`build` takes the input shape, with `None` for the batch size, and builds every
    layer from it" """
    assert tensorflow.value("[list(w.shape) for w in shaped.weights]") == \
        [[20, 256], [256], [256, 10], [10]]


def test_tensorflow_cnn_flattened_sizes(tensorflow):
    """"the first dense kernel is (400, 120)" """
    assert tensorflow.value("list(cnn.layers[5].kernel.shape)") == [400, 120]
    assert tensorflow.value("list(cnn32.layers[5].kernel.shape)") == [576, 120]


def test_tensorflow_compute_output_shape_builds_nothing(tensorflow):
    """"Look at the output shape, and at `built`: still `False`, no weight was made" """
    assert tensorflow.output("huge = huge_mlp()").strip() == "(None, 10) | built: False"


def test_tensorflow_stateless_scope_counts_without_values(tensorflow):
    """"building creates each weight with its shape and data type but defers its values" """
    assert tensorflow.value("huge_count") == 10_738_073_610
    assert tensorflow.value("all(w._value is None for w in huge.weights)")


def test_tensorflow_reading_a_stateless_weight_draws_and_keeps_nothing(tensorflow):
    """"every read draws a temporary full-size tensor from the weight's initializer (4 GB for
    one kernel here), and the weight itself stays empty" """
    assert tensorflow.output("calls = []").strip() == \
        "initializer calls: [(2, 3), (2, 3), (2, 3)] | kernel still empty: True"
    assert tensorflow.value("tuple(huge.layers[1].kernel.shape)") == [32768, 32768]
    assert 32768 * 32768 * 4 / 1e9 > 4


def test_tensorflow_stateless_model_cannot_be_trained(tensorflow):
    """"So a model built this way cannot be trained as it is: there is nothing to update, and
    `assign`, which every optimizer step uses, fails" """
    assert tensorflow.error("kernel.assign(keras.ops.zeros((2, 3)))")[0] == "AttributeError"
    out = tensorflow.run(
        "import numpy as _np\n_p = keras.Sequential([keras.layers.Dense(3)])\n"
        "with keras.StatelessScope(initialize_variables=False):\n    _p.build((None, 2))\n"
        "_p.compile(optimizer='sgd', loss='mse')\ntry:\n"
        "    _p.fit(_np.zeros((4, 2)), _np.zeros((4, 3)), verbose=0)\n    print('trained')\n"
        "except Exception as e:\n    print(type(e).__name__)")
    assert out.strip() == "AttributeError"  # fit stops: the weights hold no values


def test_tensorflow_keras_input_builds_at_declaration(tensorflow):
    """"a `keras.Input(shape=(20,))` in front, and every layer is built, weights and values, as
    soon as the model exists" """
    assert tensorflow.output("with_input = keras.Sequential").strip() == \
        "built: True | [(20, 256), (256,), (256, 10), (10,)]"
    assert tensorflow.value("all(w._value is not None for w in with_input.weights)")


def test_tensorflow_values_drawn_during_the_symbolic_pass(tensorflow):
    """"Keras does not wait that long: each layer draws its initial values when it is built,
    during the symbolic pass, before the layers after it have a shape" """
    assert tensorflow.output("def reporting(shape").splitlines() == [
        "initial values drawn for (20, 256); last layer built: False",
        "initial values drawn for (256, 10); last layer built: False"]


def test_tensorflow_learn_bullet_each_layer_draws_its_values(tensorflow):
    """"a symbolic pass through the whole model, in which each layer is built and draws its
    initial values, before the batch's numbers are computed" """
    first, second = tensorflow.output("class Spy(keras.layers.Layer)").splitlines()
    assert first.startswith("Spy receives SymbolicTensor") and "EagerTensor" in second


def test_tensorflow_later_input_shape_is_ignored(tensorflow):
    """"it changes nothing and raises nothing" """
    assert tensorflow.output("declared = keras.Sequential").splitlines()[0] == \
        "[(20, 256), (256, 10)]"


def test_tensorflow_built_means_fixed(tensorflow):
    """"refuses a batch of 7 with a `ValueError` that names the layer and both sizes" """
    ename, evalue = tensorflow.error("net(tf.random.uniform((2, 7)))")
    assert ename == "ValueError" and "expected axis -1" in evalue and "value 20" in evalue


def test_tensorflow_book_cell_weights_after_the_pass(tensorflow):
    """"Look for `[(20, 256), (256,), (256, 10), (10,)]`, the output the book prints" """
    assert tensorflow.output("[w.shape for w in net.get_weights()]").strip() == \
        "[(20, 256), (256,), (256, 10), (10,)]"


def test_tensorflow_deferred_values_are_filled_when_a_scope_is_left(tensorflow):
    """"Keras keeps every weight built this way on a global list, and fills them all as soon
    as a stateless scope that initializes (the default) is left" """
    assert tensorflow.output("pending = keras.Sequential").strip() == \
        "initializer calls: [(2, 3)] | kernel still empty: False"
    # Keras' own tracing of an unbuilt subclassed model leaves such a scope, too.
    out = tensorflow.run(
        "_pending = keras.Sequential([keras.layers.Dense(3)])\n"
        "with keras.StatelessScope(initialize_variables=False):\n"
        "    _pending.build((None, 2))\n"
        "_empty_before = _pending.layers[0].kernel._value is None\n"
        "TwoHeads()(X)\n"
        "print(_empty_before, _pending.layers[0].kernel._value is None)")
    assert out.splitlines()[0] == "True False"  # then Keras' warning about TwoHeads


def test_tensorflow_clear_session_forgets_the_pending_weights(tensorflow):
    """"we first make Keras forget the huge model's pending weights with
    `keras.utils.clear_session()`" """
    # TwoHeads' first call, further down, left one of those scopes: the huge model stayed empty.
    assert tensorflow.value("all(w._value is None for w in huge.weights)")
    assert "Keras warns" in tensorflow.output("class TwoHeads(keras.Model)")


def test_tensorflow_unreached_layer_stays_unbuilt(tensorflow):
    """"In a model with two heads, of which the first call uses one, the other head has no
    weights at all" """
    warned, built = tensorflow.output("class TwoHeads(keras.Model)").splitlines()
    assert warned.startswith("Keras warns: `build()` was called on layer 'two_heads'")
    assert "unbuilt state" in warned
    assert built == "{'head_a': True, 'head_b': False} | parameters: 84"


def test_tensorflow_optimizer_refuses_a_layer_built_later(tensorflow):
    """"`apply_gradients` refuses them, since an optimizer "can only be called for the
    variables it was originally built with"" """
    ename, evalue = tensorflow.error("optimizer.apply_gradients(")
    assert ename == "ValueError" and "Unknown variable" in evalue and "head_b/kernel" in evalue
    # "(`fit` builds it before its first step)": after a fit that used head_a only, the
    # optimizer refuses head_b's weights in the same words.
    out = tensorflow.run(
        "import numpy as _np\n_m = TwoHeads()\n_m.compile(optimizer='sgd', loss='mse')\n"
        "_m.fit(_np.zeros((4, 20)), _np.zeros((4, 4)), verbose=0)\n_m(X, use_b=True)\n"
        "try:\n    _m.optimizer.apply_gradients([(keras.ops.zeros_like(v), v)\n"
        "                                      for v in _m.trainable_variables])\n"
        "except ValueError as e:\n"
        "    print('originally built with' in str(e))", stream="stdout")
    assert out.strip() == "True"  # Keras' warning about TwoHeads goes to stderr


def test_tensorflow_build_method_builds_every_branch(tensorflow):
    """"a `build` method that builds every branch from the input shape" """
    assert tensorflow.output("class BuiltHeads(TwoHeads)").strip() == \
        "{'head_a': True, 'head_b': True} | parameters: 168"
    # "by a first call or by `build((None, 20))`": the first call, too.
    assert tensorflow.run("_b = BuiltHeads()\n_b(X)\nprint(_b.count_params())").strip() == \
        "168"


# --- MXNet ---------------------------------------------------------------------------------

def test_mxnet_runs_through(mxnet):
    no_unexpected_error(mxnet)


def test_mxnet_python_limit_comes_from_numpy(mxnet):
    """"MXNet's own wheel is built for any Python 3; the limit to Python 3.11 or older comes
    from numpy: 1.23.5, the last release it can use, has no wheels for newer Python" """
    tags = mxnet.value(
        "{d: [t.split(': ')[1] for t in __import__('importlib.metadata', fromlist=['_'])"
        ".distribution(d).read_text('WHEEL').splitlines() if t.startswith('Tag')] "
        "for d in ('mxnet', 'numpy')}")
    assert all(t.startswith("py3-none-") for t in tags["mxnet"]), tags
    assert all(t.startswith("cp311-cp311-") for t in tags["numpy"]), tags
    assert mxnet.value("onp.__version__") == "1.23.5"


BOOK_MXNET_PARAMS = """sequential0_ (
  Parameter dense0_weight (shape=({}), dtype=float32)
  Parameter dense0_bias (shape=(256,), dtype=float32)
  Parameter dense1_weight (shape=({}), dtype=float32)
  Parameter dense1_bias (shape=(10,), dtype=float32)
)"""


def test_mxnet_book_printouts(mxnet):
    """"The printouts before and after the pass are the ones the book shows, name for name" """
    before = BOOK_MXNET_PARAMS.format("256, -1", "10, -1")
    assert mxnet.output("net.collect_params()").strip() == before
    assert mxnet.output("net.initialize()\nnet.collect_params()").strip() == before
    after = BOOK_MXNET_PARAMS.format("256, 20", "10, 256")
    assert mxnet.output("Y = net(X)").strip().endswith(after)


def test_mxnet_unknown_size_is_minus_one(mxnet):
    """"Gluon writes `-1` for a size it does not know yet" """
    assert "Dense(-1 -> 256" in mxnet.output("net = nn.Sequential()\nnet.add(")


def test_mxnet_unknown_size_without_set_np_is_zero(mxnet):
    """"an unknown size is written `0` instead" """
    assert mxnet.output("npx.reset_np()").splitlines() == \
        ["without set_np: (256, 0)", "with set_np: (256, -1)"]


def test_mxnet_parameters_exist_with_open_sizes(mxnet):
    """"Look for `-1` in each weight's shape: the number of inputs is still open" """
    text = mxnet.output("net.collect_params()")
    assert "shape=(256, -1)" in text and "shape=(10, -1)" in text and "shape=(256,)" in text


def test_mxnet_two_errors_one_family(mxnet):
    """"one `except RuntimeError` catches both" """
    source = "with d2l.expect_error(RuntimeError):\n    net[0].weight.data()"
    shown = [o.text.split(":")[0] for c in mxnet.nb.cells if c.source == source
             for o in c.outputs if o.output_type == "stream"]
    assert shown == ["RuntimeError", "DeferredInitializationError"]
    assert mxnet.value("issubclass(mx.gluon.parameter.DeferredInitializationError, "
                       "RuntimeError)")


def test_mxnet_initialize_changes_nothing(mxnet):
    """"the shapes still contain `-1`" """
    assert "shape=(256, -1)" in mxnet.output("net.initialize()\nnet.collect_params()")


def test_mxnet_layout_and_count(mxnet):
    """"Gluon stores a dense layer's weight as (outputs, inputs), like PyTorch" """
    assert mxnet.value("[list(p.shape) for p in net.collect_params().values()]") == \
        [[256, 20], [256], [10, 256], [10]]
    assert "parameters in all: 7946" in mxnet.output("W, b = net[0].weight.data()")
    assert mxnet.value("gap") < 1e-6


def test_mxnet_cascade_figure(mxnet):
    """"The same cascade as a picture, drawn by `d2l.draw_cascade`" """
    assert mxnet.has_image("d2l.draw_cascade(rows")


def test_mxnet_seven_features_change_only_the_first_weight(mxnet):
    """"Look at which weight changes: only the first one" """
    assert mxnet.output("other = nn.Sequential()").strip() == "(256, 7) (10, 256)"


def test_mxnet_imperative_walks_block_by_block(mxnet):
    """"at that moment the second weight is still (10, -1)" """
    assert mxnet.output("imperative = nn.Sequential()").strip() == \
        "after block 0, second weight: (10, -1)"


def test_mxnet_hybridized_traces_first(mxnet):
    """"during the trace it gets a `_Symbol`, and the last layer's weight is still (10, -1)"
    """
    assert mxnet.output("class Spy(nn.HybridBlock)").splitlines() == \
        ["Spy receives _Symbol | last weight: (10, -1)", "after the call: (10, 256)"]


def test_mxnet_apply_init(mxnet):
    """"Gluon's default initializer (uniform on ±0.07) would have given a standard deviation
    of about 0.04" """
    assert abs(mxnet.value("float(w.std())") - 0.01) < 0.001
    assert mxnet.value("float(np.abs(b).max())") == 0
    assert mxnet.value("init.Uniform().scale") == 0.07
    assert 0.039 < 0.07 / 3 ** 0.5 < 0.041  # the standard deviation of uniform(-a, a)


def test_mxnet_bias_zero_from_its_own_initializer(mxnet):
    """"each `Dense` gives its bias its own initializer, `bias_initializer="zeros"` by
    default" """
    assert mxnet.output('print("bias:", model.net[0].bias.init').strip() == \
        "bias: zeros | weight: None"
    # Not a rule about names: a parameter called ..._bias without its own initializer gets
    # the one passed to initialize().
    assert mxnet.run(
        "_p = mx.gluon.Parameter('my_bias', shape=(100,))\n_p.initialize(init.Normal(0.01))\n"
        "print(float(np.abs(_p.data()).max()) > 0)").strip() == "True"


def test_mxnet_initializer_is_remembered(mxnet):
    """"the initializer given to `initialize()` is stored and used at the first forward
    pass" """
    assert abs(mxnet.value("float(deferred[0].weight.data().std())") - 0.01) < 0.001


def test_mxnet_cnn_flattened_sizes(mxnet):
    """"the first dense weight is (120, 400)" """
    assert mxnet.value("list(cnn[5].weight.shape)") == [120, 400]
    assert mxnet.value("list(cnn32[5].weight.shape)") == [120, 576]


def test_mxnet_infer_shape_without_values(mxnet):
    """"fills in every parameter's shape, while the values stay deferred" """
    assert mxnet.value("huge_count") == 10_738_073_610
    assert mxnet.output("huge[0].weight.data()").strip() == \
        "(32768, 32768) | reading the values: DeferredInitializationError"


def test_mxnet_unreached_block_stays_deferred(mxnet):
    """"A layer the first pass never reaches stays deferred" """
    assert mxnet.error("two.save_parameters")[0] == "DeferredInitializationError"
    assert mxnet.output("two(X, True)").strip() == "(4, 20) (4, 20)"


# --- JAX / Flax ----------------------------------------------------------------------------

def test_jax_runs_through(jax):
    no_unexpected_error(jax)


def test_jax_no_input_size_and_no_parameters(jax):
    """"Look for `False` everywhere" """
    assert jax.value("hasattr(net.layers[0], 'in_features')") is False
    assert jax.output("{name: hasattr(net.layers[0], name)").strip() == \
        "{'kernel': False, 'bias': False, 'params': False}"


def test_jax_unbound_module(jax):
    """"the unbound module cannot be called on data" """
    assert jax.error("net.variables")[0] == "ValueError"
    assert jax.error("net(jnp.ones((2, 20)))")[0] == "CallCompactUnboundModuleError"


def test_jax_bind_gives_a_callable_module(jax):
    """"`net.bind(params)`, which returns a bound copy that can be called" """
    assert jax.output("print(\"parameters in all:\"").splitlines() == \
        ["parameters in all: 7946", "apply: (2, 10) | bound: (2, 10)"]


def test_jax_nnx_needs_in_features(jax):
    """"`nnx.Linear` without `in_features` is a `TypeError`" """
    ename, evalue = jax.error("nnx.Linear(out_features=256")
    assert ename == "TypeError" and "in_features" in evalue
    assert jax.value("list(eager.kernel.shape)") == [20, 256]


def test_jax_init_returns_a_plain_dict(jax):
    """"a plain `dict`, with an entry per layer that has parameters" """
    assert jax.value("type(params) is dict")
    assert jax.value("d2l.param_shapes(params)") == {
        "params/layers_0/bias": [256], "params/layers_0/kernel": [20, 256],
        "params/layers_2/bias": [10], "params/layers_2/kernel": [256, 10]}
    assert jax.value("gap") < 1e-6


def test_jax_tree_flatten_with_keys_is_gone(jax):
    """"Current Flax returns a plain `dict`, which has no such method" """
    assert jax.error("tree_flatten_with_keys()")[0] == "AttributeError"


def test_jax_bridge(jax):
    """"now stored on the NNX module itself, which can then be called directly" """
    out = jax.output("bridge.lazy_init(lazy, X)")
    assert "'layers_0/kernel': (20, 256)" in out and "called directly: (2, 10)" in out
    assert "State({})" in jax.output("lazy = bridge.ToNNX(")


def test_jax_cascade_figure(jax):
    """"The same cascade as a picture, drawn by `d2l.draw_cascade`" """
    assert jax.has_image("d2l.draw_cascade(rows")


def test_jax_seven_features_change_only_the_first_kernel(jax):
    """"Look at which kernel changes: only the first one" """
    assert jax.output("shapes7 = ").strip() == "(7, 256) (256, 10)"


def test_jax_init_eager_then_traced(jax):
    """"an array in the first line, a tracer in the second" """
    first, second = jax.output("class Spy(nn.Module)").splitlines()
    assert first == "Spy receives ArrayImpl of shape (2, 256)"
    assert second.startswith("Spy receives ") and "Tracer of shape (2, 256)" in second


def test_jax_values_drawn_when_the_call_reaches_the_layer(jax):
    """"`init` does not wait that long either: a layer's initializer runs when the call reaches
    that layer, before the layers after it have seen any shape" """
    assert jax.output("def reporting(key, shape").splitlines() == [
        "initial values drawn for (20, 256)", "Spy receives ArrayImpl of shape (2, 256)",
        "initial values drawn for (256, 10)"]


def test_jax_apply_init(jax):
    """"Flax's default (LeCun normal) would have given this kernel a standard deviation of
    about 0.22" """
    assert abs(jax.value("float(kernel.std())") - 0.01) < 0.001
    assert jax.value("float(jnp.abs(bias).max())") == 0
    lecun = jax.value("float(nn.initializers.lecun_normal()(d2l.get_key(), (20, 256)).std())")
    assert 0.21 < lecun < 0.235


def test_jax_cnn_flattened_sizes(jax):
    """"the first dense kernel is (400, 120)" """
    assert jax.value("list(params28['params']['layers_7']['kernel'].shape)") == [400, 120]
    assert jax.value("list(params32['params']['layers_7']['kernel'].shape)") == [576, 120]


def test_jax_eval_shape(jax):
    """"`jax.eval_shape` runs a function on tracers and returns, instead of arrays,
    `ShapeDtypeStruct`s" """
    assert jax.value("huge_count") == 10_738_073_610
    assert jax.value("all(type(x).__name__ == 'ShapeDtypeStruct' "
                     "for x in jax.tree_util.tree_leaves(abstract))")


def test_jax_nnx_eval_shape(jax):
    """"a module whose parameters are shapes only" """
    assert jax.value("d2l.param_shapes(nnx.state(abstract_layer, nnx.Param))") == \
        {"bias": [100_000], "kernel": [100_000, 100_000]}
    assert jax.value("all(type(x).__name__ == 'ShapeDtypeStruct' for x in "
                     "jax.tree_util.tree_leaves(nnx.state(abstract_layer, nnx.Param)))")


def test_jax_lazy_init(jax):
    """"Linen's own `lazy_init` takes the example input as a `ShapeDtypeStruct`, so no example
    data has to exist, and returns real parameters" """
    assert jax.output("lazily = net.lazy_init").strip() == "lazy_init gives init's values: True"
    assert jax.value("sorted({type(x).__name__ for x in jax.tree_util.tree_leaves(lazily)})") \
        == ["ArrayImpl"]


def test_jax_jit_init(jax):
    """"Wrapped in `jax.jit`, it is traced, as the spy showed, and compiled into one program
    that creates every parameter" """
    assert jax.output("compiled = jax.jit(net.init)").strip() == \
        "jit(init) gives init's values: True"


def test_jax_out_shardings(jax):
    """"given `out_shardings`, one per parameter, each parameter comes to exist directly in its
    place across the devices" """
    assert jax.value("all(type(x.sharding).__name__ == 'NamedSharding' "
                     "for x in jax.tree_util.tree_leaves(sharded))")
    assert "NamedSharding(mesh=Mesh('model': 1" in jax.output("mesh = jax.make_mesh")


def test_jax_keys_come_from_names(jax):
    """"Append a layer at the end, and the existing layers keep exactly their values" """
    assert jax.value("[same_after_append, same_after_insert]") == [True, False]


def test_jax_feature_size_is_baked_in(jax):
    """"`apply` stops at the first `Dense` with an error that names both shapes" """
    ename, evalue = jax.error("net.apply(params, jnp.ones((2, 7)))")
    assert ename == "ScopeParamShapeError" and "(7, 256)" in evalue and "(20, 256)" in evalue


def test_jax_init_skips_an_unreached_branch(jax):
    """"In a model with two heads, of which the call uses one, the other head's parameters are
    simply missing from the dictionary, and nothing says so" """
    assert jax.value("d2l.param_shapes(two_params)") == {
        "params/head_a/bias": [4], "params/head_a/kernel": [20, 4]}
    assert jax.output("two_params = two.init(").count("head_b") == 0


def test_jax_apply_through_the_unreached_branch_raises(jax):
    """"`apply` with `use_b=True` looks for the second head's kernel, finds none, and stops
    with a `ScopeParamNotFoundError` that names the scope it searched" """
    ename, evalue = jax.error("two.apply(two_params, X, use_b=True)")
    assert ename == "ScopeParamNotFoundError"
    assert '"kernel"' in evalue and '"/head_b"' in evalue


def test_jax_init_through_every_branch(jax):
    """"`init`, like `apply`, takes `method=`: a function run on the module in place of
    `__call__`. One that calls both heads creates both" """
    shapes, applied = jax.output("def both_heads(module, x)").splitlines()
    assert shapes == ("{'params/head_a/bias': (4,), 'params/head_a/kernel': (20, 4), "
                      "'params/head_b/bias': (4,), 'params/head_b/kernel': (20, 4)}")
    assert applied == "apply with use_b=True: (2, 4)"


# --- the quotes are the notebooks' own words --------------------------------------------------

def normalized(text: str) -> str:
    return " ".join(text.split())


def quoted_claims() -> list[tuple[str, str, str]]:
    """(framework, test name, quote) for every test whose docstring quotes the prose."""
    found = []
    for name, func in sorted(globals().items()):
        fw = name.removeprefix("test_").split("_")[0]
        doc = (func.__doc__ or "") if callable(func) and name.startswith("test_") else ""
        if doc.startswith('"'):
            found.append((fw, name, normalized(doc).strip('" ')))
    return found


@pytest.mark.parametrize("fw, name, quote", quoted_claims(), ids=lambda v: str(v)[:40])
def test_every_quote_is_in_its_notebook(fw, name, quote):
    nb = nbformat.read(ROOT / "notebooks" / f"lazy-init-{fw}.ipynb", as_version=4)
    prose = normalized("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    assert quote in prose, f"{name} quotes words that {fw}'s notebook no longer says"


def test_every_section_with_claims_is_covered():
    """Each notebook's claims reach every new section: the quote check is not vacuous."""
    per_fw = {}
    for fw, _, _ in quoted_claims():
        per_fw[fw] = per_fw.get(fw, 0) + 1
    assert set(per_fw) == {"pytorch", "tensorflow", "mxnet", "jax"}
    assert min(per_fw.values()) >= 12, per_fw
