r"""Feedback pages rendered in a process of their own: `python -m grader.render MEMORY_BYTES`.

grader.report starts this helper, keeps it between pages (importing nbconvert and compiling
nbgrader's feedback template costs about a second; a page then takes a tenth) and kills it when
a page overruns its time. Here, in the helper:
- the address space is capped (RLIMIT_AS, the bytes given on the command line), so a page that
  needs gigabytes fails with MemoryError instead of taking the Dask worker down with it;
- each page gets a CPU-time limit (RLIMIT_CPU) a little above the parent's wall-clock limit, so
  a helper whose parent is gone does not spin on a quadratic page for minutes;
- the page is nbconvert's, with nbgrader's feedback template, after nbconvert's SanitizeHTML
  preprocessor and with sanitize_html on, and then the whole body goes through an allow-list
  sanitizer (nh3, the Ammonia crate): known tags, a few attributes, links to http, https,
  mailto and in-page anchors only, images only as data:image/png|jpeg|gif|webp, numeric sizes
  only. The head is rebuilt from the template's own CSS under a Content-Security-Policy that
  allows no script at all (MathJax, the template's only script, goes);
- maths in markdown (`$...$`, `$$...$$`, `\(...\)`, `\[...\]`, outside code) is rendered
  here, by latex2mathml, as MathML, which browsers draw themselves: no script, nothing
  fetched. What latex2mathml writes is markup made from the student's text, so it goes
  through the same sanitizer, which lets MathML's presentation elements and a few of their
  attributes through (no annotation-xml, mglyph or maction, no link, no style).

Protocol, on stdin and stdout: each message is 8 bytes (big-endian length) then that many bytes
of UTF-8 JSON. Request: {"nb": notebook, "resources": exporter resources, "seconds": limit}.
Reply: {"page": html} or {"error": "memory" | "<type>: <message>"}. EOF on stdin ends it.
"""

from __future__ import annotations

import functools
import html
import json
import re
import sys

# No script, no fetch: inline CSS and data: images only. Forms and <base> are dropped by the
# sanitizer too; these say so to the browser as well.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
       "form-action 'none'")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'

# MathML Core's presentation elements, as latex2mathml writes them. Not annotation-xml (it
# may hold HTML), mglyph or malignmark (the parser-confusion gadgets of sanitizer bypasses),
# maction or menclose's notations beyond the drawing.
MATHML = {"math", "mi", "mn", "mo", "ms", "mspace", "mtext", "mrow", "mfrac", "msqrt",
          "mroot", "mstyle", "merror", "mpadded", "mphantom", "msub", "msup", "msubsup",
          "munder", "mover", "munderover", "mmultiscripts", "mprescripts", "none", "mtable",
          "mtr", "mtd", "menclose", "semantics", "annotation"}
MATHML_ATTRIBUTES = {"display", "mathvariant", "stretchy", "fence", "separator", "form",
                     "lspace", "rspace", "minsize", "maxsize", "movablelimits", "accent",
                     "accentunder", "linethickness", "columnalign", "columnspan",
                     "scriptlevel", "displaystyle", "notation", "encoding"}
TAGS = MATHML | {"a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
        "dd", "del", "details", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2",
        "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "main", "mark", "ol", "p",
        "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"}
# No style attribute: the template needs none, and a student's could lay a fake score over
# the page. Classes and ids stay: the template's CSS and its anchors need them.
ATTRIBUTES = {"*": {"class", "id", "title", "lang", "dir"}, "a": {"href", "name"},
              "img": {"src", "alt", "width", "height"}, "td": {"colspan", "rowspan", "align"},
              "th": {"colspan", "rowspan", "align", "scope"}, "ol": {"start"},
              "col": {"span"}, "colgroup": {"span"},
              **{tag: MATHML_ATTRIBUTES for tag in MATHML}}
LINK_SCHEMES = {"http", "https", "mailto"}
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Browsers drop ASCII whitespace and control characters around and inside a URL's scheme
# ("java\tscript:"), so they are dropped before the scheme is read.
URL_NOISE = re.compile(r"[\x00-\x20\x7f]")
DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*", re.I)
NUMBER = re.compile(r"\d{1,6}(\.\d{1,6})?")
STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)


def link_ok(url: str) -> bool:
    """http, https and mailto links, and anchors in the page; nothing relative, no javascript:."""
    url = URL_NOISE.sub("", url)
    if url.startswith("#"):
        return True
    m = SCHEME.match(url)
    return bool(m) and m.group(1).lower() in LINK_SCHEMES


def _attribute(tag: str, name: str, value: str) -> str | None:
    """nh3's per-attribute check, after its own tag and attribute allow-lists."""
    if name == "href":
        return value if link_ok(value) else None
    if name == "src":
        return value if tag == "img" and DATA_IMAGE.fullmatch(value.strip()) else None
    if name in ("width", "height", "colspan", "rowspan", "start", "span"):
        return value if NUMBER.fullmatch(value.strip()) else None
    return value


@functools.cache
def cleaner():
    import nh3

    return nh3.Cleaner(tags=TAGS, clean_content_tags={"script", "style"}, attributes=ATTRIBUTES,
                       attribute_filter=_attribute, url_schemes=LINK_SCHEMES | {"data"})


