"""The feedback page against a hostile submission (grader/report.py, grader/render.py).

The student controls the whole notebook: markdown, outputs and their metadata, cell metadata,
and strings that are not even valid Unicode. Each test shows one attack failing: script in the
page (checked in the HTML and, where Chromium is installed, in a real browser), pages that
take minutes or gigabytes to render, lone surrogates, hidden tests quoted by their outputs.
"""

from __future__ import annotations

import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader import report
from grader.model import Assignment, Result, Status

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# As tests/tools/test_lab.py drives it: no sandbox (root in containers), no network chatter.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# Sets the page's title to PWNED<n> when it runs; the word itself is never in the page's text.
RUN = "document.title=/PW/.source+/NED{}/.source"
BROKEN_PNG = "AAAA"  # not a PNG: an <img> of it fires onerror
HIDDEN_SOURCE = ("assert square(2) == 4\n### BEGIN HIDDEN TESTS\n"
                 "assert square(12345) == 152399025, 'the secret hidden check'\n"
                 "### END HIDDEN TESTS\n")


def nbgrader(grade_id, points=None, solution=False):
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": not solution,
            "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def course_cells():
    return [
        new_markdown_cell("# Squares\n\nWrite `square(x)`."),
        new_code_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                      "    ### END SOLUTION", metadata=nbgrader("ex1-solution", solution=True)),
        new_code_cell("assert square(3) == 9", metadata=nbgrader("ex1-visible", 1)),
        new_code_cell(HIDDEN_SOURCE, metadata=nbgrader("ex1-hidden", 2)),
    ]


COURSE = Assignment(name="squares", notebook="squares",
                    points={"ex1-visible": 1.0, "ex1-hidden": 2.0}, cells=course_cells(),
                    released={}, tests=["ex1-visible", "ex1-hidden"], hidden=["ex1-hidden"],
                    checks={}, kernelspec=KERNELSPEC, source_file="")


def submission(*extra) -> nbformat.NotebookNode:
    """The graded notebook of a student who passed the visible test only, plus `extra` cells."""
    cells = course_cells()
    cells[1].source = "def square(x):\n    return x * x if x < 10 else 0"
    cells[2].outputs = []
    cells[3].outputs = [new_output("error", ename="AssertionError",
                                   evalue="the secret hidden check", traceback=[])]
    for i, cell in enumerate(cells):
        if cell.cell_type == "code":
            cell.execution_count = i
    return new_notebook(cells=cells + list(extra), metadata={"kernelspec": KERNELSPEC})


