"""Repository checks that `make test` runs: clean notebooks, valid CI workflow, pre-commit, lint.

(a) Notebooks are committed clean: nbstripout's own check mode (`--verify`), with the
    options `make clean-notebooks` uses, finds nothing to strip in any notebook git tracks
    or would add (untracked, not ignored), and the check provably catches a dirty one.
(b) .github/workflows/ validates against check-jsonschema's vendored GitHub-workflows schema
    (offline), has one job per framework, caches pip and runs what .ci/run runs.
(c) .pre-commit-config.yaml runs the same ruff and nbstripout as `make lint` /
    `make clean-notebooks`, from the tools env (no hook repositories fetched), and its hooks
    really fail on a lint error and a dirty notebook (run in a scratch git repository).
(d) `ruff check d2l_shim grader ci book tests notebooks` passes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venvs" / "tools" / "bin"
NBSTRIPOUT = TOOLS / "nbstripout"
RUFF = TOOLS / "ruff"
CHECK_JSONSCHEMA = TOOLS / "check-jsonschema"
WORKFLOWS = ROOT / ".github" / "workflows"
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"
LINT_PATHS = ["d2l_shim", "grader", "ci", "book", "tests", "notebooks"]  # what `make lint` checks
# One env per framework: requirements/<framework>.txt, besides the tools env.
FRAMEWORKS = sorted(p.stem for p in (ROOT / "requirements").glob("*.txt")
                    if p.stem not in ("tools", "colab"))  # colab: `make test-colab`, not an env


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300,
                          **kw)


# --- (a) clean notebooks --------------------------------------------------------------------

def pre_commit_nbstripout() -> list[str]:
    """The nbstripout command pre-commit runs: the one definition of "clean" (a contributor's
    commit strips with it; `make clean-notebooks` must agree, see the test below)."""
    hook = local_hooks()["nbstripout"]
    return shlex.split(hook["entry"]) + list(hook.get("args", []))


def nbstripout_args() -> list[str]:
    return pre_commit_nbstripout()[1:]


def make_clean_notebooks_command() -> list[str]:
    """The nbstripout command `make clean-notebooks` runs, without its file list."""
    proc = run(["make", "-n", "--no-print-directory", "clean-notebooks"], cwd=ROOT)
    assert proc.returncode == 0, f"make -n clean-notebooks failed:\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if "nbstripout" in ln]
    assert lines, f"`make clean-notebooks` does not run nbstripout:\n{proc.stdout}"
    words = shlex.split(lines[0])
    start = next(i for i, w in enumerate(words) if w.endswith("nbstripout"))
    cmd = []
    for w in words[start:]:
        if w.startswith(("$(", "`")):  # the file list: $(git ls-files '*.ipynb')
            break
        cmd.append(w)
    return cmd


def repo_notebooks() -> list[Path]:
    """Notebooks git tracks, plus new ones it would add (untracked and not ignored), but not
    the sample class's submissions: test data, broken on purpose (as in `make clean-notebooks`
    and the pre-commit hook)."""
    proc = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z",
                "--", "*.ipynb", ":!tests/grading/*_class/*"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return sorted({ROOT / p for p in proc.stdout.split("\0") if p and (ROOT / p).is_file()})


def dirt(path: Path, args: list[str]) -> str | None:
    """None when nbstripout's check mode finds nothing to strip, else what it would strip."""
    proc = run([NBSTRIPOUT, *args, "--verify", path])
    if proc.returncode == 0 and "No valid notebook" not in proc.stderr:
        return None
    try:
        before = json.loads(path.read_text())
        stripped = run([NBSTRIPOUT, *args, "--textconv", path])
        after = json.loads(stripped.stdout)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"not a valid notebook ({e}; {proc.stderr.strip()})"
    found = []
    cells = before.get("cells", [])
    n = sum(bool(c.get("outputs")) for c in cells)
    if n:
        found.append(f"outputs in {n} cell(s)")
    n = sum(c.get("execution_count") is not None for c in cells)
    if n:
        found.append(f"execution counts in {n} cell(s)")
    extra = sorted(set(before.get("metadata", {})) - set(after.get("metadata", {})))
    if extra:
        found.append(f"notebook metadata {extra}")
    cell_keys = sorted({k for c, s in zip(cells, after.get("cells", []), strict=False)
                        for k in set(c.get("metadata", {})) - set(s.get("metadata", {}))})
    if cell_keys:
        found.append(f"cell metadata {cell_keys}")
    if any(c.get("id") != s.get("id") for c, s in zip(cells, after.get("cells", []),
                                                       strict=False)):
        found.append("random cell ids (nbstripout numbers them)")
    if len(cells) != len(after.get("cells", [])):
        found.append("cells nbstripout drops")
    return ", ".join(found) or "formatting nbstripout would change"


def dirty_message(path: Path, what: str) -> str:
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return (f"{rel} is not committed clean: {what}. Fix: `make clean-notebooks` (nbstripout), "
            f"then commit the result.")


