"""The four chapter notebooks: one skeleton, the right kernel, committed clean, correct URLs.

Framework-free (nbformat, json, tomllib): it reads the notebooks and executes nothing. Each
check is a function returning the problems it finds, so that, besides running it on the real
notebooks, the last tests feed it a deliberately broken copy and make sure it complains.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import sys
import tomllib
import types
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
TITLES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "mxnet": "MXNet", "jax": "JAX"}
SHIM_MODULE = {"pytorch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet", "jax": "jax"}
H2 = [
    "What you will learn",
    "Set-up",
    "A network with no input size",
    "Parameters before any data",
    "One forward pass fixes every shape",
    "The cascade, layer by layer",
    "How the framework walks the network",
    "Custom initialization with apply_init",
    "Why it matters: a CNN",
    "Shapes without memory (advanced)",  # the chapter proper ends before it
    "Pitfalls (advanced)",
    "Summary",
    "Exercises",
]
RAISES = "raises-exception"
COLAB_URL = re.compile(r"https?://colab\.research\.google\.com/github/([^\s)\"'<>\]]+)")
GIT_URL = re.compile(r"git\+(https?://[^\s\"'<>)\]]+)")


def notebook_path(fw: str) -> Path:
    return NOTEBOOKS / f"lazy-init-{fw}.ipynb"


def repository_url() -> str:
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    return url


def load(fw: str) -> dict:
    """The notebook as committed: plain JSON, not normalized by a reader."""
    return json.loads(notebook_path(fw).read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def headings(nb: dict) -> list[tuple[int, str, int]]:
    """(level, text, cell index) of every markdown heading outside fenced code."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        fenced = False
        for line in source(cell).splitlines():
            if re.match(r"\s*(```|~~~)", line):
                fenced = not fenced
            m = None if fenced else re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if m:
                found.append((len(m.group(1)), m.group(2), i))
    return found


def h2_list(nb: dict) -> list[str]:
    return [text for level, text, _ in headings(nb) if level == 2]


def setup_cell(nb: dict) -> str | None:
    """Source of the first code cell after the `## Set-up` heading."""
    start = next((i for level, text, i in headings(nb) if level == 2 and text == "Set-up"), None)
    if start is None:
        return None
    return next((source(c) for c in nb["cells"][start + 1:] if c["cell_type"] == "code"), None)


# --- checks: each returns a list of problems, empty when all is well -------------------------

def skeleton_problems(fw: str, nb: dict) -> list[str]:
    problems = []
    h1 = [(text, i) for level, text, i in headings(nb) if level == 1]
    want = f"Lazy Initialization in {TITLES[fw]}"
    if [text for text, _ in h1] != [want]:
        problems.append(f"want exactly one H1 {want!r}, found {[t for t, _ in h1]}")
    elif h1[0][1] != 0:
        problems.append("the H1 is not in the first cell")
    if h2_list(nb) != H2:
        problems.append(f"H2 headings differ from the skeleton: {h2_list(nb)}")
    return problems


def kernel_problems(path: Path, nb: dict, display_names: dict[str, str]) -> list[str]:
    m = re.fullmatch(r"lazy-init-(\w+)\.ipynb", path.name)
    if not m:
        return [f"{path.name} is not named lazy-init-<framework>.ipynb"]
    fw = m.group(1)
    spec = nb.get("metadata", {}).get("kernelspec", {})
    problems = []
    if spec.get("name") != f"d2l-{fw}":
        problems.append(f"kernelspec name {spec.get('name')!r}, want 'd2l-{fw}' from the name")
    if spec.get("language") != "python":
        problems.append(f"kernelspec language {spec.get('language')!r}")
    if fw in display_names and spec.get("display_name") != display_names[fw]:
        problems.append(f"display_name {spec.get('display_name')!r}, the registered kernel's "
                        f"is {display_names[fw]!r}")
    if nb.get("metadata", {}).get("language_info", {}).get("name") != "python":
        problems.append("language_info name is not python")
    return problems


