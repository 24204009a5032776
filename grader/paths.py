"""Where things are: the checkout, the default course, the gradebook, and paths as the
person at the terminal would type them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COURSE = ROOT / "exercises"


def show(path: Path) -> str:
    """A path as the person at the terminal would type it: relative to the repository."""
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def gradebook_url(build: Path) -> str:
    return f"sqlite:///{build / 'gradebook.db'}"
