"""Put cells of four notebooks into framework tabs: the glue myst-nb and sphinx-design lack.

myst-nb renders a notebook's cells only at the top level of a page: a code cell inside a
sphinx-design tab-item is dropped (MyST-NB issue 723; executablebooks/meta issue 143), and
its `glue` pastes single outputs, not cells with their source. So ci/book.py writes one
notebook whose cells come one framework after the other, each run opened by a
``{book-group} KEY`` marker, and each heading's tab set holds a ``{book-slot} KEY`` per tab.
After parsing, this transform moves every group's nodes (cells as myst-nb rendered them)
into its slot. The tabs, their sync and their memory stay sphinx-design's.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.util.docutils import SphinxDirective


class book_slot(nodes.Element):
    """Where a group goes (inside a tab-item)."""


class book_group(nodes.Element):
    """Where a group starts; it runs to the next marker or the end of the section."""


class Slot(SphinxDirective):
    required_arguments = 1

    def run(self):
        return [book_slot(key=self.arguments[0])]


class Group(SphinxDirective):
    required_arguments = 1

    def run(self):
        return [book_group(key=self.arguments[0])]


class FillSlots(SphinxTransform):
    default_priority = 200  # before docutils propagates targets and sphinx-design lays out tabs

    def apply(self):
        slots = {n["key"]: n for n in self.document.findall(book_slot)}
        for marker in list(self.document.findall(book_group)):
            parent = marker.parent
            start = parent.index(marker) + 1
            end = start
            while end < len(parent) and not isinstance(
                    parent[end], (book_group, nodes.section)):
                end += 1
            moved = parent.children[start:end]
            del parent.children[start - 1:end]
            slot = slots.pop(marker["key"], None)
            if slot is None:
                raise ValueError(f"book: group {marker['key']!r} has no slot in a tab")
            for node in moved:
                node.parent = None
            slot.replace_self(moved or [nodes.paragraph(text="(nothing in this section)")])
        if slots:
            raise ValueError(f"book: tabs with no content: {sorted(slots)}")


def setup(app):
    app.add_node(book_slot)
    app.add_node(book_group)
    app.add_directive("book-slot", Slot)
    app.add_directive("book-group", Group)
    app.add_transform(FillSlots)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