def shim_import_problems(fw: str, nb: dict) -> list[str]:
    """Every import of d2l_shim must pick the notebook's own framework, and there is one."""
    problems, count = [], 0
    for cell in code_cells(nb):
        src = "\n".join(line for line in source(cell).splitlines()
                        if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(src)
        except SyntaxError as e:
            problems.append(f"a code cell does not parse: {e}")
            continue
        for node in ast.walk(tree):
            picked = []
            if isinstance(node, ast.ImportFrom) and node.module == "d2l_shim":
                picked = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("d2l_shim."):
                picked = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                picked = [a.name.split(".")[1] if "." in a.name else "(bare d2l_shim)"
                          for a in node.names if a.name.split(".")[0] == "d2l_shim"]
            for name in picked:
                count += 1
                if name != SHIM_MODULE[fw]:
                    problems.append(f"imports d2l_shim's {name!r} in the {fw} notebook")
    if count == 0:
        problems.append("no code cell imports d2l_shim")
    return problems


MAX_ASSERT_CELLS = 3  # claims are checked by tests/tools/test_notebook_claims.py instead


def assertion_problems(nb: dict) -> list[str]:
    """At most three teaching assertion cells, each printing what it checked."""
    cells = [source(c) for c in code_cells(nb)
             if any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(source(c))))]
    problems = [f"{len(cells)} code cells assert; at most {MAX_ASSERT_CELLS} may"] \
        if len(cells) > MAX_ASSERT_CELLS else []
    problems += [f"an assertion cell prints nothing: {src[:60]!r}" for src in cells
                 if "print(" not in src]
    return problems


def prose_problems(nb: dict) -> list[str]:
    """No test-suite boilerplate in the reader's path, and no pointer to the solutions."""
    text = "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    problems = []
    if re.search(r"fail loudly", text):
        problems.append("the prose still says checks 'fail loudly'")
    if re.search(r"exercises/source|in the `exercises/`", text):
        problems.append("the prose points to exercises/source, which holds the solutions")
    return problems


def raises_problems(nb: dict) -> list[str]:
    """No cell may rely on the raises-exception tag: VS Code and Colab ignore it, so a cell
    that raises stops a student's Run All. Errors are shown through d2l.expect_error."""
    problems = [f"code cell {source(c).splitlines()[0]!r} is tagged {RAISES}; show the error "
                "with d2l.expect_error instead" for c in code_cells(nb)
                if RAISES in c.get("metadata", {}).get("tags", [])]
    if not any("d2l.expect_error(" in source(c) for c in code_cells(nb)):
        problems.append("no code cell shows an error through d2l.expect_error")
    return problems


def clean_problems(nb: dict) -> list[str]:
    problems = []
    if nb.get("nbformat") != 4 or nb.get("nbformat_minor", 0) < 5:
        problems.append("not nbformat 4.5 or later (cells need ids)")
    stray = set(nb.get("metadata", {})) - {"kernelspec", "language_info"}
    if stray:
        problems.append(f"stray notebook metadata {sorted(stray)}")
    for i, cell in enumerate(nb["cells"]):
        if not cell.get("id"):
            problems.append(f"cell {i} has no id")
        if set(cell.get("metadata", {})) - {"tags"}:
            problems.append(f"cell {i} has stray metadata {sorted(cell['metadata'])}")
        if cell["cell_type"] == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} has outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} has an execution count")
    return problems


def intro_problems(nb: dict) -> list[str]:
    """A markdown cell (what to look for) comes right before every code cell."""
    cells = nb["cells"]
    return [f"code cell {i} has no markdown cell before it" for i, c in enumerate(cells)
            if c["cell_type"] == "code" and (i == 0 or cells[i - 1]["cell_type"] != "markdown")]


def url_problems(text: str, repo: str, notebook: str | None = None) -> list[str]:
    """Colab badges and pip git+ URLs in `text` must name `repo`.

    notebook: the path a Colab URL must open (the notebook's own); when None (README), any
    notebook that exists under notebooks/ will do.
    """
    problems = []
    repo_path = repo.removeprefix("https://github.com/")
    for target in COLAB_URL.findall(text):
        if notebook is not None:
            if target != f"{repo_path}/blob/main/{notebook}":
                problems.append(f"Colab URL opens {target!r}, want "
                                f"'{repo_path}/blob/main/{notebook}'")
        else:
            m = re.fullmatch(re.escape(repo_path) + r"/blob/main/(notebooks/[\w.-]+\.ipynb)",
                             target)
            if not m or not (ROOT / m.group(1)).is_file():
                problems.append(f"Colab URL opens {target!r}, not a notebook of {repo_path}")
    for url in GIT_URL.findall(text):
        base = re.sub(r"[@#].*$", "", url).rstrip("/").removesuffix(".git")
        if base != repo:
            problems.append(f"pip installs from {url!r}, want {repo!r}")
    return problems


