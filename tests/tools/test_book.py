"""`make book` (ci/book.py): the chapter as one page, four framework tabs, every output real.

The site is built once, into a temporary build folder holding the session's run of the
notebooks (tests/tools/conftest.py), so the book reuses those executions instead of running
the notebooks again; that reuse is itself checked. The browser tests open the page from disk
in Debian's Chromium, as tests/tools/test_lab.py does, and leave build/book-<framework>.png.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "ci"), str(Path(__file__).parent)]  # importlib mode: no siblings
import colab  # noqa: E402  (ci/ is not a package)
from test_lab import CHROMIUM, CHROMIUM_ARGS, ensure_browser  # noqa: E402
from test_notebook_structure import H2  # noqa: E402

FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
LABELS = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "mxnet": "MXNet", "jax": "JAX"}
SHOTS = ROOT / "build"


@pytest.fixture(scope="module")
def book(run_all_output, frameworks, tmp_path_factory):
    """(`make book`'s output, build folder, site folder, {fw: executed notebook})."""
    if set(frameworks) != set(FRAMEWORKS):
        pytest.skip("the book needs all four frameworks set up (FRAMEWORKS)")
    _, _, ran = run_all_output
    build = tmp_path_factory.mktemp("book") / "build"
    shutil.copytree(ran / "notebooks", build / "notebooks")
    # The README's command as written, pointed at the temporary build folder.
    proc = subprocess.run(["make", "--no-print-directory", "book", f"BOOK_BUILD={build}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed = {fw: nbformat.read(build / "notebooks" / f"lazy-init-{fw}.ipynb", as_version=4)
                for fw in FRAMEWORKS}
    return proc.stdout, build, build / "book", executed


def page_html(book) -> str:
    return (book[2] / "index.html").read_text(encoding="utf-8")


def test_book_reuses_the_executed_notebooks(book):
    out, *_ = book
    assert "executed 0, reused 4" in out, out
    for fw in FRAMEWORKS:
        assert f"book: reused   lazy-init-{fw}.ipynb" in out


def test_every_skeleton_heading_has_one_tab_per_framework(book):
    chunks = re.split(r'<section id="[^"]+">\s*<h2>', page_html(book))[1:]  # not the sidebar's
    titles = [html.unescape(re.sub(r"<[^>]+>", "", c.split("<a class=\"headerlink\"")[0]))
              for c in chunks]
    assert titles == H2
    for title, chunk in zip(titles, chunks, strict=True):
        tabs = re.findall(r'class="sd-tab-label" data-sync-group="framework" '
                          r'data-sync-id="(\w+)"', chunk)
        assert tabs == list(FRAMEWORKS), f"{title!r}: tabs {tabs}"


def test_an_output_on_the_page_is_the_executed_notebooks_own(book):
    """The cascade figure's PNG, byte for byte, and a printed table, character for character."""
    _, _, site, executed = book
    text = page_html(book)
    for fw, nb in executed.items():
        cell = next(c for c in nb.cells if c.cell_type == "code"
                    and c.source.startswith("d2l.draw_cascade("))
        png = base64.b64decode(next(o.data["image/png"] for o in cell.outputs
                                    if "image/png" in o.get("data", {})))
        shown = site / "_images" / f"{hashlib.sha256(png).hexdigest()}.png"
        assert shown.read_bytes() == png, f"{fw}: the page's cascade is not the notebook's"
        assert f'src="_images/{shown.name}"' in text
        table = next(o.text for c in nb.cells if c.cell_type == "code"
                     and "layer_table(" in c.source for o in c.outputs
                     if o.output_type == "stream")
        assert html.escape(table.strip(), quote=False) in text, f"{fw}: layer table differs"


def test_page_and_its_files_load_nothing_from_outside(book):
    for page in book[2].glob("*.html"):
        text = page.read_text(encoding="utf-8")
        outside = re.findall(r'<(?:script|link|img|source|iframe)\b[^>]*\b(?:src|href)='
                             r'"((?:https?:)?//[^"]+)"', text)
        assert not outside, f"{page.name} loads {outside}"
    for css in book[2].rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*['\"]?(https?:)?//", css.read_text()), css


def test_run_all_records_what_each_notebook_ran_with(book):
    for fw, nb in book[3].items():
        run = nb.metadata["d2l_run"]
        assert run["status"] == "passed" and len(run["key"]) == 64
        assert re.fullmatch(r"3\.\d+\.\d+", run["python"]), run
        assert run["versions"], f"{fw}: no framework version recorded"


def test_a_markdown_edit_re_renders_without_executing(book, tmp_path):
    _, build, site, _ = book
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    path = notebooks / "lazy-init-mxnet.ipynb"
    nb = nbformat.read(path, as_version=4)
    next(c for c in nb.cells if c.source.startswith("## Summary")).source += \
        "\n\nA sentence only this test adds."
    nbformat.write(nb, path)
    copy = tmp_path / "build"
    shutil.copytree(build, copy)
    proc = subprocess.run([sys.executable, "ci/book.py", "--build", str(copy), "--notebooks",
                           str(notebooks)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "executed 0, reused 4; page re-rendered" in proc.stdout
    assert "A sentence only this test adds." in (copy / "book" / "index.html").read_text()


def test_colab_result_file_counts_each_framework(tmp_path):
    junit = tmp_path / "colab.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase name="test_pytorch_runs_through"/>'
        '<testcase name="test_jax_runs_through"><failure message="x"/></testcase>'
        '<testcase name="test_set_up_cell_installed_the_shim_on_colab[tensorflow]"/>'
        '<testcase name="test_mxnet_stops_at_set_up_on_colab"><skipped/></testcase>'
        '</testsuite></testsuites>')
    result = json.loads(colab.write_result(junit, 1, tmp_path / "r.json").read_text())
    assert result["passed"] is False
    assert result["frameworks"]["pytorch"] == {"passed": 1, "failed": 0, "skipped": 0}
    assert result["frameworks"]["jax"]["failed"] == 1
    assert result["frameworks"]["tensorflow"]["passed"] == 1
    assert result["frameworks"]["mxnet"]["skipped"] == 1


# --- in the browser ------------------------------------------------------------------------

JS_CHOSEN = """() => Array.from(document.querySelectorAll('.sd-tab-set')).map(set => {
    const input = set.querySelector(':scope > input:checked');
    const label = input && input.nextElementSibling;
    return label ? label.dataset.syncId : null;
})"""


@pytest.fixture(scope="module")
def browser():
    reason = ensure_browser()
    if not CHROMIUM.exists():
        pytest.skip(f"no browser for the book test: {reason or 'chromium missing'}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                              timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def test_page_in_the_browser(book, browser):
    """From disk: no console error, no request outside the site; JAX chosen once switches
    every tab set and survives a reload; each framework's figure loads with its alt text
    and its tab's verified line names the versions it ran with. Screenshots per framework."""
    _, _, site, executed = book
    url = (site / "index.html").as_uri()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(site.as_uri()) else None)
    try:
        page.goto(url, wait_until="load")
        sets = page.evaluate(JS_CHOSEN)
        assert len(sets) == len(H2) + 1 and set(sets) == {"pytorch"}, sets

        page.locator("label.sd-tab-label[data-sync-id=jax]").first.click()
        assert set(page.evaluate(JS_CHOSEN)) == {"jax"}
        page.reload(wait_until="load")
        assert set(page.evaluate(JS_CHOSEN)) == {"jax"}, "the choice did not survive a reload"

        cascade = page.locator("section#the-cascade-layer-by-layer")
        for fw in FRAMEWORKS:
            page.locator(f"label.sd-tab-label[data-sync-id={fw}]").first.click()
            assert set(page.evaluate(JS_CHOSEN)) == {fw}
            figure = cascade.locator(".sd-tab-content:visible img")
            assert figure.count() == 1, f"{fw}: {figure.count()} figures in the cascade tab"
            assert figure.evaluate("img => img.complete && img.naturalWidth > 0"), fw
            alt = figure.get_attribute("alt") or ""
            assert "receives" in alt and "output has shape" in alt, f"{fw}: alt {alt!r}"
            line = page.locator(".sd-tab-content:visible .book-verified").first.inner_text()
            run = executed[fw].metadata["d2l_run"]
            assert f"Python {run['python']}" in line, line
            for version in run["versions"].values():
                assert version in line, f"{fw}: {version} not in {line!r}"
            assert ("Open in Colab" in line) == (fw != "mxnet"), line
            assert "Download the notebook" in line
            cascade.evaluate("s => s.scrollIntoView()")  # its heading and tabs on top
            page.screenshot(path=str(SHOTS / f"book-{fw}.png"))
        assert not errors, errors
        assert not outside, f"requests outside the site: {outside}"
    finally:
        context.close()
