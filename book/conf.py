"""Sphinx configuration of `make book` (ci/book.py writes the page's source and runs Sphinx).

Sphinx with myst-nb (renders the notebooks' cells and outputs; never executes: ci/book.py
reuses the outputs of `make run-all`), sphinx-design (tab sets synced by a key, the choice
kept in the browser's localStorage) and sphinx-book-theme. Everything they ship is local:
no script, font or style is fetched from a CDN, so the site works opened from disk.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

project = "Lazy Initialization"
extensions = ["myst_nb", "sphinx_design", "tabbed_notebooks"]
nb_execution_mode = "off"  # outputs come from the executed notebooks, as they are
nb_ipywidgets_js = {}  # no widget manager loaded from a CDN: the notebooks have no widgets
myst_enable_extensions = ["colon_fence"]  # no dollarmath: a page with math loads MathJax from a CDN
html_theme = "sphinx_book_theme"
html_title = "Lazy Initialization"
html_static_path = ["static"]
html_css_files = ["book.css"]
html_theme_options = {
    "use_download_button": False,  # the page's source mixes four notebooks: each tab links its own
    "use_fullscreen_button": False,
    "show_toc_level": 2,
}
html_show_sourcelink = False
html_copy_source = False
exclude_patterns = ["notebooks/*"]  # the download copies, not pages
# Tracebacks hold characters the ipythontb lexer trips on; Sphinx then highlights them plainly.
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure"]
# pydata-sphinx-theme (the book theme's base) logs a console error on a page whose mode is
# unset: name it.
html_context = {"default_mode": "light"}
