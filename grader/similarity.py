"""Pairs of submissions whose answers are near-identical, for the instructor to look at.

After grading, every two submissions of the same assignment are compared on their answer
cells only (the cells the released notebook marks nbgrader `solution`, matched by grade_id),
with the released notebook's own text taken out: what is left is what each student wrote.
The released text goes twice: every line of an answer cell that its released cell has too
(def lines, docstrings, the stub) is blanked, and every k-gram of the released notebook's
code is dropped from the fingerprints. The comparison is copydetect's (k-gram fingerprints of
the tokenized code, as MOSS does): pygments tokenizes each cell, every name becomes `V`, `F`
or `O`, every string `S`, and comments and whitespace go, so renaming variables,
reformatting or recommenting does not hide a copy. A cell with less than MIN_CELL_TOKENS of
its own (a prediction: one short line every right answer writes the same) is left out.
Nothing leaves the machine.

- find_pairs(submissions, released) -> Pairs: the pairs at or above the threshold, most
  similar first (a list of Pair; `.skipped` says what could not be read, and why);
- write_report(pairs, out): build/similarity.html, one self-contained page, no script;
- review_lines(pairs) -> {(student, assignment): a line for grades.csv's review column}.

A pair is a finding to look into, never a verdict: the page shows both answers side by side
with the shared code marked, and the instructor decides.

Notebooks are untrusted files: each is read as a regular file of at most MAX_NOTEBOOK_BYTES
(grader/collect.py), parsed as plain JSON (no nbformat validation to trip over), and anything
malformed (not JSON, no cell list, a source that is not text) is skipped with a reason, never
raised. Each answer cell is cut at MAX_CELL_CHARS before it is tokenized. On the page every
name and every line of code is escaped (control characters as \\x.. escapes, then HTML), and
its Content-Security-Policy allows no script and no fetch (grader/render.py's).

copydetect's own boilerplate option (CodeFingerprint's `boilerplate=`) is not used: it finds
the boilerplate hashes with np.intersect1d(..., assume_unique=True) on a hash list that
repeats whenever code repeats, which then also drops hashes the template never had (a cell
that says the same thing twice loses it). The template's hashes are removed here instead, by
set difference, and the token coverage is counted again.
"""

from __future__ import annotations

import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from grader.collect import MAX_NOTEBOOK_BYTES, read_regular_file
from grader.render import CSP_META

# Fingerprints: every k-gram of the tokenized code (window 1: all of them are kept, which
# costs nothing at this size and finds every shared run of K tokens or more). K = 20
# tokenized characters is about one short statement (`if size != inputs: raise ValueError(`
# is `ifV!=V:raiseValueError(`, 23): shorter runs are what any two answers to the same task
# share. copydetect's default, 25, is made for whole files; these cells are a few lines.
# With K = 15 two honest answers shared up to 0.35; with 20, 0.08 (measured as below).
K = 20
WINDOW = 1
# A cell whose own text is shorter than this once tokenized is left out of the comparison:
# a prediction (`params_before_data = [True, False]` is `V=[True,False]`) is written the
# same by every student who gets it right, and says nothing about copying.
MIN_CELL_TOKENS = 2 * K
# A pair is reported when the larger of its two shares (the part of one student's own
# answer text that is also in the other's, tokenized) is at least THRESHOLD, and at least
# MIN_MATCHED tokenized characters are shared. Measured on the PyTorch assignment
# (tests/tools/test_similarity.py, `-s` prints every pair): the reference solution against
# itself with every name renamed and the layout and comments changed, or pasted under the
# template's stubs: 1.00; one exercise of three copied whole, the other two one's own: 0.50;
# two correct answers written apart, each against the other and against the reference: at
# most 0.08 (a `raise ValueError(` line that every answer has). 0.3 sits well above the
# honest pairs (answers that converge more, in other classes, have room) and well below
# one copied exercise. MIN_MATCHED (honest pairs share about 25, one copied exercise 154)
# keeps a student who wrote little from a large share of very little.
THRESHOLD = 0.3
MIN_MATCHED = 80
# Of one answer cell; a longer one is cut, and the page says so. An answer here is a few
# hundred characters; tokenizing costs about 0.2 s per 10,000, so a class that hands in
# nothing but huge cells still takes minutes, not hours.
MAX_CELL_CHARS = 20_000
LANGUAGE = "python"  # every kernel of the course runs Python
REVIEW_SHOWN = 3  # other students named in one review line
REVIEW_PREFIX = "answers near-identical to"  # how a review line of ours starts