@functools.cache
def exporter():
    """nbconvert's HTML exporter with nbgrader's feedback template, sanitizing: made once per
    helper (compiling the template is most of the cost of a page)."""
    import importlib.util
    import os

    from nbconvert.exporters import HTMLExporter
    from traitlets.config import Config

    # Only nbgrader's folder is needed: importing it would cost a second and a half.
    nbgrader = importlib.util.find_spec("nbgrader").submodule_search_locations[0]
    formgrader = os.path.join(nbgrader, "server_extensions", "formgrader")
    c = Config()
    c.HTMLExporter.template_name = "feedback_parts"  # grader/templates/: nbgrader's, named
    c.HTMLExporter.extra_template_basedirs = [
        os.path.join(os.path.dirname(__file__), "templates"), os.path.join(formgrader, "templates")]
    c.HTMLExporter.extra_template_paths = [  # formgrader/: ours extends templates/feedback/
        formgrader, os.path.join(formgrader, "static", "node_modules", "bootstrap", "dist", "css")]
    c.HTMLExporter.sanitize_html = True
    return HTMLExporter(config=c)


def page(title: str, css: list[str], body: str) -> str:
    """The page around a sanitized body: the policy first, then the template's CSS."""
    styles = "".join(f"<style>\n{c}\n</style>\n" for c in css)
    return (f"<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{CSP_META}\n"
            f"<title>{html.escape(title)}</title>\n{styles}</head>\n<body>\n{body}\n</body>\n"
            f"</html>\n")


# Maths in markdown, as Jupyter finds it: display first; a `$` opens only before a non-space
# and closes only after one, not before a digit (so "$5 and $6" is prose). Code is skipped.
# A formula is at most MAX_MATH_CHARS long, which also bounds how far each `$$` or `\[` looks
# for its end: markdown of a thousand openings and no close costs a thousand short scans.
MAX_MATHS, MAX_MATH_CHARS = 500, 1000  # per page, per formula: beyond, left as written
_N = f"{{1,{MAX_MATH_CHARS}}}?"
MATH = re.compile(rf"\$\$(.{_N})\$\$|\\\[(.{_N})\\\]|\\\((.{_N})\\\)"
                  rf"|(?<![\\$\w])\$(?=\S)([^$\n]{_N})(?<=\S)\$(?![\w$])", re.S)
CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.S)
MATH_TOKEN = re.compile(r"D2LMATH(\d+)X")


def maths_to_tokens(source: str, found: list[str]) -> str:
    """Markdown with each formula replaced by a token (markdown leaves it alone), its
    MathML appended to `found`; a formula latex2mathml cannot read stays as written."""
    from latex2mathml.converter import convert

    def one(m: re.Match) -> str:
        tex = next(g for g in m.groups() if g is not None)
        if len(found) >= MAX_MATHS:
            return m.group(0)
        try:
            mathml = convert(tex, display="block" if m.group(1) or m.group(2) else "inline")
        except Exception:  # the student's LaTeX: anything may fail to parse
            return m.group(0)
        found.append(mathml)
        return f"D2LMATH{len(found) - 1}X"

    parts = CODE.split(source)
    return "".join(MATH.sub(one, part) if i % 2 == 0 else part for i, part in enumerate(parts))


def render_page(nb: dict, resources: dict) -> str:
    """The feedback page of a notebook already reduced by report.feedback_notebook."""
    import nbformat
    from nbconvert.preprocessors.sanitize import SanitizeHTML

    fb = nbformat.from_dict(nb)
    maths: list[str] = []
    for cell in fb.cells:
        if cell.cell_type == "markdown":
            cell.source = maths_to_tokens(str(cell.source), maths)
    fb, _ = SanitizeHTML().preprocess(fb, {})
    full, _ = exporter().from_notebook_node(fb, resources=resources)
    # Everything before the template's <body> is the template's own (CSS, the course's title,
    # MathJax): the student's cells come after it. Only the CSS is kept from there.
    start, end = full.find("<body>"), full.rfind("</body>")
    if start < 0 or end < start:
        raise ValueError("the feedback template gave a page without a body")
    css = STYLE.findall(full[:start])
    body = full[start + len("<body>"):end]
    if maths:  # a token the student typed, of a formula that is not there, stays as typed
        body = MATH_TOKEN.sub(lambda m: maths[int(m.group(1))] if int(m.group(1)) < len(maths)
                              else m.group(0), body)
    body = cleaner().clean(body)
    return page(str(resources["nbgrader"]["notebook"]), css, body)


def _read(stream, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def _cpu_limit(seconds: float) -> None:
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used.ru_utime + used.ru_stime + seconds) + 5
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def serve(memory: int) -> int:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))  # not to be raised again
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    setup_error = None
    try:
        exporter()
        cleaner()
    except Exception as e:  # said in every reply: the parent writes plain pages
        setup_error = f"{type(e).__name__}: {e}"[:300]
    while True:
        head = _read(stdin, 8)
        if head is None:
            return 0
        out_of_memory = False
        try:
            request = json.loads(_read(stdin, int.from_bytes(head, "big")) or b"null")
            _cpu_limit(float(request["seconds"]))
            if setup_error:
                raise RuntimeError(setup_error)
            reply = {"page": render_page(request["nb"], request["resources"])}
        except MemoryError:
            reply, out_of_memory = {"error": "memory"}, True
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"[:300]}
        request = None
        data = json.dumps(reply).encode("utf-8", "replace")
        stdout.write(len(data).to_bytes(8, "big") + data)
        stdout.flush()
        if out_of_memory:  # the heap may be in a poor state: the parent starts a fresh helper
            return 1


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 1536 * 2**20))
