"""Execute the chapter notebooks the way `make run-all` does and check what they show.

These tests check that they all ran to the last cell through the runner, where no cell
may raise (nbclient's default; the runner ignores `raises-exception` tags, as VS Code and
Colab do), and a few outputs a reader is told to look for, the cascade figure among them.
The claims of the prose are checked on the values each kernel computed:
tests/tools/test_notebook_claims.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each executed notebook must show somewhere in its outputs.
EXPECTED = {
    "pytorch": ["<UninitializedParameter>", "torch.Size([0])", "torch.Size([256, 20])"],
    "tensorflow": ["[[], []]", "(20, 256)"],
    "mxnet": ["(256, -1)", "(256, 20)"],
    "jax": ["(20, 256)"],
}
# TensorFlow's C++ start-up log must not reach the reader.
NOISE = ["oneDNN", "cpu_feature_guard", "rebuild TensorFlow with the appropriate compiler"]


@pytest.fixture(scope="module")
def executed(run_all_output):
    return run_all_output  # tests/tools/conftest.py: one run per session, the book's too


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", ""))
            parts.extend(str(v) for v in o.get("data", {}).values())
    return "\n".join(parts)


def test_every_notebook_passes(executed, frameworks):
    proc, report, _ = executed
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(r["notebook"] for r in report["notebooks"] if r["status"] == "passed") == \
        sorted(f"lazy-init-{fw}.ipynb" for fw in frameworks)


@pytest.mark.parametrize("fw", list(EXPECTED))
def test_executed_notebook_shows_the_lesson(executed, frameworks, fw):
    if fw not in frameworks:
        pytest.skip(f"{fw} was not set up in this run (FRAMEWORKS)")
    _, _, out = executed
    nb = nbformat.read(out / "notebooks" / f"lazy-init-{fw}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "a cell did not run"
    for cell in code:
        assert "raises-exception" not in cell.metadata.get("tags", []), cell.source
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    shown = [c for c in code if "d2l.expect_error(" in c.source]
    assert shown, "no cell shows an error through d2l.expect_error"
    for cell in shown:  # one short line each, not a traceback
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert re.fullmatch(r"\w+: .{1,200}\n", text.splitlines(keepends=True)[-1]), text
        assert "Traceback" not in text and len(text.splitlines()) <= 3, text
    text = outputs_text(nb)
    for expected in EXPECTED[fw]:
        assert expected in text, f"{expected!r} not in the outputs of lazy-init-{fw}"
    stderr = "\n".join(o.get("text", "") for c in code for o in c.outputs
                       if o.get("name") == "stderr")
    assert not any(n in stderr for n in NOISE), stderr
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), \
        "the cascade figure is missing"
    assert (out / "html" / f"lazy-init-{fw}.html").stat().st_size > 10_000