@dataclass(frozen=True)
class CellMatch:
    """One answer cell of a pair: each student's text and the spans shared with the other."""
    grade_id: str
    texts: tuple[str, str]
    spans: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class Pair:
    assignment: str
    students: tuple[str, str]  # in sorted order
    score: float  # max(shares): what the pair is sorted and judged by
    shares: tuple[float, float]  # the part of each student's own answer text the other has
    matched: int  # tokenized characters shared (the fewer of the two sides' counts)
    cells: tuple[CellMatch, ...]  # the answer cells, in the released notebook's order


class Pairs(list):
    """The pairs found (a list of Pair, most similar first) and what was left out:
    `skipped` maps (student, assignment) to the reasons (student "" for a released notebook:
    then its whole assignment was not compared)."""

    def __init__(self, pairs=(), skipped=None, threshold: float = THRESHOLD, compared: int = 0):
        super().__init__(pairs)
        self.skipped: dict[tuple[str, str], list[str]] = skipped or {}
        self.threshold = threshold
        self.compared = compared  # submissions compared, over all assignments


@dataclass
class _Answers:
    """A notebook's answer cells by grade_id: the text, and its fingerprint once made."""
    cells: dict[str, str]
    notes: list[str] = field(default_factory=list)
    prints: dict = field(default_factory=dict)


class Unreadable(Exception):
    """A notebook that cannot be compared; the message says why."""


def read_notebook(path) -> dict:
    """A notebook file as JSON: a dict with a list of cells, or Unreadable."""
    try:
        data = read_regular_file(os.fspath(path), MAX_NOTEBOOK_BYTES)
    except (OSError, ValueError) as e:
        raise Unreadable(f"cannot be read: {e.strerror or e}" if isinstance(e, OSError)
                         else f"cannot be read: {e}") from None
    try:
        nb = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise Unreadable("not a notebook: not valid JSON") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise Unreadable("not a notebook: no list of cells")
    return nb


def cell_text(cell) -> str | None:
    """A cell's source as one string; None when it is neither a string nor a list of them."""
    source = cell.get("source", "")
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    return None


