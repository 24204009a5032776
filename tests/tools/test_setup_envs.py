"""ci/setup_envs.py: incremental, and clear about what to do when it cannot succeed."""

from __future__ import annotations

import importlib.util
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