def test_notebooks_are_clean():
    notebooks = repo_notebooks()
    if not notebooks:
        pytest.skip("no notebooks in the repository yet")
    args = nbstripout_args()
    every = run([NBSTRIPOUT, *args, "--verify", *notebooks])  # one process for all of them
    clean = every.returncode == 0 and "No valid notebook" not in every.stderr
    # each one on its own only to say what is wrong with which
    problems = [] if clean else [dirty_message(nb, what) for nb in notebooks
                                 if (what := dirt(nb, args))]
    assert clean or problems, f"nbstripout --verify failed, and on no notebook alone: {every}"
    names = [str(nb.relative_to(ROOT)) for nb in notebooks]
    print(f"checked {len(notebooks)} notebook(s): {names}")
    assert not problems, "\n".join(problems)


def sample_notebook(tmp_path: Path) -> Path:
    """A clean notebook: a stripped copy of a repository notebook, or a small stand-in."""
    dst = tmp_path / "sample.ipynb"
    existing = repo_notebooks()
    if existing:
        shutil.copyfile(existing[0], dst)
    else:
        nbformat.write(new_notebook(
            cells=[new_markdown_cell("# Sample"), new_code_cell("x = 6 * 7\nx")],
            metadata={"kernelspec": {"name": "d2l-pytorch", "display_name": "PyTorch",
                                     "language": "python"}}), dst)
    proc = run([NBSTRIPOUT, *nbstripout_args(), dst])
    assert proc.returncode == 0, f"nbstripout failed:\n{proc.stdout}{proc.stderr}"
    return dst


def make_dirty(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.execution_count = 1
    cell.outputs = [new_output("execute_result", {"text/plain": "42"}, execution_count=1)]
    cell.metadata["scrolled"] = True
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, path)


def test_clean_check_catches_a_dirty_notebook(tmp_path):
    nb = sample_notebook(tmp_path)
    args = nbstripout_args()
    assert dirt(nb, args) is None, "a freshly stripped notebook should pass the check"
    make_dirty(nb)
    what = dirt(nb, args)
    assert what is not None, "the check missed a notebook with an output and a count"
    message = dirty_message(nb, what)
    assert "sample.ipynb" in message and "make clean-notebooks" in message
    assert "outputs in 1 cell(s)" in what and "execution counts in 1 cell(s)" in what, what
    assert "widgets" in what and "scrolled" in what, what


def test_make_clean_notebooks_fixes_what_the_check_finds(tmp_path):
    """The fix the failure message names works, and strips exactly as pre-commit does."""
    cmd = make_clean_notebooks_command()
    nb = sample_notebook(tmp_path)
    make_dirty(nb)
    proc = run([ROOT / cmd[0] if "/" in cmd[0] else cmd[0], *cmd[1:], nb], cwd=ROOT)
    assert proc.returncode == 0, \
        f"`make clean-notebooks` runs `{shlex.join(cmd)} <notebooks>`, which fails:\n" \
        f"{proc.stdout}{proc.stderr}"
    assert dirt(nb, nbstripout_args()) is None, \
        f"`{shlex.join(cmd)}` leaves a notebook the check still finds dirty"
    assert cmd[1:] == nbstripout_args(), \
        f"make clean-notebooks strips with {cmd[1:]}, pre-commit with {nbstripout_args()}"


# --- (b) GitHub workflow --------------------------------------------------------------------

