"""What grading hands out: the feedback page per submission, grades.csv and the terminal lines.

Everything a student wrote is untrusted text here, outputs and their metadata included:
- feedback pages are rendered with nbgrader's feedback template by nbconvert with
  sanitize_html on, after nbconvert's SanitizeHTML has dropped every output type that could
  carry script (JavaScript, SVG, widgets) and cleaned HTML and Markdown; hidden tests show as
  one line each (passed or failed, the points) and, when they failed, the course's own
  descriptions of the failed checks (result.failed), never the cell's outputs; any other
  output that quotes a hidden test's code is removed;
- of the student's metadata only nbgrader's cell kinds and numeric image sizes reach the
  template (it writes width and height unquoted into <img>);
- the rendered body then goes through an allow-list sanitizer (nh3): known tags and
  attributes, links to http, https, mailto and #anchors only, data:image sources only; the
  page carries a Content-Security-Policy that allows no script (grader/render.py);
- rendering is bounded: at most MAX_MARKDOWN characters of markdown in all (the rest is
  replaced by a note), and the page is made by a helper process (grader.render, kept between
  pages) under RENDER_SECONDS and RENDER_MEMORY; past either the student gets a plain page
  (feedback_stub: escaped text, the score, the verdicts) and the result says so, in its
  status ("feedback plain") and its detail;
- pages are always encodable as UTF-8: lone surrogates become U+FFFD (clean_text);
- CSV cells never start like a spreadsheet formula and hold no control characters;
- terminal lines show control characters and undecodable bytes as escapes.
"""

from __future__ import annotations

import atexit
import copy
import csv
import html
import json
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

from grader import audit
from grader.model import Assignment, GradeRow, Manual, Result, Status, part_kind, part_name
from grader.paths import ROOT
from grader.render import CSP_META

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SURROGATE = re.compile("[\ud800-\udfff]")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
HIDDEN_SHOWN = "# Hidden tests: the grader ran this cell; its code stays hidden."
MIN_LINE = 12  # shorter lines of a hidden test (`else:`) are too common to give it away
FAILED_SHOWN, FAILED_CHARS = 10, 200  # failed checks named per hidden cell, characters each
NBGRADER_KEYS = ("grade", "solution", "task", "locked", "grade_id", "schema_version")
# 200,000 characters of the worst markdown known (nested brackets) render in about two
# minutes, so the time limit still matters; the cap keeps memory and page size sane.
MAX_MARKDOWN = 200_000
MARKDOWN_CUT = "*[This part was cut by the grader: the notebook has too much markdown.]*"
RENDER_SECONDS = 60  # wall clock for one page, a fresh helper's start included
RENDER_MEMORY = 1536 * 2**20  # address space of the helper process
RENDER_PAGES = 200  # pages before a helper is replaced (whatever it may have kept)
PLAIN_CELL_CHARS, PLAIN_CHARS = 10_000, 500_000  # text of a plain page: per cell, in all
STATUS_ORDER = list(Status)  # the order a row lists its statuses in
NOT_DEFINED = re.compile(r"name '([A-Za-z_][A-Za-z0-9_]{0,99})' is not defined")


def escape_text(text: str) -> str:
    """Printable everywhere: control characters and lone surrogates as \\x.. escapes."""
    text = CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(text))
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def csv_cell(value) -> str:
    text = escape_text(value).replace("\n", " ")
    return "'" + text if text.startswith(FORMULA_START) else text


def status_text(result: Result) -> str:
    found = [s for s in STATUS_ORDER if s in result.status]
    found += [s for s in result.status if s not in STATUS_ORDER]
    return "; ".join(found) if found else "ok"


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def note_line(cell: str, entry: Manual, auto: float | None) -> str:
    """The row's word on an instructor's override (grader/override.py)."""
    was = f" (autograder: {fmt(auto)})" if auto is not None else ""
    return f"{cell} overridden: {fmt(entry.points)} points{was}, by the instructor: {entry.note}"


