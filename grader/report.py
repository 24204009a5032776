"""What grading hands out: the feedback page per submission, grades.csv and the terminal lines.

Everything a student wrote is untrusted text here:
- feedback pages are rendered with nbgrader's feedback template by nbconvert with
  sanitize_html on, after nbconvert's SanitizeHTML has dropped every output type that could
  carry script (JavaScript, SVG, widgets) and cleaned HTML and Markdown; hidden tests show as
  one line each (passed or failed, the points, the error's type and message), and any output
  that quotes a hidden test's code is removed;
- CSV cells never start like a spreadsheet formula and hold no control characters;
- terminal lines show control characters and undecodable bytes as escapes.
"""

from __future__ import annotations

import copy
import csv
import functools
import html
import re
from pathlib import Path

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
HIDDEN_SHOWN = "# Hidden tests: the grader ran this cell; its code stays hidden."
MIN_LINE = 12  # shorter lines of a hidden test (`else:`) are too common to give it away
STATUS_ORDER = ["unsandboxed", "missing notebook", "invalid notebook", "not a notebook file",
                "symlink", "no submission", "grading error", "submission timeout", "kernel died",
                "timeout", "memory limit", "disk limit", "tests restored", "cells dropped",
                "output truncated"]


def escape_text(text: str) -> str:
    """Printable everywhere: control characters and lone surrogates as \\x.. escapes."""
    text = CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(text))
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def csv_cell(value) -> str:
    text = escape_text(value).replace("\n", " ")
    return "'" + text if text.startswith(FORMULA_START) else text


def status_text(result: dict) -> str:
    found = [s for s in STATUS_ORDER if s in result["status"]]
    found += [s for s in result["status"] if s not in STATUS_ORDER]
    return "; ".join(found) if found else "ok"


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def write_csv(path: Path, rows: list[dict], exercises: list[str]) -> None:
    """grades.csv: a row per submission, one column per exercise (ex1, ex2, ...)."""
    fields = ["student", "assignment", "score", "max_score", *exercises, "status", "review",
              "late", "detail"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(row.get(k, "")) for k in fields})
    tmp.replace(path)


# ------------------------------------------------------------------------------------ feedback


def hidden_lines(course: dict) -> set[str]:
    """Lines only the hidden tests have (a line the students can see gives nothing away)."""
    hidden, shown = set(), set()
    for cell in course["cells"]:
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


def _error_line(cell) -> str:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{escape_text(out.get('ename', ''))[:100]}: " \
                   f"{escape_text(out.get('evalue', ''))[:300]}"
    return ""


def feedback_notebook(nb, result: dict, course: dict):
    """The notebook a student gets back: scores on the test cells, hidden tests reduced to
    their verdict, nothing that quotes them, and no metadata of the student's."""
    from nbformat.v4 import new_output

    fb = copy.deepcopy(nb)
    fb.metadata = {"kernelspec": course["kernelspec"], "language_info": {"name": "python"}}
    secret = hidden_lines(course)
    for i, cell in enumerate(fb.cells):
        meta = cell.metadata.get("nbgrader") or {}
        gid = meta.get("grade_id")
        if gid in result["cells"]:
            meta["score"], meta["points"] = result["cells"][gid], course["points"][gid]
        if cell.cell_type != "code":
            continue
        if gid in course["hidden"]:
            score, points = result["cells"][gid], course["points"][gid]
            verdict = ("passed" if score == points else "failed") + \
                f" ({fmt(score)} of {fmt(points)} points)"
            why = _error_line(cell)
            for line in secret:  # the error message is the student's text: it could quote
                why = why.replace(line, "[hidden test code]")
            cell.source = HIDDEN_SHOWN
            cell.outputs = [new_output("stream", name="stdout", text=(
                f"Hidden tests {verdict}" + (f"\n{why}" if why and score != points else "")
                + "\n"))]
            continue
        kept = []
        for out in cell.get("outputs", []):
            text = _text_of(out)
            if any(line in text for line in secret):
                kept.append(new_output("stream", name="stdout", text=(
                    "[output removed by the grader: it quoted a hidden test]\n")))
                flag = f"cell {i}: its output quoted a hidden test (removed from the feedback)"
                if flag not in result["review"]:
                    result["review"].append(flag)
            else:
                kept.append(out)
        cell.outputs = kept
    return fb


@functools.cache
def _exporter():
    """nbconvert's HTML exporter with nbgrader's feedback template, sanitizing: made once
    per worker (compiling the template is most of the cost of a page)."""
    import os

    import nbgrader
    from nbconvert.exporters import HTMLExporter
    from traitlets.config import Config

    formgrader = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions",
                              "formgrader")
    c = Config()
    c.HTMLExporter.template_name = "feedback"
    c.HTMLExporter.extra_template_basedirs = [os.path.join(formgrader, "templates")]
    c.HTMLExporter.extra_template_paths = [
        os.path.join(formgrader, "static", "node_modules", "bootstrap", "dist", "css")]
    c.HTMLExporter.sanitize_html = True
    return HTMLExporter(config=c)


def feedback_html(nb, result: dict, course: dict, late_penalty: float = 0.0) -> str:
    """The student's page; the score after the late penalty, which it names, as nbgrader's
    feedback does."""
    from nbconvert.preprocessors.sanitize import SanitizeHTML

    from grader.late import capped

    fb = feedback_notebook(nb, result, course)
    fb, _ = SanitizeHTML().preprocess(fb, {})
    score = sum(result["cells"].values())
    late = capped(late_penalty, score)
    resources = {"nbgrader": {"notebook": course["notebook"], "score": score - late,
                              "max_score": course["max_score"], "late_penalty": late}}
    body, _ = _exporter().from_notebook_node(fb, resources=resources)
    return body


def feedback_stub(result: dict) -> str:
    """Feedback for a submission that could not be run: say why, in HTML."""
    title = html.escape(escape_text(result["assignment"] or "Submission"))
    detail = "<br>".join(html.escape(escape_text(d)) for d in result["detail"])
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}: {html.escape(status_text(result))}</h1><p>{detail}</p>"
            f"<p>Score: 0</p></body></html>\n")
