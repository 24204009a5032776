"""The notebook that is graded: the student's answers, everything else as the course has it.

nbgrader's OverwriteCells puts back the source of a changed test cell but keeps the
student's metadata (tags such as `skip-execution` or `raises-exception`, which the executor
honours), and fails on cells it cannot place. Here the notebook is rebuilt instead:

- every read-only and test cell comes whole from the released copy, as students got it
  (source, cell type, metadata, id; hidden regions left out: they run only as checks, after
  the last cell, see grader/execute.py): edited or deleted ones are put back where they
  belong;
- a solution cell keeps only the student's source;
- a cell of the student's own keeps its source and type and loses its metadata;
- a cell carrying a grade id the course does not know, or a second copy of one it knows,
  is dropped; both are reported.
"""

from __future__ import annotations

import copy

import nbformat

from grader.model import Assignment, Status


def grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def _shape(cell) -> tuple:
    """What a student could change in a locked cell that matters when it runs."""
    meta = cell.get("metadata", {})
    nbg = {k: v for k, v in (meta.get("nbgrader") or {}).items() if k != "checksum"}
    return (cell.get("cell_type"), cell.get("source", "").strip(),
            sorted(meta.get("tags", [])), sorted(nbg.items()))


def assemble(student: nbformat.NotebookNode, course: Assignment) -> tuple[nbformat.NotebookNode,
                                                                    list[tuple[str, str]]]:
    """(the notebook to grade, [(status, detail), ...]) from a student's parsed notebook.

    From `course`: its cells as the instructor wrote them (hidden tests in), in order, and
    as students got them; its kernelspec.
    """
    source_cells = course.cells
    known = {grade_id(c): c for c in source_cells if grade_id(c)}
    order = [gid for gid in (grade_id(c) for c in source_cells) if gid]
    locked = {gid for gid, c in known.items() if c.metadata.nbgrader.get("locked")}
    out, seen, dropped, edited = [], set(), [], []
    for cell in student.cells:
        gid = grade_id(cell)
        if gid is None:
            if cell.get("cell_type") in ("code", "markdown", "raw"):
                out.append(_own(cell, f"student-{len(out)}"))
            continue
        if gid not in known:
            dropped.append(f"{gid} (not a cell of this assignment)")
            continue
        if gid in seen:
            dropped.append(f"{gid} (a second copy)")
            continue
        seen.add(gid)
        if gid in locked:
            released = course.released.get(gid, known[gid])
            if _shape(cell) != _shape(released):
                edited.append(f"{gid} (edited)")
            out.append(_fresh(released))
        else:  # a solution cell: the student's source, the course's everything else
            restored = _fresh(known[gid])
            restored.source = cell.get("source", "")
            out.append(restored)
    deleted = []
    for k, gid in enumerate(order):
        if gid in seen or gid not in locked:
            continue
        deleted.append(f"{gid} (deleted)")
        at = 0  # after the nearest earlier cell of the course that is there
        for earlier in reversed(order[:k]):
            where = next((i for i, c in enumerate(out) if grade_id(c) == earlier), None)
            if where is not None:
                at = where + 1
                break
        out.insert(at, _fresh(course.released.get(gid, known[gid])))
        seen.add(gid)
    events = []
    # in the course's order, so the detail reads like the notebook
    changes = sorted(edited + deleted, key=lambda s: order.index(s.split(" ")[0]))
    if changes:
        events.append((Status.TESTS_RESTORED, "restored test cells: " + ", ".join(changes)))
    if dropped:
        events.append((Status.CELLS_DROPPED, "dropped cells: " + ", ".join(dropped)))
    nb = nbformat.v4.new_notebook(cells=out, metadata={
        "kernelspec": course.kernelspec, "language_info": {"name": "python"}})
    return nb, events


def attempted(nb: nbformat.NotebookNode, course: Assignment) -> bool:
    """Whether an assembled notebook answers anything: an answer cell (nbgrader's solution
    cell: predictions and code) that differs from the released one, or a code cell of the
    student's own with code in it. Blank lines and trailing spaces do not count."""
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid is None:
            if cell.cell_type == "code" and cell.source.strip():
                return True
            continue
        released = course.released.get(gid)
        if released is not None and released.metadata.nbgrader.get("solution") and \
                _words(cell.source) != _words(released.source):
            return True
    return False


def _words(source: str) -> list[str]:
    return [line.rstrip() for line in source.strip().splitlines() if line.strip()]


def _fresh(cell):
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def _own(cell, cell_id: str):
    """A cell the student added: its type and source, nothing the executor would read."""
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell["cell_type"]]
    return make(source=cell.get("source", ""), id=cell_id)
