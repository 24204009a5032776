"""Build one virtual environment per framework, plus the tools env, under .venvs/.

Usage: python3.11 ci/setup_envs.py [--dry-run] [--jobs N] [pytorch tensorflow mxnet jax]

Incremental: an env is rebuilt only when its requirements file (or the Python it is built
with) changed since its last successful build; otherwise it says
"up to date" and does nothing. Before it starts it prints its plan, a line per env: build,
rebuild or up to date, and why; --dry-run (`make setup DRY_RUN=1`) prints that plan and
changes nothing. Each framework env gets d2l_shim installed editable, and a
Jupyter kernel `d2l-<framework>` registered into the tools env, so the tools env's Jupyter
(lab, nbclient, nbgrader) sees all four kernels and nothing leaks into ~/.local. The tools
env gets this checkout on its path (a .pth file): every process it runs imports `grader`
wherever it starts, a `dask scheduler` or `dask worker` of a grading cluster included.

Envs shared by two checkouts (a `.venvs` symlink, or D2L_VENVS naming the other's): a kernel
registration or .pth that points into another checkout that still exists is left as it is,
with a line saying so, never rewritten to this checkout's paths.

Runs on the standard library alone: it must work before any env exists.
"""

from __future__ import annotations

import argparse
import functools
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


@functools.cache  # asked again for each env's plan and build: the interpreter stays the same
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
    return fingerprint_of(env, python_version(python))


def fingerprint_of(env: str, version: tuple[int, int]) -> str:
    h = hashlib.sha256()
    # d2l_shim is installed editable: edits to it take effect without a rebuild.
    h.update((REQS / f"{env}.txt").read_bytes())
    h.update(repr(version).encode())
    return h.hexdigest()


def built_with(env: str) -> tuple[int, int] | None:
    """The Python version an env was created with, from its pyvenv.cfg (None: unknown)."""
    try:
        cfg = (VENVS / env / "pyvenv.cfg").read_text()
    except OSError:
        return None
    m = re.search(r"^version(?:_info)?\s*=\s*(\d+)\.(\d+)", cfg, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


def plan(env: str, python: str) -> tuple[str, str]:
    """What build() will do to `env` and why: ('build' | 'rebuild' | 'up to date', reason).
    Reads only; `python` is run only to ask its version."""
    reqs = f"requirements/{env}.txt"
    version = python_version(python)
    if not (VENVS / env).exists():
        return "build", "no env yet"
    if not venv_python(env).exists():
        return "rebuild", f"{shown(VENVS / env)} has no interpreter (an unfinished build?)"
    stamp = VENVS / env / ".d2l-stamp"
    if not stamp.is_file():
        return "rebuild", "no finished build recorded (the last one was stopped or failed)"
    recorded = stamp.read_text()
    if recorded == fingerprint_of(env, version):
        return "up to date", f"{reqs} and Python {dotted(version)} unchanged since its build"
    old = built_with(env)
    if old and old != version:
        if recorded == fingerprint_of(env, old):
            return "rebuild", f"Python changed: built with {dotted(old)}, now {dotted(version)}"
        return "rebuild", (f"{reqs} changed, and Python: built with {dotted(old)}, now "
                           f"{dotted(version)}")
    return "rebuild", f"{reqs} changed since its last build"


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
    if plan(env, python)[0] == "up to date":  # main() printed the plan's line
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


def site_packages(env: str) -> Path:
    py = str(venv_python(env))
    return Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())


def another_checkout(pth: Path) -> str | None:
    """The other checkout a .pth in a shared tools env names, if it still exists."""
    try:
        named = Path(pth.read_text().strip())
    except OSError:
        return None
    if (not named.is_absolute() or not (named / "grader" / "__init__.py").is_file()
            or named.resolve() == ROOT.resolve()):
        return None
    return str(named)


def link_checkout(env: str = "tools") -> str:
    """Put this checkout on `env`'s path, unless it is there already or the env is shared with
    another checkout whose path it holds. Returns 'linked', 'up to date' or 'another checkout'."""
    py = str(venv_python(env))
    pth = site_packages(env) / CHECKOUT_PTH
    want = f"{ROOT}\n"
    if pth.is_file() and pth.read_text() == want:
        return "up to date"
    if another_checkout(pth):  # main()'s plan says so
        return "another checkout"
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


def kernel_spec(env: str) -> Path:
    return VENVS / "tools" / "share" / "jupyter" / "kernels" / f"d2l-{env}" / "kernel.json"


