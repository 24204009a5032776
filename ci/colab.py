"""`make test-colab`: the notebooks and their claim tests on Colab's versions.

Usage (from the tools env): python ci/colab.py

1. Builds .venvs/colab from requirements/colab.txt with Python 3.13, as Colab runs (rebuilt
   only when that file changes; COLAB_PYTHON picks the interpreter). It holds all three
   frameworks in one env, as Colab does, and no d2l-shim.
2. Registers a kernel `d2l-colab` inside that env (not in the tools env, so `make test`
   never sees it) that imports a stand-in `google.colab` (ci/colab/) at start, as Colab's
   kernel does.
3. Runs tests/tools/test_notebook_claims.py on that kernel: each notebook's set-up cell
   runs for real and pip-installs the shim from this checkout (instead of the repository
   URL), then the notebook and every claim, with the expectations of Colab's versions.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import setup_envs  # noqa: E402  (ci/ is not a package)

ROOT = setup_envs.ROOT
ENV = setup_envs.VENVS / "colab"
KERNELS = ENV / "share" / "jupyter"
COLAB_PYTHON = (3, 13)


def find_python() -> str:
    """Python 3.13: COLAB_PYTHON, python3.13 on PATH, or pyenv's copy."""
    candidates = [os.environ.get("COLAB_PYTHON"), shutil.which("python3.13"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")))]
    for python in filter(None, candidates):
        try:
            if setup_envs.python_version(python) == COLAB_PYTHON:
                return python
        except setup_envs.SetupError:
            continue
    raise setup_envs.SetupError(
        "make test-colab needs Python 3.13, the version Colab runs, and found none. Install "
        "it (e.g. `pyenv install 3.13`) or point COLAB_PYTHON at one: "
        "make test-colab COLAB_PYTHON=/path/to/python3.13")


def build(python: str) -> None:
    stamp = ENV / ".d2l-stamp"
    want = setup_envs.fingerprint("colab", python)
    if stamp.exists() and stamp.read_text() == want:
        setup_envs.log("colab", "up to date")
        return
    start = time.monotonic()
    log = setup_envs.VENVS / "colab.log"
    shutil.rmtree(ENV, ignore_errors=True)
    log.write_text("")
    setup_envs.log("colab", f"creating venv with {python} (log: {setup_envs.shown(log)}); "
                            "torch's CUDA build makes this several GB")
    setup_envs.run_logged([python, "-m", "venv", str(ENV)], log, "colab")
    setup_envs.run_logged([str(ENV / "bin" / "python"), "-m", "pip", "install",
                           "--disable-pip-version-check", "-r",
                           str(setup_envs.REQS / "colab.txt")], log, "colab")
    stamp.write_text(want)
    setup_envs.log("colab", f"built in {time.monotonic() - start:.0f} s")


def register_kernel() -> None:
    spec = KERNELS / "kernels" / "d2l-colab"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(ENV / "bin" / "python"), "-m", "ipykernel_launcher", "-f",
                 "{connection_file}", "--IPKernelApp.exec_lines=['import google.colab']"],
        "display_name": "Colab stand-in (d2l-lazy-init)", "language": "python",
        "env": {"PYTHONPATH": str(ROOT / "ci" / "colab"), **setup_envs.KERNEL_ENV["tensorflow"]},
    }, indent=1))


def write_result(junit: Path, rc: int, out: Path = ROOT / "build" / "test-colab.json") -> Path:
    """build/test-colab.json: when it ran, on what, and each framework's counts (a test's
    framework is the one its name or parameter names: test_pytorch_..., [jax])."""
    frameworks = {fw: {"passed": 0, "failed": 0, "skipped": 0} for fw in setup_envs.FRAMEWORKS}
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            fw = next((f for f in frameworks
                       if re.search(rf"(^test_{f}_|\[{f}\])", case.get("name", ""))), None)
            if fw is None:
                continue
            failed = case.find("failure") is not None or case.find("error") is not None
            skipped = case.find("skipped") is not None
            frameworks[fw]["failed" if failed else "skipped" if skipped else "passed"] += 1
    env = {"python": None, "packages": {}}
    try:
        probe = subprocess.run([str(ENV / "bin" / "python"), "-c", (
            "import importlib.metadata as m, json, sys; print(json.dumps({'python': "
            "sys.version.split()[0], 'packages': {p: m.version(p) for p in "
            "('torch', 'tensorflow', 'keras', 'jax', 'flax', 'numpy')}}))")],
            capture_output=True, text=True)
        if probe.returncode == 0:
            env = json.loads(probe.stdout)
    except OSError:  # no .venvs/colab: the result still says what ran and how it went
        pass
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "passed": rc == 0, **env, "frameworks": frameworks}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def main() -> int:
    start = time.monotonic()
    try:
        build(find_python())
    except setup_envs.SetupError as e:
        print(f"test-colab: {e}", file=sys.stderr)
        return 1
    register_kernel()
    env = {**os.environ, "D2L_STACK": "colab", "D2L_KERNEL": "d2l-colab",
           "JUPYTER_PATH": str(KERNELS), "D2L_SHIM_FROM": f"file://{ROOT}",
           "D2L_FRAMEWORKS": "pytorch tensorflow mxnet jax"}
    results = ROOT / "build" / "test-results"
    results.mkdir(parents=True, exist_ok=True)
    rc = subprocess.run([sys.executable, "-m", "pytest", "tests/tools/test_notebook_claims.py",
                         "-q", "-p", "no:cacheprovider", f"--junitxml={results / 'colab.xml'}"],
                        cwd=ROOT, env=env).returncode
    write_result(results / "colab.xml", rc)
    size = subprocess.run(["du", "-sh", str(ENV)], capture_output=True, text=True).stdout.split()
    print(f"test-colab: {'passed' if rc == 0 else 'FAILED'} in "
          f"{time.monotonic() - start:.0f} s; .venvs/colab takes {size[0] if size else '?'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