def nbgrader_id(cell) -> tuple[str | None, bool]:
    """(grade_id, solution) of a cell's nbgrader metadata, (None, False) without any."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    if not isinstance(nbg, dict) or not isinstance(nbg.get("grade_id"), str):
        return None, False
    return nbg["grade_id"], nbg.get("solution") is True


def template_of(nb: dict) -> tuple[dict[str, str], str]:
    """The released notebook's answer cells (grade_id -> text, in order) and all its code:
    the text that every student got, taken out of every answer before they are compared."""
    cells, code = {}, []
    for cell in nb["cells"]:
        if not isinstance(cell, dict):
            continue
        text = cell_text(cell)
        gid, solution = nbgrader_id(cell)
        if solution and gid not in cells:
            cells[gid] = (text or "")[:MAX_CELL_CHARS]
        if text is not None and (solution or cell.get("cell_type") == "code"):
            code.append(text[:MAX_CELL_CHARS])
    return cells, "\n\n".join(code)


def answers_of(nb: dict, ids: list[str]) -> _Answers:
    """A submission's cells with the template's answer grade_ids (the first of each)."""
    wanted, found = set(ids), _Answers({})
    for n, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict):
            found.notes.append(f"cell {n} skipped: not a JSON object")
            continue
        gid, _ = nbgrader_id(cell)  # matched by grade_id whatever the student did to `solution`
        if gid not in wanted or gid in found.cells:
            continue
        text = cell_text(cell)
        if text is None:
            found.notes.append(f"answer cell {gid} skipped: its source is not text")
            continue
        if len(text) > MAX_CELL_CHARS:
            found.notes.append(f"answer cell {gid} cut at {MAX_CELL_CHARS:,} characters")
            text = text[:MAX_CELL_CHARS]
        found.cells[gid] = text
    return found


def own_text(text: str, template: str) -> tuple[str, list[tuple[int, int]]]:
    """The answer with every line that the released cell has too (the def lines, docstrings
    and stubs a student keeps) blanked out, and where those lines are. Blanked with spaces,
    so that offsets stay those of the text. Without this the k-grams that run from a kept
    docstring into the first line of an answer (`sizes = []`) are the same for every student
    and count as shared."""
    given = {line.strip() for line in template.splitlines()} - {""}
    out, blanked, at = [], [], 0
    for line in text.splitlines(True):
        body = line.rstrip("\r\n")
        if line.strip() in given:
            out.append(" " * len(body) + line[len(body):])
            blanked.append((at, at + len(body)))
        else:
            out.append(line)
        at += len(line)
    return "".join(out), blanked


def _fingerprint(text: str, template: str, boilerplate: set):
    """copydetect's fingerprint of one cell's own text, less every hash the template has
    (code of the template that the student moved or reformatted)."""
    from copydetect import CodeFingerprint
    from copydetect.utils import get_token_coverage

    own, blanked = own_text(text, template)
    fp = CodeFingerprint("answer.py", K, WINDOW, language=LANGUAGE, fp=io.StringIO(own))
    fp.raw_code, fp.blanked = text, blanked
    for h in fp.hashes & boilerplate:
        del fp.hash_idx[h]
    fp.hashes -= boilerplate
    fp.token_coverage = get_token_coverage(fp.hash_idx, K, len(fp.filtered_code))
    return fp


def _template_hashes(code: str) -> set:
    from copydetect import CodeFingerprint

    # win_size 1: every k-gram of the template, as copydetect's CopyDetector takes them
    return set(CodeFingerprint("template.py", K, 1, language=LANGUAGE,
                               fp=io.StringIO(code)).hashes)


def _spans(slices, fp) -> tuple[tuple[int, int], ...]:
    """copydetect's 2xN slice array as sorted, merged (start, end) spans of the cell's text,
    less the template's lines (a slice runs across those it skipped) and edge whitespace."""
    if len(slices) == 0 or len(slices[0]) == 0:
        return ()
    text = fp.raw_code
    cuts = sorted(fp.blanked)
    pieces = []
    starts, ends = slices
    for a, b in sorted((max(0, int(a)), min(len(text), int(b)))
                       for a, b in zip(starts, ends, strict=True)):
        for c, d in cuts:
            if c >= b:
                break
            if d > a:
                pieces.append((a, c))
                a = max(a, d)
        pieces.append((a, b))
    merged: list[list[int]] = []
    for a, b in pieces:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return tuple((a, b) for a, b in merged)


def _compare(assignment: str, ids: list[str], a: tuple[str, _Answers],
             b: tuple[str, _Answers]) -> Pair | None:
    from copydetect import compare_files

    (name_a, ans_a), (name_b, ans_b) = a, b
    overlap, cov = [0.0, 0.0], [0.0, 0.0]
    cells = []
    for gid in ids:
        fa, fb = ans_a.prints.get(gid), ans_b.prints.get(gid)
        cov[0] += fa.token_coverage if fa else 0
        cov[1] += fb.token_coverage if fb else 0
        spans: tuple = ((), ())
        if fa and fb and fa.hashes & fb.hashes:
            tokens, (share_a, share_b), (slices_a, slices_b) = compare_files(fa, fb)
            overlap[0] += tokens
            overlap[1] += share_b * fb.token_coverage
            spans = (_spans(slices_a, fa), _spans(slices_b, fb))
        cells.append(CellMatch(gid, (ans_a.cells.get(gid, ""), ans_b.cells.get(gid, "")),
                               spans))
    shares = tuple(float(min(1.0, o / c)) if c else 0.0 for o, c in zip(overlap, cov, strict=True))
    if max(shares) == 0:
        return None
    return Pair(assignment, (name_a, name_b), float(max(shares)), shares, int(min(overlap)),
                tuple(cells))


