"""Build one virtual environment per framework, plus the tools env, under .venvs/.

Usage: python3.11 ci/setup_envs.py [--jobs N] [pytorch tensorflow mxnet jax]

Incremental: an env is rebuilt only when its requirements file (or the Python it is built
with) changed since its last successful build; otherwise it says
"up to date" and does nothing. Each framework env gets d2l_shim installed editable, and a
Jupyter kernel `d2l-<framework>` registered into the tools env, so the tools env's Jupyter
(lab, nbclient, nbgrader) sees all four kernels and nothing leaks into ~/.local. The tools
env gets this checkout on its path (a .pth file): every process it runs imports `grader`
wherever it starts, a `dask scheduler` or `dask worker` of a grading cluster included.

Runs on the standard library alone: it must work before any env exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# D2L_VENVS builds elsewhere (the set-up benchmark times a from-scratch build there).
VENVS = Path(os.environ.get("D2L_VENVS", ROOT / ".venvs")).absolute()
REQS = ROOT / "requirements"
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
DISPLAY_NAMES = {
    "pytorch": "PyTorch (d2l-lazy-init)",
    "tensorflow": "TensorFlow / Keras 3 (d2l-lazy-init)",
    "mxnet": "MXNet (d2l-lazy-init)",
    "jax": "JAX / Flax (d2l-lazy-init)",
}
# Environment variables each kernel starts with. TensorFlow's C++ start-up log goes to the
# kernel's stderr, which Jupyter shows the reader: TF_CPP_MIN_LOG_LEVEL silences the
# cpu_feature_guard lines, but the oneDNN notice goes only with oneDNN's custom ops turned off.
KERNEL_ENV = {"tensorflow": {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}}
MAX_PYTHON = {"mxnet": (3, 11)}  # MXNet 1.9.1 needs numpy<1.24: no wheels beyond 3.11


class SetupError(Exception):
    """A failure with a message that says what to do."""


def log(env: str, msg: str) -> None:
    print(f"[setup {env:>10}] {msg}", flush=True)


def shown(path: Path) -> Path:
    """A path as the user would type it from the repository root."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def venv_python(env: str) -> Path:
    return VENVS / env / "bin" / "python"


def python_version(python: str) -> tuple[int, int]:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError(
            f"cannot run the Python interpreter {python!r} ({e}). Install Python 3.11 "
            "or point PYTHON at one: make setup PYTHON=/path/to/python3.11"
        ) from None
    major, minor = out.split()
    return int(major), int(minor)


def fingerprint(env: str, python: str) -> str:
    """What an env's contents depend on; a change means rebuild."""
    h = hashlib.sha256()
    # d2l_shim is installed editable: edits to it take effect without a rebuild.
    h.update((REQS / f"{env}.txt").read_bytes())
    h.update(repr(python_version(python)).encode())
    return h.hexdigest()


def diagnose(log_text: str, env: str) -> str:
    """Turn the usual pip failures into a sentence that says what to do."""
    if re.search(r"Temporary failure in name resolution|Network is unreachable|"
                 r"Max retries exceeded|Connection refused|NewConnectionError", log_text):
        return "pip could not reach the package index: check the network (or a proxy) and re-run."
    m = re.search(r"No matching distribution found for (\S+)", log_text)
    if m:
        return (f"pip found no {m.group(1)} for this Python and platform. The pins in "
                f"requirements/{env}.txt are for CPython 3.11 on Linux/macOS x86-64 or arm64; "
                "use Python 3.11 (make setup PYTHON=/path/to/python3.11).")
    if "No space left on device" in log_text:
        return "the disk is full: free some space (the four envs take about 3 GB) and re-run."
    return "see the log above; re-run `make setup` after fixing it (only this env is rebuilt)."


def run_logged(cmd: list[str], logfile: Path, env: str) -> None:
    with logfile.open("a") as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        tail = "".join(logfile.read_text(errors="replace").splitlines(True)[-15:])
        raise SetupError(f"`{' '.join(map(str, cmd[:4]))} ...` failed (exit {rc}).\n"
                         f"--- last lines of {shown(logfile)} ---\n{tail}"
                         f"--- what to do: {diagnose(logfile.read_text(errors='replace'), env)}")