def notebook_url_problems(fw: str, nb: dict, repo: str) -> list[str]:
    text = "\n".join(source(c) for c in nb["cells"])
    problems = url_problems(text, repo, f"notebooks/{notebook_path(fw).name}")
    if not COLAB_URL.search(source(nb["cells"][0])):
        problems.append("the first cell carries no Open-in-Colab badge")
    if fw != "mxnet" and not GIT_URL.search(setup_cell(nb) or ""):
        problems.append("the set-up cell does not install d2l_shim from the repository")
    return problems


def setup_problems(fw: str, nb: dict) -> list[str]:
    """The set-up cell acts only in Colab; MXNet's stops there with a message instead."""
    src = setup_cell(nb)
    if src is None:
        return ["no code cell under '## Set-up'"]
    problems = []
    if "google.colab" not in src:
        problems.append("the set-up cell does not check for Colab")
    if re.search(r"^\s*[!%]", src, flags=re.M):
        problems.append("the set-up cell uses shell or magic lines; they would run everywhere")
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        return [*problems, f"the set-up cell does not parse: {e}"]
    for node in tree.body:
        guarded = isinstance(node, ast.If) and "google.colab" in ast.unparse(node.test)
        harmless = isinstance(node, (ast.Import, ast.ImportFrom))
        code = ast.unparse(node)
        if not (guarded or harmless) and re.search(r"pip|subprocess|system\(|raise", code):
            problems.append(f"runs outside the Colab check: {ast.unparse(node)[:80]!r}")
    if fw == "mxnet":
        if "make lab" not in src:
            problems.append("the MXNet set-up cell does not point to `make lab`")
        if not re.search(r"\braise\b", src) or re.search(r"pip\s+install|[\"']pip[\"']", src):
            problems.append("the MXNet set-up cell must raise in Colab, not install")
    return problems


def registered_display_names() -> dict[str, str]:
    """DISPLAY_NAMES as ci/setup_envs.py registers the kernels; {} if it cannot be read."""
    setup = ROOT / "ci" / "setup_envs.py"
    if not setup.is_file():
        return {}
    for node in ast.parse(setup.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DISPLAY_NAMES"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


# --- the real notebooks ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def nbs() -> dict[str, dict]:
    missing = [fw for fw in FRAMEWORKS if not notebook_path(fw).is_file()]
    assert not missing, f"missing notebooks: {missing}"
    return {fw: load(fw) for fw in FRAMEWORKS}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_is_a_valid_notebook(fw):
    nbformat.validate(nbformat.reads(notebook_path(fw).read_text(encoding="utf-8"),
                                     as_version=nbformat.NO_CONVERT))


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_heading_skeleton(nbs, fw):
    assert skeleton_problems(fw, nbs[fw]) == []


def test_h2_headings_identical_in_all_four(nbs):
    lists = {fw: h2_list(nb) for fw, nb in nbs.items()}
    assert all(h == lists["pytorch"] for h in lists.values()), lists


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_kernelspec_matches_file_name(nbs, fw):
    assert kernel_problems(notebook_path(fw), nbs[fw], registered_display_names()) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_d2l_shim_imports_own_framework(nbs, fw):
    assert shim_import_problems(fw, nbs[fw]) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_no_raises_exception_tag_and_errors_shown_by_the_helper(nbs, fw):
    assert raises_problems(nbs[fw]) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_at_most_three_assertion_cells_each_printing(nbs, fw):
    assert assertion_problems(nbs[fw]) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_prose_has_no_boilerplate_and_no_pointer_to_solutions(nbs, fw):
    assert prose_problems(nbs[fw]) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_committed_clean(nbs, fw):
    assert clean_problems(nbs[fw]) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_markdown_before_every_code_cell(nbs, fw):
    assert intro_problems(nbs[fw]) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_urls_match_repository(nbs, fw):
    assert notebook_url_problems(fw, nbs[fw], repository_url()) == []


def test_readme_urls_match_repository():
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("no README.md yet")
    assert url_problems(readme.read_text(encoding="utf-8"), repository_url()) == []


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_setup_cell_acts_only_in_colab(nbs, fw):
    assert setup_problems(fw, nbs[fw]) == []


def run_setup_cell(src: str, monkeypatch, in_colab: bool, installed=()) -> list[list[str]]:
    """Execute a set-up cell here, as Colab (a stand-in `google.colab` module) or not.

    Nothing is installed: subprocess.run records the command, and find_spec reports only
    the modules in `installed` as present, so the test does not depend on this env.
    """
    calls = []
    monkeypatch.setattr("subprocess.run", lambda cmd, **kw: calls.append(list(cmd)))
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a: object() if name in installed else None)
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(src, "<set-up cell>", "exec"), {})
    return calls