def similarities(submissions: dict[tuple[str, str], Path], released: dict[str, Path]) -> Pairs:
    """Every pair of submissions of an assignment that shares anything, whatever its score
    (find_pairs keeps those at the threshold; the tests measure the rest)."""
    skipped: dict[tuple[str, str], list[str]] = {}
    by_assignment: dict[str, list[tuple[str, Path]]] = {}
    for (student, assignment), path in sorted(submissions.items()):
        by_assignment.setdefault(assignment, []).append((student, path))
    found, compared = [], 0
    for assignment, subs in sorted(by_assignment.items()):
        if assignment not in released:
            for student, _ in subs:
                skipped[(student, assignment)] = ["not compared: no released notebook for "
                                                  "its assignment"]
            continue
        try:
            template, code = template_of(read_notebook(released[assignment]))
        except Unreadable as e:
            skipped[("", assignment)] = [f"released notebook {e}; assignment not compared"]
            continue
        boilerplate, ids = _template_hashes(code), list(template)
        answers = []
        for student, path in subs:
            try:
                ans = answers_of(read_notebook(path), ids)
            except Unreadable as e:
                skipped[(student, assignment)] = [f"not compared: {e}"]
                continue
            for gid, text in ans.cells.items():
                try:
                    fp = _fingerprint(text, template[gid], boilerplate)
                except Exception as e:  # pygments or copydetect on text nobody checked
                    ans.notes.append(f"answer cell {gid} skipped: cannot be tokenized "
                                     f"({type(e).__name__})")
                    continue
                if len(fp.filtered_code) >= MIN_CELL_TOKENS:
                    ans.prints[gid] = fp
            if ans.notes:
                skipped[(student, assignment)] = ans.notes
            answers.append((student, ans))
        compared += len(answers)
        for i, a in enumerate(answers):
            for b in answers[i + 1:]:
                pair = _compare(assignment, ids, a, b)
                if pair:
                    found.append(pair)
    found.sort(key=lambda p: (-p.score, p.assignment, p.students))
    return Pairs(found, skipped, compared=compared)


def find_pairs(submissions: dict[tuple[str, str], Path], released: dict[str, Path],
               threshold: float = THRESHOLD) -> Pairs:
    """The pairs of submissions of one assignment whose answers are near-identical once the
    released notebook's text is removed: score >= threshold, most similar first.

    submissions: (student, assignment) -> the student's notebook; released: assignment -> the
    released (student version) notebook. Unreadable notebooks are left out: `.skipped` of the
    result says which and why, as do notes on cut or skipped cells of the ones compared.
    """
    every = similarities(submissions, released)
    return Pairs([p for p in every if p.score >= threshold and p.matched >= MIN_MATCHED],
                 every.skipped, threshold, every.compared)


def review_lines(pairs) -> dict[tuple[str, str], str]:
    """(student, assignment) -> one line for grades.csv's review column, for every student
    in a pair: who the answers resemble, how much, and where to look."""
    from grader.report import escape_text

    others: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for p in pairs:
        for me, other in (p.students, p.students[::-1]):
            others.setdefault((me, p.assignment), []).append((p.score, other))
    lines = {}
    for key, found in others.items():
        found.sort(key=lambda x: (-x[0], x[1]))
        named = ", ".join(f"{escape_text(o)} ({s:.0%})" for s, o in found[:REVIEW_SHOWN])
        more = f" and {len(found) - REVIEW_SHOWN} more" if len(found) > REVIEW_SHOWN else ""
        lines[key] = f"{REVIEW_PREFIX} {named}{more}: see similarity.html"
    return lines


