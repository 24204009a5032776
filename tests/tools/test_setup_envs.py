"""ci/setup_envs.py: incremental, clear about what to do when it cannot succeed, says what it
will do before it starts (and only that, with --dry-run), and leaves another checkout's
registrations in shared envs alone."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ci" / "setup_envs.py"

spec = importlib.util.spec_from_file_location("setup_envs", SCRIPT)
setup_envs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_envs)


def fake_python(tmp_path: Path, major: int, minor: int) -> str:
    """A stand-in interpreter that only reports its version, as setup_envs asks it to."""
    exe = tmp_path / f"python{major}.{minor}"
    exe.write_text(f"#!/bin/sh\necho {major} {minor}\n")
    exe.chmod(0o755)
    return str(exe)


def test_a_second_run_with_unchanged_requirements_does_nothing_and_says_so(frameworks):
    # `make test` has just run set-up, so every env it built is current. If one is not (its
    # requirements changed since), this run would rebuild it, and its timeout would leave it
    # half deleted: say so instead.
    stale = [env for env in ("tools", *frameworks)
             if not (ROOT / ".venvs" / env / ".d2l-stamp").is_file()
             or (ROOT / ".venvs" / env / ".d2l-stamp").read_text()
             != setup_envs.fingerprint(env, sys.executable)]
    assert not stale, f"run `make setup` first: {' '.join(stale)} out of date"
    proc = subprocess.run([sys.executable, str(SCRIPT), *frameworks], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "all envs up to date, nothing to do" in proc.stdout
    assert "creating venv" not in proc.stdout
    for env in ("tools", *frameworks):
        assert f"] plan: up to date (requirements/{env}.txt and Python" in proc.stdout


def test_a_changed_requirements_file_changes_only_that_envs_fingerprint(tmp_path, monkeypatch):
    python = sys.executable
    before = {env: setup_envs.fingerprint(env, python) for env in ("jax", "mxnet")}
    reqs = tmp_path / "requirements"
    reqs.mkdir()
    for env in ("jax", "mxnet"):
        (reqs / f"{env}.txt").write_text((ROOT / "requirements" / f"{env}.txt").read_text())
    (reqs / "jax.txt").write_text((reqs / "jax.txt").read_text() + "einops==0.8.1\n")
    monkeypatch.setattr(setup_envs, "REQS", reqs)
    after = {env: setup_envs.fingerprint(env, python) for env in ("jax", "mxnet")}
    assert after["jax"] != before["jax"] and after["mxnet"] == before["mxnet"]


def test_mxnet_on_a_too_new_python_says_what_to_do_before_touching_anything(tmp_path):
    mxnet_env = ROOT / ".venvs" / "mxnet"
    env_before = sorted(mxnet_env.iterdir()) if mxnet_env.exists() else []
    with pytest.raises(setup_envs.SetupError) as e:
        setup_envs.build("mxnet", fake_python(tmp_path, 3, 12))
    message = str(e.value)
    assert "Python <= 3.11" in message and "PYTHON=" in message
    assert 'FRAMEWORKS="pytorch tensorflow jax"' in message
    assert (sorted(mxnet_env.iterdir()) if mxnet_env.exists() else []) == env_before


def test_an_unknown_framework_is_a_usage_error():
    proc = subprocess.run([sys.executable, str(SCRIPT), "pytorch", "caffe"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "caffe" in proc.stderr


@pytest.mark.parametrize("log, advice", [
    ("Failed to establish a NewConnectionError(...)", "could not reach the package index"),
    ("ERROR: No matching distribution found for mxnet==1.9.1", "use Python 3.11"),
    ("OSError: [Errno 28] No space left on device", "disk is full"),
])
def test_pip_failures_become_advice(log, advice):
    assert advice in setup_envs.diagnose(log, "mxnet")


def test_every_framework_kernel_is_registered_in_the_tools_env(frameworks):
    kernels = ROOT / ".venvs" / "tools" / "share" / "jupyter" / "kernels"
    for fw in frameworks:
        spec_file = kernels / f"d2l-{fw}" / "kernel.json"
        assert spec_file.exists(), f"run `make setup`: d2l-{fw} is not registered"
        assert f".venvs/{fw}/bin/python" in spec_file.read_text()


def test_the_tools_env_imports_this_checkouts_grader_from_anywhere_without_pythonpath(tmp_path):
    # as `dask scheduler` and `dask worker` do, started as exercises/README.md says
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(ROOT / ".venvs" / "tools" / "bin" / "python"), "-c",
                          "import grader.cluster, d2l_shim; print(grader.__file__)"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, f"run `make setup`: {out.stderr}"
    assert out.stdout.strip() == str(ROOT / "grader" / "__init__.py")


def test_the_checkout_is_put_on_the_tools_path_once_and_again_when_it_moved(tmp_path,
                                                                           monkeypatch):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "tools")],
                   check=True)
    monkeypatch.setattr(setup_envs, "VENVS", tmp_path)
    assert setup_envs.link_checkout("tools") == "linked"
    [pth] = (tmp_path / "tools").glob(f"lib/python*/site-packages/{setup_envs.CHECKOUT_PTH}")
    assert pth.read_text() == f"{ROOT}\n"
    assert setup_envs.link_checkout("tools") == "up to date"
    pth.write_text("/where/the/checkout/was\n")
    assert setup_envs.link_checkout("tools") == "linked"
    assert pth.read_text() == f"{ROOT}\n"


def fake_env(venvs: Path, env: str, version: tuple[int, int] = (3, 11),
             stamp: str | None = None) -> Path:
    """An env as a finished build leaves it, as far as the plan looks: an interpreter (one
    that only reports `version`), pyvenv.cfg and the stamp of `version` (or `stamp`)."""
    (venvs / env / "bin").mkdir(parents=True)
    python = venvs / env / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho {version[0]} {version[1]}\n")
    python.chmod(0o755)
    (venvs / env / "pyvenv.cfg").write_text(f"version = {version[0]}.{version[1]}.4\n")
    (venvs / env / ".d2l-stamp").write_text(
        stamp if stamp is not None else setup_envs.fingerprint_of(env, version))
    return python


def test_the_plan_says_what_each_env_needs_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(setup_envs, "VENVS", tmp_path)
    python = fake_python(tmp_path, 3, 11)
    assert setup_envs.plan("jax", python) == ("build", "no env yet")
    fake_env(tmp_path, "jax")
    assert setup_envs.plan("jax", python) == (
        "up to date", "requirements/jax.txt and Python 3.11 unchanged since its build")
    (tmp_path / "jax" / ".d2l-stamp").write_text("the stamp of other pins")
    assert setup_envs.plan("jax", python) == (
        "rebuild", "requirements/jax.txt changed since its last build")
    (tmp_path / "jax" / ".d2l-stamp").unlink()
    assert setup_envs.plan("jax", python)[0] == "rebuild"
    assert "no finished build" in setup_envs.plan("jax", python)[1]
    fake_env(tmp_path, "mxnet", version=(3, 10))
    assert setup_envs.plan("mxnet", python) == (
        "rebuild", "Python changed: built with 3.10, now 3.11")
    fake_env(tmp_path, "pytorch", version=(3, 10), stamp="the stamp of other pins")
    assert setup_envs.plan("pytorch", python) == (
        "rebuild", "requirements/pytorch.txt changed, and Python: built with 3.10, now 3.11")


def test_a_dry_run_prints_the_plan_and_creates_nothing(tmp_path):
    venvs = tmp_path / "venvs"
    env = {**os.environ, "D2L_VENVS": str(venvs)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--python",
                           fake_python(tmp_path, 3, 12), "jax", "mxnet"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "built with Python 3.12" in lines[0]
    assert "[setup      tools] plan: build (no env yet)" in lines
    assert ("[setup        jax] plan: build (no env yet); kernel d2l-jax will be registered into "
            "the new tools env") in lines
    [mxnet] = [line for line in lines if line.startswith("[setup      mxnet]")]
    assert "needs Python <= 3.11: this build will fail" in mxnet
    assert lines[-1].startswith("setup: dry run: nothing was built")
    assert not venvs.exists()


def test_make_setup_dry_run_is_the_scripts(tmp_path):
    shown = subprocess.run(["make", "--no-print-directory", "-n", "setup", "DRY_RUN=1"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "ci/setup_envs.py --dry-run" in shown
    refused = subprocess.run(["make", "--no-print-directory", "-n", "test", "DRY_RUN=1"],
                             cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "DRY_RUN=1 is for `make setup` alone" in refused.stderr


def test_a_registration_into_another_checkouts_envs_survives_a_setup_run(tmp_path):
    # Checkout "other" built the envs; this checkout shares them through a symlink, as a
    # second clone would (.venvs -> ../other/.venvs, or D2L_VENVS).
    shared = tmp_path / "other" / ".venvs"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(shared / "tools")],
                   check=True)
    (shared / "tools" / ".d2l-stamp").write_text(setup_envs.fingerprint_of("tools", (3, 11)))
    jax_python = fake_env(shared, "jax")
    spec = shared / "tools" / "share" / "jupyter" / "kernels" / "d2l-jax" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": [str(jax_python), "-m", "ipykernel_launcher", "-f",
                                         "{connection_file}"],
                                "display_name": "an older name", "language": "python"}))
    other_checkout = tmp_path / "other" / "checkout"
    (other_checkout / "grader").mkdir(parents=True)
    (other_checkout / "grader" / "__init__.py").write_text("")
    [site] = (shared / "tools").glob("lib/python*/site-packages")
    pth = site / setup_envs.CHECKOUT_PTH
    pth.write_text(f"{other_checkout}\n")
    before = {spec: spec.read_bytes(), pth: pth.read_bytes()}
    mine = tmp_path / "mine-venvs"
    mine.symlink_to(shared)

    proc = subprocess.run([sys.executable, str(SCRIPT), "--python", fake_python(tmp_path, 3, 11),
                           "jax"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "D2L_VENVS": str(mine)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {path: path.read_bytes() for path in before} == before
    said = {line.split("]")[0]: line for line in proc.stdout.splitlines()
            if "left as it is" in line}  # once each, on the env's line of the plan
    assert set(said) == {"[setup      tools", "[setup        jax"}, proc.stdout
    assert (f"; kernel d2l-jax is registered to {jax_python}, the env this checkout shares"
            in said["[setup        jax"])
    assert f"puts another checkout, {other_checkout}, on its path" in said["[setup      tools"]
    assert "registered Jupyter kernel" not in proc.stdout


def test_a_registration_is_renewed_when_its_interpreter_is_gone_or_it_changed(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(setup_envs, "VENVS", tmp_path)
    spec = setup_envs.kernel_spec("jax")
    assert setup_envs.kernel_state("jax") == ("register", "not registered yet")
    spec.parent.mkdir(parents=True)
    ours = str(setup_envs.venv_python("jax").absolute())
    spec.write_text(json.dumps({"argv": [ours], "display_name": setup_envs.DISPLAY_NAMES["jax"]}))
    assert setup_envs.kernel_state("jax")[0] == "current"
    spec.write_text(json.dumps({"argv": [ours], "display_name": "an older name"}))
    assert setup_envs.kernel_state("jax")[0] == "register"
    gone = str(tmp_path / "moved" / ".venvs" / "jax" / "bin" / "python")
    spec.write_text(json.dumps({"argv": [gone], "display_name": setup_envs.DISPLAY_NAMES["jax"]}))
    assert setup_envs.kernel_state("jax") == (
        "register", f"registered to {gone}, which is not there any more")