COLAB_SHIPS = {"pytorch": ["torch"], "tensorflow": ["tensorflow"], "jax": ["jax", "flax"]}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_setup_cell_does_nothing_outside_colab(nbs, fw, monkeypatch):
    assert run_setup_cell(setup_cell(nbs[fw]), monkeypatch, in_colab=False) == []


@pytest.mark.parametrize("fw", list(COLAB_SHIPS))
def test_setup_cell_in_colab_installs_only_what_is_missing(nbs, fw, monkeypatch):
    shim = f"d2l-shim @ git+{repository_url()}"
    # Colab ships the framework: only the shim is installed, from the repository.
    [pip] = run_setup_cell(setup_cell(nbs[fw]), monkeypatch, True, installed=COLAB_SHIPS[fw])
    assert pip[1:] == ["-m", "pip", "install", "--quiet", shim], pip
    # A runtime without the framework gets it too.
    [pip] = run_setup_cell(setup_cell(nbs[fw]), monkeypatch, True, installed=())
    assert pip[5:] == [shim, *COLAB_SHIPS[fw]], pip
    # Everything present: nothing to install.
    assert run_setup_cell(setup_cell(nbs[fw]), monkeypatch, True,
                          installed=["d2l_shim", *COLAB_SHIPS[fw]]) == []


def test_mxnet_setup_cell_in_colab_stops_with_plain_words(nbs, monkeypatch):
    with pytest.raises(RuntimeError, match="cannot run in Colab") as raised:
        run_setup_cell(setup_cell(nbs["mxnet"]), monkeypatch, in_colab=True)
    assert "make lab" in str(raised.value) and "numpy<1.24" in str(raised.value)


# --- the checks can fail: broken copies must be caught ----------------------------------------

def _md(nb: dict, old: str, new: str) -> dict:
    nb = copy.deepcopy(nb)
    hits = 0
    for cell in nb["cells"]:
        if old in source(cell):
            cell["source"] = source(cell).replace(old, new)
            hits += 1
    assert hits, f"{old!r} not found: the mutation tests no longer match the notebook"
    return nb


def _setup(nb: dict, new_src: str) -> dict:
    return _md(nb, setup_cell(nb), new_src)