def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def test_workflows_validate_against_the_vendored_schema():
    files = workflow_files()
    assert files, "no workflow in .github/workflows/"
    proc = run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_validator_rejects_a_broken_workflow(tmp_path):
    """The offline schema check is not a no-op: a misspelt key fails it."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOWS.joinpath("ci.yml").read_text()
                      .replace("runs-on:", "run-on:", 1))
    proc = run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", broken])
    assert proc.returncode != 0, proc.stdout


def one_word_expressions(line: str) -> str:
    """`${{ matrix.framework }}` -> `${{matrix.framework}}`, so shlex keeps it one word."""
    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: "${{" + m[1].replace(" ", "") + "}}",
                  line)


def ci_run_make_commands() -> list[list[str]]:
    """The `make ...` commands .ci/run runs, as word lists without variable assignments."""
    cmds = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "make":
            cmds.append([w for w in words[1:] if "=" not in w])
    assert cmds, ".ci/run runs no make target"
    return cmds


def test_workflow_has_a_job_per_framework_with_pip_cache_running_ci_run_targets():
    wf = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert "download.pytorch.org/whl/cpu" in str(wf.get("env", {}).get("PIP_EXTRA_INDEX_URL")), \
        "without the CPU index, pip on GitHub's runners pulls torch's CUDA wheels"
    covered: list[str] = []
    want = ci_run_make_commands()
    for name, job in wf["jobs"].items():
        if "make test-colab" in json.dumps(job):  # Colab's stack: not what .ci/run runs
            continue
        strategy = job.get("strategy", {})
        frameworks = strategy.get("matrix", {}).get("framework")
        if frameworks:
            assert strategy.get("fail-fast") is False, \
                f"job {name}: a matrix needs fail-fast: false, or one failure cancels the rest"
            covered += frameworks
            fw_expr = "${{matrix.framework}}"
        else:
            m = re.search(r"FRAMEWORKS=(\w+)", json.dumps(job))
            assert m, f"job {name} tests no particular framework"
            covered.append(m.group(1))
            fw_expr = m.group(1)
        steps = job["steps"]
        setup = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
        assert setup, f"job {name} does not use actions/setup-python"
        with_ = setup[0].get("with", {})
        assert str(with_.get("python-version")) == "3.11", with_
        assert with_.get("cache") == "pip", f"job {name}: setup-python without cache: pip"
        assert "requirements/" in str(with_.get("cache-dependency-path", "")), with_
        makes = [shlex.split(one_word_expressions(line))
                 for s in steps for line in str(s.get("run", "")).splitlines()
                 if line.strip().startswith("make ")]
        got = [[w for w in m[1:] if "=" not in w] for m in makes]
        assert got == want, f"job {name} runs make {got}, .ci/run runs make {want}"
        assert all(f"FRAMEWORKS={fw_expr}" in m for m in makes), \
            f"job {name}: every make call should be limited to FRAMEWORKS={fw_expr}: {makes}"
    assert sorted(covered) == FRAMEWORKS, f"jobs cover {covered}, frameworks are {FRAMEWORKS}"


# --- (c) pre-commit -------------------------------------------------------------------------

def local_hooks() -> dict[str, dict]:
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    assert all(r["repo"] == "local" for r in config["repos"]), \
        "hooks should be `repo: local`, calling the tools env's pinned tools (no fetch)"
    return {h["id"]: h for r in config["repos"] for h in r["hooks"]}


def test_pre_commit_config_is_valid():
    proc = run([TOOLS / "pre-commit", "validate-config", PRE_COMMIT_CONFIG], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pre_commit_runs_the_same_ruff_and_nbstripout_as_make():
    hooks = local_hooks()
    for hook in hooks.values():
        assert hook["language"] in ("system", "unsupported"), hook
        assert hook["entry"].startswith(".venvs/tools/bin/"), \
            f"hook {hook['id']} should call the tools env's pinned tool: {hook['entry']}"
    ruff = shlex.split(hooks["ruff"]["entry"])
    assert ruff[:2] == [".venvs/tools/bin/ruff", "check"], ruff
    pattern = re.compile(hooks["ruff"]["files"])
    for path in LINT_PATHS:
        assert pattern.search(f"{path}/x.py"), f"ruff hook skips {path}/ (make lint checks it)"
    assert "jupyter" in hooks["ruff"].get("types_or", []), "ruff hook skips notebooks"
    assert pre_commit_nbstripout()[0] == ".venvs/tools/bin/nbstripout", pre_commit_nbstripout()
    assert "jupyter" in hooks["nbstripout"].get("types", []) + hooks["nbstripout"].get(
        "types_or", []), "nbstripout hook skips notebooks"
    # Same options as `make clean-notebooks`: test_make_clean_notebooks_fixes_what_the_check_finds


def test_pre_commit_hooks_fail_on_lint_error_and_dirty_notebook(tmp_path):
    """Run the real hooks (offline) in a scratch repository holding a lint error and a
    notebook with outputs: both hooks fail, and nbstripout leaves the notebook clean."""
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    shutil.copyfile(ROOT / "pyproject.toml", repo / "pyproject.toml")
    shutil.copyfile(PRE_COMMIT_CONFIG, repo / ".pre-commit-config.yaml")
    (repo / ".gitignore").write_text(".venvs\n")
    (repo / ".venvs").symlink_to(ROOT / ".venvs")
    (repo / "ci" / "bad.py").write_text("import os\n")  # F401: unused import
    nb = sample_notebook(tmp_path)
    make_dirty(nb)
    shutil.copyfile(nb, repo / "notebooks" / "dirty.ipynb")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        proc = run(cmd, cwd=repo, env=env)
        assert proc.returncode == 0, proc.stderr
    proc = run([TOOLS / "pre-commit", "run", "--all-files", "--color=never"], cwd=repo, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"^ruff check.*Failed$", out, re.MULTILINE), out
    assert "F401" in out, out
    assert re.search(r"^nbstripout.*Failed$", out, re.MULTILINE), out
    assert "files were modified by this hook" in out, out
    assert dirt(repo / "notebooks" / "dirty.ipynb", nbstripout_args()) is None


# --- (d) lint -------------------------------------------------------------------------------

def test_ruff_passes():
    paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    proc = run([RUFF, "check", "--no-cache", *paths], cwd=ROOT)
    assert proc.returncode == 0, f"ruff check {' '.join(paths)}:\n{proc.stdout}{proc.stderr}"