def build(env: str, python: str) -> str:
    """Build one env if its fingerprint changed. Returns 'built' or 'up to date'."""
    stamp = VENVS / env / ".d2l-stamp"
    want = fingerprint(env, python)
    if stamp.exists() and stamp.read_text() == want and venv_python(env).exists():
        log(env, "up to date")
        return "up to date"
    limit = MAX_PYTHON.get(env)
    if limit and python_version(python) > limit:
        raise SetupError(
            f"{env} needs Python <= {limit[0]}.{limit[1]}, but {python} is "
            f"{'.'.join(map(str, python_version(python)))}. Point PYTHON at Python 3.11 "
            f"(make setup PYTHON=/path/to/python3.11), or leave {env} out: "
            f'make setup FRAMEWORKS="{" ".join(f for f in FRAMEWORKS if f != env)}"')
    start = time.monotonic()
    logfile = VENVS / f"{env}.log"
    shutil.rmtree(VENVS / env, ignore_errors=True)  # a clean rebuild drops removed pins too
    logfile.write_text("")
    log(env, f"creating venv (log: {shown(logfile)})")
    run_logged([python, "-m", "venv", str(VENVS / env)], logfile, env)
    py = str(venv_python(env))
    log(env, f"installing requirements/{env}.txt")
    run_logged([py, "-m", "pip", "install", "--disable-pip-version-check",
                "-r", str(REQS / f"{env}.txt")], logfile, env)
    if env != "tools":
        log(env, "installing d2l_shim (editable)")
        run_logged([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                    "-e", str(ROOT)], logfile, env)
        log(env, "checking the framework and d2l_shim import")
        run_logged([py, "-c", f"from d2l_shim import {shim_module(env)}"], logfile, env)
    stamp.write_text(want)
    log(env, f"built in {time.monotonic() - start:.0f} s")
    return "built"


# In the tools env's site-packages: this checkout's root, one line, which Python's `site` adds
# to sys.path (after site-packages). Not a `pip install -e .`: the notebooks install this
# project from GitHub on Colab, and students must get d2l_shim alone, not the grader.
CHECKOUT_PTH = "d2l-lazy-init-checkout.pth"


def link_checkout(env: str = "tools") -> str:
    """Put this checkout on `env`'s path, unless it is there already. Returns 'linked' or
    'up to date'."""
    py = str(venv_python(env))
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(site) / CHECKOUT_PTH
    want = f"{ROOT}\n"
    if pth.is_file() and pth.read_text() == want:
        return "up to date"
    pth.write_text(want)
    # from elsewhere, as a `dask worker` started anywhere would
    env_vars = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([py, "-c", "import grader, d2l_shim; print(grader.__file__)"],
                           capture_output=True, text=True, cwd=VENVS, env=env_vars)
    if check.returncode != 0 or not check.stdout.strip().startswith(str(ROOT / "grader")):
        raise SetupError(f"{shown(pth)} should put {ROOT} on the {env} env's path, but "
                         f"`import grader` gives: {(check.stdout + check.stderr).strip()[-500:]}")
    log(env, f"this checkout is on the {env} env's path ({shown(pth)}): grader imports "
             "without PYTHONPATH")
    return "linked"


def shim_module(env: str) -> str:
    return "torch" if env == "pytorch" else env


def register_kernel(env: str) -> None:
    """Register `d2l-<env>` into the tools env unless it is already there and current."""
    spec = VENVS / "tools" / "share" / "jupyter" / "kernels" / f"d2l-{env}" / "kernel.json"
    py = str(venv_python(env).absolute())
    if spec.exists():
        current = json.loads(spec.read_text())
        if current.get("argv", [None])[0] == py and current.get("env", {}) == KERNEL_ENV.get(
                env, {}) and current.get("display_name") == DISPLAY_NAMES[env]:
            return
    cmd = [py, "-m", "ipykernel", "install", "--prefix", str((VENVS / "tools").absolute()),
           "--name", f"d2l-{env}", "--display-name", DISPLAY_NAMES[env]]
    for key, value in KERNEL_ENV.get(env, {}).items():
        cmd += ["--env", key, value]
    logfile = VENVS / f"{env}.log"
    run_logged(cmd, logfile, env)
    log(env, f"registered Jupyter kernel d2l-{env}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frameworks", nargs="*", default=list(FRAMEWORKS))
    parser.add_argument("--jobs", type=int, default=4, help="envs built at once")
    parser.add_argument("--python", default=os.environ.get("PYTHON") or sys.executable)
    args = parser.parse_args()
    unknown = [f for f in args.frameworks if f not in FRAMEWORKS]
    if unknown:
        print(f"setup: unknown framework(s) {unknown}; choose from {' '.join(FRAMEWORKS)}",
              file=sys.stderr)
        return 2
    VENVS.mkdir(exist_ok=True)
    start = time.monotonic()
    failures: dict[str, str] = {}
    try:
        tools = build("tools", args.python)  # first: the framework kernels are registered into it
        link_checkout("tools")
    except SetupError as e:
        print(f"setup: the tools env failed: {e}", file=sys.stderr)
        return 1

    def one(env: str) -> str:
        try:
            result = build(env, args.python)
            register_kernel(env)
            return result
        except SetupError as e:
            failures[env] = str(e)
            log(env, "FAILED")
            return "failed"

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = dict(zip(args.frameworks, pool.map(one, args.frameworks), strict=True))
    for env, message in failures.items():
        print(f"\nsetup: {env} failed: {message}", file=sys.stderr)
    results = {"tools": tools, **results}
    if all(r == "up to date" for r in results.values()):
        print("setup: all envs up to date, nothing to do.")
    else:
        print(f"setup: done in {time.monotonic() - start:.0f} s: "
              + ", ".join(f"{k} {v}" for k, v in results.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