def kernel_state(env: str) -> tuple[str, str]:
    """('current' | 'register' | 'another checkout', why) for the `d2l-<env>` registration.
    A registration whose interpreter is an env another checkout built (a tools env shared
    through a `.venvs` symlink or D2L_VENVS) is that checkout's: it is never rewritten."""
    spec = kernel_spec(env)
    py = str(venv_python(env).absolute())
    if not spec.exists():
        return "register", "not registered yet"
    try:
        current = json.loads(spec.read_text())
        registered = current["argv"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "register", f"{shown(spec)} is unreadable"
    if registered == py:
        if current.get("env", {}) == KERNEL_ENV.get(env, {}) and current.get(
                "display_name") == DISPLAY_NAMES[env]:
            return "current", "registered to this env"
        return "register", "its display name or environment changed"
    there = Path(registered)
    if there.is_file() and (there.parent.parent / ".d2l-stamp").is_file():
        whose = ("the env this checkout shares, by the path another checkout gave it"
                 if there.resolve() == Path(py).resolve() else "an env another checkout built")
        return "another checkout", (
            f"is registered to {registered}, {whose}: left as it is (to register this "
            f"checkout's, delete {shown(spec.parent)} and run make setup)")
    return "register", f"registered to {registered}, which is not there any more"


def register_kernel(env: str) -> str:
    """Register `d2l-<env>` into the tools env unless it is already there and current, or
    another checkout's (kernel_state). Returns the state it found."""
    state, _ = kernel_state(env)
    if state != "register":  # current, or another checkout's: main()'s plan says which
        return state
    py = str(venv_python(env).absolute())
    cmd = [py, "-m", "ipykernel", "install", "--prefix", str((VENVS / "tools").absolute()),
           "--name", f"d2l-{env}", "--display-name", DISPLAY_NAMES[env]]
    for key, value in KERNEL_ENV.get(env, {}).items():
        cmd += ["--env", key, value]
    logfile = VENVS / f"{env}.log"
    run_logged(cmd, logfile, env)
    log(env, f"registered Jupyter kernel d2l-{env}")
    return state


def plan_line(env: str, python: str, tools_action: str) -> str:
    """One line of the plan main() prints before it starts: what happens to `env` and why."""
    action, why = plan(env, python)
    line = f"plan: {action} ({why})"
    limit = MAX_PYTHON.get(env)
    if action != "up to date" and limit and python_version(python) > limit:
        line += f"; it needs Python <= {dotted(limit)}: this build will fail"
    if env == "tools":
        if action == "up to date":
            try:
                pth = site_packages(env) / CHECKOUT_PTH
            except (OSError, subprocess.CalledProcessError):
                return line
            other = another_checkout(pth)
            if other:
                line += (f"; its {CHECKOUT_PTH} puts another checkout, {other}, on its path "
                         "(envs shared): left as it is (make's commands import this checkout's "
                         "grader from the working directory)")
            elif not (pth.is_file() and pth.read_text() == f"{ROOT}\n"):
                line += "; this checkout goes on its path (a .pth)"
        return line
    if tools_action != "up to date":
        return line + f"; kernel d2l-{env} will be registered into the new tools env"
    state, why = kernel_state(env)
    if state == "register":
        line += f"; kernel d2l-{env} will be registered ({why})"
    elif state == "another checkout":
        line += f"; kernel d2l-{env} {why}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frameworks", nargs="*", default=list(FRAMEWORKS))
    parser.add_argument("--jobs", type=int, default=4, help="envs built at once")
    parser.add_argument("--python", default=os.environ.get("PYTHON") or sys.executable)
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be built and why, and change nothing")
    args = parser.parse_args()
    unknown = [f for f in args.frameworks if f not in FRAMEWORKS]
    if unknown:
        print(f"setup: unknown framework(s) {unknown}; choose from {' '.join(FRAMEWORKS)}",
              file=sys.stderr)
        return 2
    try:
        version = dotted(python_version(args.python))
        print(f"setup: envs in {shown(VENVS)}/, built with Python {version} ({args.python})",
              flush=True)
        tools_action = plan("tools", args.python)[0]
        for env in ("tools", *args.frameworks):
            log(env, plan_line(env, args.python, tools_action))
    except SetupError as e:
        print(f"setup: {e}", file=sys.stderr)
        return 1
    if args.dry_run:
        print("setup: dry run: nothing was built, registered or written.")
        return 0
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