def result(**more) -> Result:
    return Result("ada", "squares", **{"cells": {"ex1-visible": 1.0, "ex1-hidden": 0.0}, **more})


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attrs(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(autouse=True)
def fresh_helpers():
    """No renderer helper shared between tests: each sees its own limits."""
    report._close_idle()
    yield
    report._close_idle()


def page_of(*extra, res=None, **kw) -> str:
    res = res if res is not None else result()
    page = report.feedback_html(submission(*extra), res, COURSE, **kw)
    page.encode("utf-8")  # always writable as UTF-8
    return page


def dom_in_chromium(path: Path) -> str:
    proc = subprocess.run([str(CHROMIUM), *CHROMIUM_ARGS, "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


# ------------------------------------------------------------------------- a normal page


def test_an_exercise_not_answered_yet_says_so_instead_of_a_traceback():
    nb = submission()
    stub, visible = nb.cells[1], nb.cells[2]
    stub.outputs = [new_output("error", ename="NotImplementedError", evalue="",
                               traceback=["Traceback ...", "NotImplementedError: "])]
    visible.outputs = [new_output("error", ename="NameError", evalue="name 'square' is not "
                                  "defined", traceback=["NameError: name 'square' is not defined"])]
    own = new_code_cell("print(total)", execution_count=9, outputs=[new_output(
        "error", ename="NameError", evalue="name 'total' is not defined",
        traceback=["NameError: name 'total' is not defined"])])
    nb.cells.append(own)
    fb = report.feedback_notebook(nb, result(), COURSE)
    assert fb.cells[1].outputs[0].text == ("Not answered: an answer cell still raises "
                                           "NotImplementedError (replace that line with your "
                                           "answer).\n")
    assert fb.cells[2].outputs[0].text == ("Not answered: square is not defined yet (an answer "
                                           "cell defines it).\n")
    # a name no answer cell defines: the student's own slip, shown as it is
    assert fb.cells[-1].outputs[0].ename == "NameError"
    # "not answered" hides no leak: an error quoting a hidden test is removed and flagged
    leaky = result()
    stub.outputs = [new_output("error", ename="NotImplementedError", evalue="",
                               traceback=["assert square(12345) == 152399025, 'the secret "
                                          "hidden check'"])]
    fb = report.feedback_notebook(nb, leaky, COURSE)
    assert fb.cells[1].outputs[0].text == "[output removed by the grader: it quoted a hidden " \
        "test]\n"
    assert leaky.review == ["cell 1: its output quoted a hidden test (removed from the "
                            "feedback)"]



def test_a_normal_page_keeps_score_cells_and_verdicts():
    res = result(failed={"ex1-hidden": ["square(12345) should be 152399025"]})
    page = page_of(new_markdown_cell("Done: [docs](https://docs.python.org/3/) and "
                                     "[mail](mailto:ada@example.org)."), res=res)
    tags = Tags(page)
    assert "squares (Score: 1.0 / 3.0)" in page
    text = "".join(tags.text)
    assert "Squares" in text and "return x * x if x < 10 else 0" in text
    assert "assert square(3) == 9" in text and report.HIDDEN_SHOWN in text
    assert "Hidden tests failed (0 of 2 points)" in page
    assert "- square(12345) should be 152399025" in page
    assert {"href": "https://docs.python.org/3/", "rel": "noopener noreferrer"} in tags.attrs("a")
    assert any(a.get("href") == "mailto:ada@example.org" for a in tags.attrs("a"))
    assert any(a.get("href") == "#ex1-visible" for a in tags.attrs("a"))  # the table of contents
    # which names each part by exercise and kind, with its points (nbgrader: "Test cell")
    assert "Exercise 1, visible tests</a> (Score: 1.0 / 1.0)" in page
    assert "Exercise 1, hidden tests</a> (Score: 0.0 / 2.0)" in page
    assert "Test cell" not in page
    assert tags.attrs("style"), "the template's CSS is kept inline"
    csp = [a for a in tags.attrs("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    assert "script-src" not in csp[0]["content"] and not tags.attrs("script")
    assert res.status == [] and res.detail == []


def test_the_stub_of_an_unrunnable_submission_is_unchanged():
    res = Result("bo", "squares", status=[Status.INVALID_NOTEBOOK],
                 detail=["not JSON <script>x</script>"])
    stub = report.feedback_stub(res)
    assert "Score: 0" in stub and "invalid notebook" in stub
    assert "&lt;script&gt;" in stub and "<script" not in stub
    assert "Content-Security-Policy" in stub


# ------------------------------------------------------------------------- script in the page


def test_a_width_that_carries_onerror_is_no_attribute():
    attack = new_code_cell("show()", outputs=[
        new_output("display_data", data={"image/png": BROKEN_PNG, "text/plain": "img"},
                   metadata={"image/png": {"width": "1 onerror=alert(1)", "height": 30}}),
        new_output("display_data", data={"image/png": BROKEN_PNG, "text/plain": "img"},
                   metadata={"image/png": {"width": 120, "height": "50 onload=alert(2)"}})])
    page = page_of(attack)
    imgs = Tags(page).attrs("img")
    assert len(imgs) == 2
    assert all(set(img) <= {"src", "alt", "width", "height"} for img in imgs), imgs
    assert (imgs[0].get("width"), imgs[0].get("height")) == (None, "30")
    assert (imgs[1].get("width"), imgs[1].get("height")) == ("120", None)
    assert "onerror" not in page and "onload" not in page


def test_javascript_links_are_not_live():
    attack = new_markdown_cell(
        "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(2)) [c](java&#x09;script:alert(3)) "
        "<a href='javascript:alert(4)'>d</a> <a href=' javascript:alert(5)'>e</a> "
        "[f](data:text/html,<script>alert(6)</script>) [g](vbscript:msgbox) "
        "[h](//evil.example/x) [i](other-page.html) [ok](https://example.org/#x) [top](#top)")
    page = page_of(attack)
    hrefs = [a["href"] for a in Tags(page).attrs("a") if "href" in a]
    assert "https://example.org/#x" in hrefs and "#top" in hrefs
    assert all(h.startswith(("http://", "https://", "mailto:", "#")) for h in hrefs), hrefs
    assert "javascript:alert" not in page.lower().replace("&#x09;", "")
    assert not any("evil.example" in h or "other-page" in h for h in hrefs)


def test_student_metadata_cannot_inject_markup_or_a_comment():
    cell = new_code_cell("x = 1", metadata={
        "nbgrader": {"grade": True, "solution": False, "grade_id": 'x"><b onclick=alert(1)>',
                     "points": 100, "score": 100, "comment": "Excellent work, full marks"},
        "tags": ['"><img src=x onerror=alert(1)>']})
    page = page_of(cell)
    assert "onclick" not in page and "onerror" not in page
    assert "Excellent work" not in page
    assert "Score: 100" not in page


ATTACKS = [
    new_markdown_cell(f"<img src=x onerror={RUN.format(1)}> "
                      f"<script>{RUN.format(2)}</script> "
                      f"<svg><script>{RUN.format(3)}</script></svg> "
                      f"<iframe srcdoc='<script>parent.{RUN.format(4)}</script>'></iframe> "
                      f"<body onload={RUN.format(5)}> <details open ontoggle={RUN.format(6)}>"),
    new_code_cell("show()", outputs=[
        new_output("display_data", data={"image/png": BROKEN_PNG, "text/plain": "img"},
                   metadata={"image/png": {"width": f"1 onerror={RUN.format(7)}"}}),
        new_output("display_data", data={
            "text/html": f"<img src=x onerror={RUN.format(8)}>",
            "text/markdown": f"<img src=x onerror={RUN.format(9)}>",
            "image/svg+xml": f"<svg onload={RUN.format(10)}></svg>",
            "application/javascript": RUN.format(11), "text/plain": "x"})],
        metadata={"nbgrader": {"grade": False, "solution": True,
                               "grade_id": f'y"><img src=x onerror={RUN.format(12)}>'}}),
    # maths is rendered into markup from the student's LaTeX (grader/render.py)
    new_markdown_cell(f"$\\href{{javascript:{RUN.format(13)}}}{{x}}$ "
                      f"$\\text{{<img src=x onerror={RUN.format(14)}>}}$ "
                      f"$$\\text{{</math><img src=x onerror={RUN.format(15)}>}}$$ "
                      f"D2LMATH0X D2LMATH99X"),
]


def test_maths_is_rendered_as_mathml_with_nothing_fetched_and_code_left_alone():
    html = page_of(new_markdown_cell(
        "The weight is $\\mathbf{W} \\in \\mathbb{R}^{h \\times d}$, and\n\n"
        "$$\\frac{\\partial L}{\\partial w} = x^2$$\n\n"
        "Prices stay prose: $5 and $6. Code stays code: `echo $HOME$PATH`.\n\n"
        "Unreadable LaTeX stays as written: $\\frac{a}{$."))
    assert html.count("<math") == 2 and "<mfrac>" in html and "<msup>" in html
    assert 'display="block"' in html and 'display="inline"' in html
    assert "$5 and $6" in html and "echo $HOME$PATH" in html
    assert "$\\frac{a}{$" in html and "D2LMATH" not in html
    assert "<script" not in html and "mathjax" not in html.lower() and "http" not in \
        html.split("<body>", 1)[1].replace("http://www.w3.org/1998/Math/MathML", "")


def test_openings_of_maths_that_never_close_are_prose():
    from grader import render

    found = []
    text = "\\[ \\( $" * 50_000  # each looks MAX_MATH_CHARS ahead at most for its end
    assert render.maths_to_tokens(text, found) == text and found == []
    text = "$$ x $$ " * 1000
    assert render.maths_to_tokens(text, found).count("D2LMATH") == render.MAX_MATHS


def test_maths_cannot_carry_a_link_markup_or_a_script():
    html = page_of(*ATTACKS[-1:])
    # each formula is still drawn, and D2LMATH0X, typed by the student, is their own first
    assert html.count("<math") == 4
    body = html.split("<body>", 1)[1]  # the head's CSS names javascript: links itself
    assert "javascript" not in body and "onerror" not in body and "<img" not in body
    assert "href" not in body.split("<math", 1)[1]
    assert "D2LMATH99X" in html, "a token the student typed is their text"


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install it with "
                    "ci/install_browser.sh (Debian's chromium package) to run this check")
def test_chromium_runs_no_script_of_the_student(tmp_path):
    # The check works: in Chromium, the same payload on a page of its own does run.
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><head><title>t</title></head><body><img width=1 "
                       f"onerror={RUN.format(0)} src='data:image/png;base64,{BROKEN_PNG}'>"
                       f"</body></html>", encoding="utf-8")
    assert "PWNED0" in dom_in_chromium(control)

    html = page_of(*ATTACKS)
    page = tmp_path / "feedback.html"
    page.write_text(html, encoding="utf-8")
    dom = dom_in_chromium(page)
    assert "squares (Score: 1.0 / 3.0)" in dom, "the page did not load"
    assert "PWNED" not in dom
    # The policy alone would block inline handlers: without it, the markup is still inert.
    assert report.CSP_META in html
    page.write_text(html.replace(report.CSP_META, ""), encoding="utf-8")
    assert "PWNED" not in dom_in_chromium(page)


# ------------------------------------------------------------------------- bounded rendering


def nested_brackets(chars: int) -> str:
    return "[[]" * (chars // 3)  # nbconvert's link handling is quadratic in it


def test_280k_of_nested_brackets_are_cut_not_rendered_for_minutes():
    """Rendered whole, this cell took 300 s; past MAX_MARKDOWN it is a note."""
    res = result()
    start = time.monotonic()
    page = page_of(new_markdown_cell(nested_brackets(280_000)),
                   new_markdown_cell("Course text after it"), res=res)
    assert time.monotonic() - start < 90
    assert "feedback plain" not in res.status
    assert "cut by the grader" in page and "Course text after it" in page
    assert "[[][[]" not in page
    assert any("1 markdown part(s) left out" in d for d in res.detail), res.detail


def test_markdown_that_renders_too_long_gives_a_plain_page(monkeypatch):
    """Under the markdown cap but minutes to render: the helper is killed at the limit."""
    monkeypatch.setattr(report, "RENDER_SECONDS", 4)  # 60 by default; 4 keeps this short
    res = result(failed={"ex1-hidden": ["square(12345) should be 152399025"]})
    start = time.monotonic()
    page = page_of(new_markdown_cell(nested_brackets(190_000)), res=res)
    assert time.monotonic() - start < 40
    assert "feedback plain" in res.status
    assert "the feedback page could not be rendered in 4 s; a plain page was written" in \
        res.detail
    assert report.status_text(res) == "feedback plain"
    tags = Tags(page)
    assert "Score: 1 / 3" in page and "Exercise 1, hidden tests: 0 of 2 points" in page
    assert "Exercise 1, visible tests: 1 of 1 points" in page
    assert "Hidden tests failed (0 of 2 points)" in page  # the verdicts, as on a full page
    assert "return x * x if x &lt; 10 else 0" in page  # the cells, escaped
    assert "the secret hidden check" not in page
    assert not tags.attrs("script") and not tags.attrs("a") and "Content-Security-Policy" in page
    assert not report._idle, "the helper that overran was killed, not kept"
    monkeypatch.setattr(report, "RENDER_SECONDS", 60)  # a fresh helper's start-up, under load
    again = result()
    assert "squares (Score: 1.0 / 3.0)" in page_of(res=again)  # a fresh helper renders again
    assert again.status == []


def test_huge_markdown_is_cut_before_rendering():
    res = result()
    big = "word " * 4_000_000  # 20 MB: rendered whole it took a worker to 1.87 GB
    out = new_code_cell("show()", outputs=[new_output(
        "display_data", data={"text/markdown": big, "text/plain": "md"})])
    page = page_of(new_markdown_cell(big), out, new_markdown_cell("Still here"), res=res)
    assert len(page) < 1_000_000
    assert page.count("cut by the grader") == 2 and "Still here" in page
    assert "feedback plain" not in res.status
    assert any("2 markdown part(s) left out" in d for d in res.detail)


def test_a_page_over_the_memory_limit_gives_a_plain_page(monkeypatch):
    """40 MB of printout (the executor caps it far lower, but this notebook is the
    student's) under a 200 MiB helper: the helper idles at about 100 MiB."""
    monkeypatch.setattr(report, "RENDER_MEMORY", 200 * 2**20)  # 1536 MiB by default
    res = result()
    flood = new_code_cell("print(...)", outputs=[
        new_output("stream", name="stdout", text=f"line {i:03} " * 20_000) for i in range(200)])
    page = page_of(flood, res=res)
    assert "feedback plain" in res.status
    assert any(d.startswith("the feedback page could not be rendered") and "memory" in d
               and d.endswith("a plain page was written") for d in res.detail), res.detail
    assert "Score: 1 / 3" in page and len(page) < 1_000_000
    assert "[the rest of the notebook was cut by the grader]" in page or \
        "[cut by the grader]" in page


# ------------------------------------------------------------------------- text that is not text


def test_lone_surrogates_render_and_encode(tmp_path):
    assert report.clean_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    cells = [new_markdown_cell("broken \udc80 markdown"),
             new_code_cell("print('\ud800')", outputs=[
                 new_output("stream", name="stdout", text="bad \ud800 text\n"),
                 new_output("error", ename="Oops\udfff", evalue="\ud83d", traceback=["\udc00"])])]
    res = result()
    page = page_of(*cells, res=res)
    (tmp_path / "page.html").write_text(page, encoding="utf-8")
    assert "bad \ufffd text" in page and "broken \ufffd markdown" in page
    assert res.status == []
    res.assignment = "sq\ud800"
    res.detail.append("odd \udfff")
    stub = report.feedback_stub(res, COURSE, submission(*cells))
    (tmp_path / "stub.html").write_text(stub, encoding="utf-8")
    (tmp_path / "stub0.html").write_text(report.feedback_stub(res), encoding="utf-8")


# ------------------------------------------------------------------------- hidden tests


def test_hidden_tests_show_the_course_descriptions_not_their_outputs():
    nb = submission()
    nb.cells[3].outputs = [
        new_output("stream", name="stdout", text="printed by the student's code\n"),
        new_output("error", ename="AssertionError", evalue="the secret hidden check",
                   traceback=["assert square(12345) == 152399025, 'the secret hidden check'"])]
    failed = [f"check {i} failed" for i in range(12)]
    failed[1] = "<b>bold</b> & more\nsecond line"
    failed[2] = "x" * 300
    res = result(failed={"ex1-hidden": failed})
    fb = report.feedback_notebook(nb, res, COURSE)
    hidden = fb.cells[3]
    assert hidden.source == report.HIDDEN_SHOWN
    text = hidden.outputs[0].text
    lines = text.splitlines()
    assert lines[0] == "Hidden tests failed (0 of 2 points)"
    assert lines[1:11] == [f"- {d.replace(chr(10), ' ')[:200]}" for d in failed[:10]]
    assert lines[11] == "(2 more not shown)" and len(lines) == 12
    assert "printed by" not in text and "secret" not in text and "152399025" not in text

    page = report.feedback_html(nb, result(failed={"ex1-hidden": failed}), COURSE)
    assert "- &lt;b&gt;bold&lt;/b&gt; &amp; more second line" in page
    assert "check 9 failed" in page and "check 10 failed" not in page
    assert "printed by" not in page and "the secret hidden check" not in page

    passed = report.feedback_notebook(
        nb, result(cells={"ex1-visible": 1.0, "ex1-hidden": 2.0}, failed={}), COURSE)
    assert passed.cells[3].outputs[0].text == "Hidden tests passed (2 of 2 points)\n"