def write_csv(path: Path, rows: list[GradeRow], exercises: list[str]) -> None:
    """grades.csv: a row per submission, one column per exercise (ex1, ex2, ...)."""
    fields = ["student", "assignment", "score", "max_score", *exercises, "status", "review",
              "late", "detail"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            cells = row.as_csv()
            writer.writerow({k: csv_cell(cells.get(k, "")) for k in fields})
    tmp.replace(path)


# ------------------------------------------------------------------------------------ feedback


def clean_text(text: str) -> str:
    """Encodable as UTF-8: lone surrogates (from a student's JSON, "\\ud800") become U+FFFD."""
    return SURROGATE.sub("\ufffd", text)


def _clean(value):
    """A notebook (or any JSON value) with every string, keys too, through clean_text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def hidden_lines(course: Assignment) -> set[str]:
    """Lines only the hidden tests have (a line the students can see gives nothing away)."""
    hidden, shown = set(), set()
    for cell in course.cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            else:
                (hidden if inside else shown).add(line.strip())
    shown_text = "\n".join(shown)  # a hidden line inside a visible one is no secret either
    return {line for line in hidden - shown if len(line) >= MIN_LINE and line not in shown_text}


def _text_of(output) -> str:
    if output.output_type == "stream":
        return str(output.get("text", ""))
    if output.output_type == "error":
        return "\n".join([str(output.get("evalue", "")), *map(str, output.get("traceback", []))])
    return "\n".join(str(v) for v in output.get("data", {}).values())


def _failed_lines(result: Result, gid: str) -> list[str]:
    """The course's descriptions of the hidden checks that failed, a line each: safe to show
    (the course author wrote them), but cut."""
    failed = result.failed.get(gid) or []
    lines = [f"- {escape_text(str(d)).replace(chr(10), ' ')[:FAILED_CHARS]}"
             for d in failed[:FAILED_SHOWN]]
    if len(failed) > FAILED_SHOWN:
        lines.append(f"({len(failed) - FAILED_SHOWN} more not shown)")
    return lines


def _size(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and 0 < value <= 100_000


def _output_metadata(meta) -> dict:
    """Of an output's metadata, only numeric image sizes: the template writes width and height
    unquoted into <img>, so "1 onerror=..." would be an attribute of its own."""
    kept = {}
    for mime, value in (meta if isinstance(meta, dict) else {}).items():
        if isinstance(value, dict):
            sizes = {k: value[k] for k in ("width", "height") if _size(value.get(k))}
            if sizes:
                kept[mime] = sizes
    return kept


def feedback_notebook(nb, result: Result, course: Assignment):
    """The notebook a student gets back: scores on the test cells, hidden tests reduced to
    their verdict and the course's descriptions of the checks that failed, nothing that quotes
    them, and no metadata of the student's but nbgrader's cell kinds and numeric image sizes."""
    from nbformat import from_dict
    from nbformat.v4 import new_output

    fb = copy.deepcopy(nb)
    fb.metadata = {"kernelspec": course.kernelspec, "language_info": {"name": "python"}}
    scores = result.scores  # the instructor's where set (grader/override.py)
    secret = hidden_lines(course)
    answers = answer_names(course)
    for i, cell in enumerate(fb.cells):
        # The student wrote this metadata: no comment, score or points of theirs on the page.
        meta = cell.metadata.get("nbgrader")
        meta = {k: meta[k] for k in NBGRADER_KEYS if k in meta} if isinstance(meta, dict) else {}
        gid = meta.get("grade_id") if isinstance(meta.get("grade_id"), str) else None
        if gid in scores:
            meta["score"], meta["points"] = scores[gid], course.points[gid]
        cell.metadata = from_dict({"nbgrader": meta} if meta else {})
        if cell.cell_type != "code":
            continue
        if gid in course.hidden:
            score, points = scores[gid], course.points[gid]
            verdict = ("passed" if score == points else "failed") + \
                f" ({fmt(score)} of {fmt(points)} points)"
            # Only the course's own words: the cell's outputs are the student's code's, and
            # could quote the hidden tests.
            why = _failed_lines(result, gid) if score != points else []
            cell.source = HIDDEN_SHOWN
            kind = part_kind(gid) or "hidden tests"
            cell.outputs = [new_output("stream", name="stdout", text="\n".join(
                [f"{kind[:1].upper()}{kind[1:]} {verdict}", *why]) + "\n")]
            continue
        kept = []
        for out in cell.get("outputs", []):
            text = _text_of(out)
            if any(line in text for line in secret):  # first: the review must hear of it
                kept.append(new_output("stream", name="stdout", text=(
                    "[output removed by the grader: it quoted a hidden test]\n")))
                flag = f"cell {i}: its output quoted a hidden test (removed from the feedback)"
                if flag not in result.review:
                    result.review.append(flag)
            elif unanswered := not_answered(out, answers):  # the stub's traceback says nothing
                kept.append(new_output("stream", name="stderr", text=unanswered + "\n"))
            else:
                if "metadata" in out:
                    out.metadata = from_dict(_output_metadata(out.metadata))
                kept.append(out)
        cell.outputs = kept
    return fb


def answer_names(course: Assignment) -> set[str]:
    """The names the exercises ask for: what the course's answer cells define."""
    return {name for c in course.cells if c.cell_type == "code"
            and (c.metadata.get("nbgrader") or {}).get("solution")
            for name in audit.bound_names(c.source)}


def not_answered(out, answers: set[str]) -> str | None:
    """An error output that only says an exercise is not answered yet, in those words: the
    stub's NotImplementedError, or a NameError for a name an answer cell is to define."""
    if out.get("output_type") != "error":
        return None
    if out.get("ename") == "NotImplementedError":
        return ("Not answered: an answer cell still raises NotImplementedError (replace that "
                "line with your answer).")
    m = NOT_DEFINED.fullmatch(str(out.get("evalue", ""))) if out.get("ename") == "NameError" \
        else None
    if m and m.group(1) in answers:
        return f"Not answered: {m.group(1)} is not defined yet (an answer cell defines it)."
    return None


def cap_markdown(fb, limit: int = MAX_MARKDOWN) -> int:
    """Markdown is the slow part of a page (nbconvert's link handling is quadratic): keep the
    cells and text/markdown outputs that fit in `limit` characters in all, in order, and put
    a note in place of the others. Returns how many were cut."""
    from nbformat.v4 import new_output

    left, cut = limit, 0
    for cell in fb.cells:
        if cell.cell_type == "markdown":
            size = len(str(cell.source))
            if size <= left:
                left -= size
            else:
                cell.source, cell.attachments, cut = MARKDOWN_CUT, {}, cut + 1
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data")
            size = len(str(data.get("text/markdown", ""))) if isinstance(data, dict) else 0
            if not size:
                continue
            if size <= left:
                left -= size
            else:
                cell.outputs[j], cut = new_output("stream", name="stdout",
                                                  text=MARKDOWN_CUT + "\n"), cut + 1
    return cut


class _Renderer:
    """A grader.render helper process: started once, kept for many pages, killed when a page
    takes too long, when it fails or after RENDER_PAGES pages."""

    def __init__(self):
        # sys.executable is the worker's own Python; cwd makes `grader` importable. No
        # preexec_fn (unsafe in a threaded worker): the helper limits itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader.render", str(RENDER_MEMORY)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pages = 0

    def ask(self, request: bytes, deadline: float) -> dict:
        """Send a request, wait for its reply until `deadline` (TimeoutError) or the helper's
        end (EOFError); both pipes non-blocking so neither end can stall the other."""
        inp, out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(inp, False)
        os.set_blocking(out, False)
        pending, reply, need = memoryview(request), bytearray(), None
        with selectors.DefaultSelector() as sel:
            sel.register(inp, selectors.EVENT_WRITE)
            sel.register(out, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                for key, _ in sel.select(left):
                    if key.fd == inp:
                        try:
                            pending = pending[os.write(inp, pending[:1 << 16]):]
                        except BlockingIOError:
                            continue
                        if not pending:
                            sel.unregister(inp)
                        continue
                    chunk = os.read(out, 1 << 20)
                    if not chunk:
                        raise EOFError
                    reply += chunk
                    if need is None and len(reply) >= 8:
                        need = 8 + int.from_bytes(reply[:8], "big")
                    if need is not None and len(reply) >= need:
                        return json.loads(bytes(reply[8:need]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


_idle: list[_Renderer] = []  # helpers of this process waiting for a page, one per thread
_idle_lock = threading.Lock()
_idle_pid = [os.getpid()]  # a forked child must not talk to its parent's helpers


@atexit.register
def _close_idle() -> None:
    with _idle_lock:
        helpers, _idle[:] = (list(_idle) if _idle_pid[0] == os.getpid() else []), []
    for helper in helpers:
        helper.close()


def _render(fb: dict, resources: dict) -> tuple[str | None, str]:
    """(page, "") from a helper, or (None, why not) when it overran RENDER_SECONDS or
    RENDER_MEMORY or failed."""
    deadline = time.monotonic() + RENDER_SECONDS
    try:
        request = json.dumps({"nb": fb, "resources": resources, "seconds": RENDER_SECONDS},
                             ensure_ascii=False).encode("utf-8", "replace")
    except (TypeError, ValueError) as e:  # not JSON: no page can be made of it
        return None, f"could not be rendered ({type(e).__name__}: {str(e)[:200]})"
    request = len(request).to_bytes(8, "big") + request
    with _idle_lock:
        if _idle_pid[0] != os.getpid():
            _idle[:], _idle_pid[0] = [], os.getpid()  # left to the parent, not closed
        helper = _idle.pop() if _idle else None
    try:
        if helper is None or helper.proc.poll() is not None:
            helper = _Renderer()
        reply = helper.ask(request, deadline)
    except TimeoutError:
        helper.close()
        return None, f"could not be rendered in {RENDER_SECONDS} s"
    except (OSError, EOFError, ValueError) as e:  # it died: most likely out of memory
        if helper is not None:
            helper.close()
        return None, (f"could not be rendered: the renderer stopped ({type(e).__name__}, "
                      f"perhaps over {RENDER_MEMORY // 2**20} MiB of memory)")
    helper.pages += 1
    if reply.get("error") == "memory" or helper.pages >= RENDER_PAGES:
        helper.close()
    else:
        with _idle_lock:
            _idle.append(helper)
    if "page" in reply:
        return str(reply["page"]), ""
    if reply.get("error") == "memory":
        return None, f"could not be rendered within {RENDER_MEMORY // 2**20} MiB of memory"
    return None, f"could not be rendered ({escape_text(reply.get('error', ''))[:300]})"


def summary(result: Result, course: Assignment) -> list[dict]:
    """The page's summary: each test cell with points, in the notebook's order, by name."""
    scores = result.scores
    return [{"grade_id": gid, "name": part_name(gid), "score": scores.get(gid, 0.0),
             "points": course.points[gid],
             "note": (f"Score set by your instructor: {result.manual[gid].note}"
                      if gid in result.manual else "")}
            for gid in course.tests if course.points.get(gid)]


def feedback_html(nb, result: Result, course: Assignment) -> str:
    """The student's page; the score after the late penalty, which it names, as nbgrader's
    feedback does (result.late's, as grade.py's finish computed it for the row too).
    Rendered by a helper process within RENDER_SECONDS and RENDER_MEMORY; a plain page, said
    in result's status and detail, when it cannot be."""
    import nbformat

    fb = feedback_notebook(nb, result, course)
    cut = cap_markdown(fb)
    said = (f"{cut} markdown part(s) left out of the feedback page (over {MAX_MARKDOWN:,} "
            f"characters of markdown in all)")
    if cut and said not in result.detail:  # once, though a page is rendered again (override)
        result.detail.append(said)
    fb = _clean(fb)  # plain JSON now, every string encodable
    score, late = result.score, result.penalty
    resources = {"nbgrader": {"notebook": clean_text(str(course.notebook)),
                              "score": score - late, "max_score": course.max_score,
                              "late_penalty": late, "parts": summary(result, course)}}
    page, why = _render(fb, resources)
    if page is not None:
        return clean_text(page)
    result.flag(Status.FEEDBACK_PLAIN, f"the feedback page {why}; a plain page was written")
    return feedback_stub(result, course, nbformat.from_dict(fb))


def _plain_output(out) -> str:
    if out.get("output_type") == "stream":
        return str(out.get("text", ""))
    if out.get("output_type") == "error":
        lines = [f"{out.get('ename', '')}: {out.get('evalue', '')}",
                 *map(str, out.get("traceback", []))]
        return ANSI.sub("", "\n".join(lines))
    data = out.get("data")
    return str(data.get("text/plain", "")) if isinstance(data, dict) else ""


def _plain_cells(fb) -> str:
    """The cells as escaped text, PLAIN_CELL_CHARS each and PLAIN_CHARS in all."""
    parts, left = [], PLAIN_CHARS
    for cell in fb.cells:
        texts = [str(cell.get("source", ""))]
        texts += [_plain_output(out) for out in cell.get("outputs", [])]
        text = "\n--\n".join(t.rstrip("\n") for t in texts if t)
        if len(text) > min(PLAIN_CELL_CHARS, left):
            text = text[:min(PLAIN_CELL_CHARS, left)] + "\n[cut by the grader]"
        left -= len(text)
        parts.append(f"<pre>{html.escape(escape_text(text))}</pre>")
        if left <= 0:
            parts.append("<p>[the rest of the notebook was cut by the grader]</p>")
            break
    return "\n".join(parts)


def feedback_stub(result: Result, course: Assignment | None = None, fb=None) -> str:
    """Feedback in plain HTML, everything escaped: why the submission could not be run (score
    0), or, with the course, the score and each test cell's verdict, and with the feedback
    notebook (feedback_notebook's) its cells as text, when its page could not be rendered."""
    title = html.escape(escape_text(result.assignment or "Submission"))
    detail = "<br>".join(html.escape(escape_text(d)) for d in result.detail)
    parts = [f"<h1>{title}: {html.escape(escape_text(status_text(result)))}</h1>",
             f"<p>{detail}</p>"]
    if course is None:
        parts.append("<p>Score: 0</p>")
    else:
        score, late = result.score, result.penalty
        parts.append(f"<p>Score: {fmt(score - late)} / {fmt(course.max_score)}"
                     + (f" (late submission penalty: -{fmt(late)})" if late > 0 else "")
                     + "</p>")
        parts.append("<ul>" + "".join(
            f"<li>{html.escape(escape_text(part['name']))}: {fmt(part['score'])} of "
            f"{fmt(part['points'])} points"
            + (f" ({html.escape(escape_text(part['note']))})" if part["note"] else "")
            + "</li>" for part in summary(result, course)) + "</ul>")
    if fb is not None:
        parts.append(_plain_cells(fb))
    return clean_text(
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>{CSP_META}<title>{title}</title>"
        f"</head><body>{''.join(parts)}</body></html>\n")