# ---------------------------------------------------------------- the page
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h2{margin-top:2em;border-top:1px solid #ccc;padding-top:1em}
table{border-collapse:collapse;width:100%;table-layout:fixed}
td,th{border:1px solid #ddd;vertical-align:top;padding:.3em;text-align:left}
pre{white-space:pre-wrap;word-break:break-all;margin:0;font-size:.85em}
mark{background:#ffd54f}.note{color:#666}.gid{width:10em}"""


def _text(text: str) -> str:
    from grader.report import escape_text

    return html.escape(escape_text(text), quote=True)


def _marked(text: str, spans) -> str:
    """The text escaped, the shared spans in <mark>: each piece escaped on its own."""
    out, at = [], 0
    for a, b in spans:
        out.append(_text(text[at:a]) + "<mark>" + _text(text[a:b]) + "</mark>")
        at = b
    out.append(_text(text[at:]))
    return "".join(out)


def render(pairs) -> str:
    """The page: each pair with both students' answer cells side by side, shared code marked."""
    threshold = getattr(pairs, "threshold", THRESHOLD)
    skipped = getattr(pairs, "skipped", {})
    body = ["<h1>Similar answers</h1>",
            f"<p>{len(pairs)} pair(s) of submissions whose answer cells are near-identical "
            f"once the released notebook's text is removed (share &ge; {threshold:.0%}; "
            f"{getattr(pairs, 'compared', 0)} submissions compared, each only with the "
            "others of its assignment). Code is compared after tokenizing: names, strings, "
            "comments and layout do not count, so marked spans may differ in those. A pair is "
            "something to look at, not a verdict.</p>"]
    if not pairs:
        body.append("<p>No pair reached the threshold.</p>")
    for n, p in enumerate(pairs, 1):
        a, b = (_text(s) for s in p.students)
        body.append(f'<h2 id="pair-{n}">{n}. {a} and {b}: {_text(p.assignment)}, '
                    f"{p.score:.0%}</h2>")
        body.append(f"<p>Of {a}'s own answer text, {p.shares[0]:.0%} is in {b}'s; of "
                    f"{b}'s, {p.shares[1]:.0%} is in {a}'s.</p>")
        rows = [f'<tr><th class="gid">answer cell</th><th>{a}</th><th>{b}</th></tr>']
        for c in p.cells:
            sides = []
            for text, spans in zip(c.texts, c.spans, strict=True):
                sides.append(f"<td><pre>{_marked(text, spans)}</pre></td>" if text else
                             '<td class="note">(no such cell)</td>')
            rows.append(f'<tr><td class="gid">{_text(c.grade_id)}</td>{"".join(sides)}</tr>')
        body.append("<table>" + "".join(rows) + "</table>")
    if skipped:
        body.append("<h2>Not compared, or only in part</h2><ul>")
        for (student, assignment), reasons in sorted(skipped.items()):
            who = (f"{_text(student)}, {_text(assignment)}" if student
                   else f"the released notebook of {_text(assignment)}")
            body.append(f"<li>{who}: {_text('; '.join(reasons))}</li>")
        body.append("</ul>")
    return (f'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{CSP_META}\n'
            f"<title>Similar answers</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(pairs, out: Path) -> None:
    """build/similarity.html (written whole, then moved into place)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(pairs), encoding="utf-8")
    os.replace(tmp, out)


# ---------------------------------------------------------------- after a grading run
LINES_FILE = "similarity.json"  # the review lines grades.csv shows (gradebook.rows)


def refresh(build: Path, submissions: dict[tuple[str, str], Path],
            released: dict[str, Path]) -> bool:
    """build/similarity.html and its review lines for the class as handed in now; compared
    again only when a notebook or this module changed since the last time (a rerun that
    grades nothing costs a digest). True when compared again."""
    import hashlib

    h = hashlib.sha256(Path(__file__).read_bytes())
    for key, path in sorted({**{(s, a): p for (s, a), p in submissions.items()},
                             **{("", a): p for a, p in released.items()}}.items()):
        try:
            data = read_regular_file(path, MAX_NOTEBOOK_BYTES)
        except (OSError, ValueError):
            data = b""
        h.update(json.dumps(key).encode() + hashlib.sha256(data).digest())
    digest = h.hexdigest()
    lines_file = build / LINES_FILE
    try:
        if json.loads(lines_file.read_text(encoding="utf-8"))["digest"] == digest \
                and (build / "similarity.html").exists():
            return False
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pairs = find_pairs(submissions, released)
    write_report(pairs, build / "similarity.html")
    lines = [[s, a, line] for (s, a), line in sorted(review_lines(pairs).items())]
    tmp = lines_file.with_name(lines_file.name + ".tmp")
    tmp.write_text(json.dumps({"digest": digest, "lines": lines}, indent=1), encoding="utf-8")
    os.replace(tmp, lines_file)
    return True


def stored_lines(build: Path) -> dict[tuple[str, str], str]:
    """The review lines of the last comparison (refresh), by (student, assignment)."""
    try:
        data = json.loads((build / LINES_FILE).read_text(encoding="utf-8"))
        return {(s, a): line for s, a, line in data["lines"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
