"""The conda files must pin exactly what requirements/*.txt pin, so they cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")


def pins_in(lines) -> dict[str, str]:
    """{normalized name: version} for every `name==version` line; fails on anything looser."""
    pins = {}
    for raw in lines:
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-"):  # blank, comment, or a pip option line
            continue
        m = PIN.match(line)
        assert m, f"not an exact pin: {raw!r} (pin every direct dependency with ==)"
        name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
        assert pins.get(name, m.group(2)) == m.group(2), f"{name} pinned twice, differently"
        pins[name] = m.group(2)
    return pins


def requirement_pins(*envs: str) -> dict[str, str]:
    return pins_in(line for env in envs
                   for line in (ROOT / "requirements" / f"{env}.txt").read_text().splitlines())


def conda_pins(filename: str) -> tuple[dict[str, str], dict]:
    spec = yaml.safe_load((ROOT / filename).read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    return pins_in(pip), spec


@pytest.mark.parametrize("filename, envs", [
    ("environment.yml", ("pytorch", "tensorflow", "jax", "tools")),
    ("environment-mxnet.yml", ("mxnet",)),
])
def test_conda_file_pins_equal_the_requirement_files(filename, envs):
    pins, spec = conda_pins(filename)
    assert pins == requirement_pins(*envs)
    assert "python=3.11" in spec["dependencies"]


def test_mxnet_pins_cannot_share_the_main_conda_env():
    """Why there are two conda files: the same package pinned to different versions."""
    main, _ = conda_pins("environment.yml")
    mxnet, _ = conda_pins("environment-mxnet.yml")
    assert main["numpy"] != mxnet["numpy"] == "1.23.5"


def test_pins_in_rejects_a_loose_or_conflicting_pin():
    with pytest.raises(AssertionError, match="not an exact pin"):
        pins_in(["torch>=2"])
    with pytest.raises(AssertionError, match="pinned twice"):
        pins_in(["numpy==1.23.5", "numpy==2.4.6"])