def _tagged(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    code_cells(nb)[-1]["metadata"]["tags"] = [RAISES]
    return nb


def _without_helper(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    for cell in code_cells(nb):
        cell["source"] = source(cell).replace("d2l.expect_error(", "print(")
    return nb


def _executed(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    cell = code_cells(nb)[-1]
    cell["execution_count"] = 7
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    return nb


def _with(nb: dict, edit: Callable[[dict], None]) -> dict:
    nb = copy.deepcopy(nb)
    edit(nb)
    return nb


REPO_PATH_RE = re.compile(r"github\.com/([\w.-]+/[\w.-]+)")

BROKEN: dict[str, tuple[str, Callable[[dict], dict], Callable[[str, dict], list[str]]]] = {
    "renamed H2": ("pytorch", lambda nb: _md(nb, "## Summary", "## Recap"), skeleton_problems),
    "swapped H2": ("jax", lambda nb: _md(_md(_md(nb, "## Summary", "## Tmp"), "## Exercises",
                                             "## Summary"), "## Tmp", "## Exercises"),
                   skeleton_problems),
    "second H1": ("mxnet", lambda nb: _md(nb, "## Summary", "# Summary"), skeleton_problems),
    "wrong title": ("tensorflow", lambda nb: _md(nb, "# Lazy Initialization in TensorFlow",
                                                 "# Lazy Initialization in Keras"),
                    skeleton_problems),
    "other kernel": ("pytorch", lambda nb: _with(
        nb, lambda n: n["metadata"]["kernelspec"].update(name="d2l-jax")),
        lambda fw, nb: kernel_problems(notebook_path(fw), nb, registered_display_names())),
    "other display name": ("jax", lambda nb: _with(
        nb, lambda n: n["metadata"]["kernelspec"].update(display_name="Python 3")),
        lambda fw, nb: kernel_problems(notebook_path(fw), nb,
                                       {"jax": "JAX / Flax (d2l-lazy-init)"})),
    "other framework's shim": ("tensorflow", lambda nb: _md(
        nb, "from d2l_shim import tensorflow as d2l", "from d2l_shim import torch as d2l"),
        shim_import_problems),
    "a raises-exception tag": ("mxnet", _tagged, lambda fw, nb: raises_problems(nb)),
    "errors not shown by the helper": ("jax", _without_helper,
                                       lambda fw, nb: raises_problems(nb)),
    "a fourth assertion cell": ("pytorch", lambda nb: _with(
        nb, lambda n: n["cells"].extend(copy.deepcopy(
            [c for c in code_cells(n) if "assert" in source(c)]) * 2)),
        lambda fw, nb: assertion_problems(nb)),
    "boilerplate back": ("jax", lambda nb: _md(
        nb, "## Pitfalls", "## Pitfalls\n\nThe checks below fail loudly."),
        lambda fw, nb: prose_problems(nb)),
    "pointer to the solutions": ("tensorflow", lambda nb: _md(
        nb, "`build/release/`", "`exercises/source/`"), lambda fw, nb: prose_problems(nb)),
    "outputs left in": ("jax", _executed, lambda fw, nb: clean_problems(nb)),
    "stray cell metadata": ("pytorch", lambda nb: _with(
        nb, lambda n: n["cells"][1]["metadata"].update(collapsed=True)),
        lambda fw, nb: clean_problems(nb)),
    "code without an intro": ("pytorch", lambda nb: _with(
        nb, lambda n: n["cells"].insert(4, copy.deepcopy(code_cells(n)[0]))),
        lambda fw, nb: intro_problems(nb)),
    "badge to another notebook": ("tensorflow", lambda nb: _md(
        nb, "notebooks/lazy-init-tensorflow.ipynb", "notebooks/lazy-init-pytorch.ipynb"),
        lambda fw, nb: notebook_url_problems(fw, nb, repository_url())),
    "badge to another repository": ("jax", lambda nb: _md(
        nb, "colab.research.google.com/github/" + REPO_PATH_RE.search(repository_url())[1],
        "colab.research.google.com/github/someone/fork"),
        lambda fw, nb: notebook_url_problems(fw, nb, repository_url())),
    "install from another repository": ("pytorch", lambda nb: _md(
        nb, "git+" + repository_url(), "git+https://github.com/someone/fork"),
        lambda fw, nb: notebook_url_problems(fw, nb, repository_url())),
    "MXNet set-up without make lab": ("mxnet", lambda nb: _md(nb, "`make lab`", "`make`"),
                                      setup_problems),
    "MXNet set-up installs": ("mxnet", lambda nb: _setup(
        nb, 'import sys\nif "google.colab" in sys.modules:\n    print("pip install mxnet")'),
        setup_problems),
    "pip outside the Colab check": ("jax", lambda nb: _setup(
        nb, 'import subprocess\nimport sys\nsubprocess.run(["pip", "install", "flax"])\n'
            'if "google.colab" in sys.modules:\n    pass'),
        setup_problems),
    "magic pip": ("pytorch", lambda nb: _setup(
        nb, '%pip install torch\nimport sys\nif "google.colab" in sys.modules:\n    pass'),
        setup_problems),
}


@pytest.mark.parametrize("name", BROKEN)
def test_checks_catch_a_broken_copy(nbs, name):
    fw, break_it, check = BROKEN[name]
    assert check(fw, nbs[fw]) == [], "the check must pass on the real notebook"
    assert check(fw, break_it(nbs[fw])), f"the check missed: {name}"


def test_h2_comparison_catches_one_differing_notebook(nbs):
    lists = {fw: h2_list(nb) for fw, nb in nbs.items()}
    lists["mxnet"] = h2_list(_md(nbs["mxnet"], "## Set-up", "## Setup"))
    assert not all(h == lists["pytorch"] for h in lists.values())


@pytest.mark.parametrize("readme, ok", [
    ("[![Colab](https://colab.research.google.com/github/{repo}/blob/main/"
     "notebooks/lazy-init-jax.ipynb)]", True),
    ("pip install \"d2l-shim @ git+https://github.com/{repo}\"", True),
    ("[x](https://colab.research.google.com/github/someone/fork/blob/main/"
     "notebooks/lazy-init-jax.ipynb)", False),
    ("[x](https://colab.research.google.com/github/{repo}/blob/main/"
     "notebooks/no-such-notebook.ipynb)", False),
    ("pip install git+https://github.com/someone/fork@main", False),
])
def test_readme_url_check_can_fail(readme, ok):
    repo = repository_url()
    problems = url_problems(readme.format(repo=repo.removeprefix("https://github.com/")), repo)
    assert (problems == []) is ok, problems
