"""Shared by every suite, so it imports no framework: each suite runs in its own env."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

FRAMEWORK_MODULES = {"torch", "tensorflow", "keras", "mxnet", "jax", "jaxlib", "flax"}


@pytest.fixture(scope="session")
def frameworks() -> list[str]:
    """The frameworks whose envs this run built: `make test FRAMEWORKS="pytorch jax"` tests
    those alone (ci/test_all.py passes the list on in D2L_FRAMEWORKS)."""
    return os.environ.get("D2L_FRAMEWORKS", "pytorch tensorflow mxnet jax").split()


@pytest.fixture
def assert_isolated():
    """Check that only `own` frameworks are installed and that the shim imports only them."""

    def check(shim_module: str, own: set[str]) -> None:
        installed = {m for m in FRAMEWORK_MODULES if importlib.util.find_spec(m)}
        assert installed == own, f"this env should hold {own} only, found {installed}"
        code = (f"import sys; from d2l_shim import {shim_module}; "
                f"print(sorted(m for m in {sorted(FRAMEWORK_MODULES)} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        assert set(eval(out)) <= own, out

    return check
