"""`make book`: the chapter as one page, the four frameworks in synced tabs -> build/book/.

Usage (from the tools env): python ci/book.py [--jobs N] [--build DIR] [--notebooks DIR]
(--build and --notebooks default to build/ and notebooks/; the benchmark points them elsewhere)

1. Reuse or execute. Each notebook's executed copy in build/notebooks/ (written by
   `make run-all`, ci/run_all.py) is reused when the key it recorded still holds: same code
   cells, same packages in its kernel's env, same d2l_shim. Otherwise it runs again, through
   run_all. Markdown is not in the key: a prose edit re-renders without executing.
2. Glue (what the tools lack, see book/tabbed_notebooks.py): one page notebook,
   build/book-src/index.ipynb, with the committed notebooks' prose and the executed
   notebooks' outputs, one tab set per heading of the shared skeleton. Written only when it
   changed, so Sphinx's own incremental build has nothing to redo on a no-change rebuild.
3. Sphinx (myst-nb, sphinx-design, sphinx-book-theme; book/conf.py) renders build/book/.

Prints what it executed and what it reused; exits 1 if a notebook failed (the page is still
built, from what ran) and 2 when the notebooks' skeletons differ.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (ci/ is not a package)

ROOT = run_all.ROOT
CONF = ROOT / "book"
COLAB_RESULT = "test-colab.json"  # in build/, written by ci/colab.py
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
LABELS = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "mxnet": "MXNet", "jax": "JAX"}
NAMES = {"torch": "torch", "tensorflow": "TensorFlow", "tensorflow-cpu": "TensorFlow",
         "keras": "Keras", "mxnet": "MXNet", "numpy": "numpy", "jax": "JAX", "flax": "Flax"}
MXNET_LOCAL = ("Colab: local only. MXNet 1.9.1 installs only on Python ≤ 3.11 with "
               "numpy < 1.24, and Colab runs Python 3.13: run it with `make lab`.")
BADGE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\(([^)]*)\)\s*$", re.M)
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


class BookError(Exception):
    """A problem with the notebooks that the author must fix; the message says how."""


def stale_notebooks(paths: list[Path], build: Path) -> tuple[list[Path], dict[Path, str]]:
    """(notebooks to execute, {reused notebook: when it ran})."""
    shim = run_all.shim_digest()

    def check(path: Path):
        nb = json.loads(path.read_text(encoding="utf-8"))
        executed = build / "notebooks" / path.name
        if not executed.is_file():
            return path, None
        try:
            env = run_all.kernel_env(nb["metadata"]["kernelspec"]["name"])
            run = json.loads(executed.read_text(encoding="utf-8"))["metadata"]["d2l_run"]
        except Exception:  # no kernel, or not run by run_all: run it (run_all reports failures)
            return path, None
        if run.get("status") == "passed" and run.get("key") == run_all.run_key(nb, env, shim):
            return path, run["executed_at"]
        return path, None

    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        found = dict(pool.map(check, paths))
    return [p for p, when in found.items() if when is None], \
        {p: when for p, when in found.items() if when}


def sections(nb) -> list[tuple[str, list]]:
    """[(H2 heading, cells)], the cells before the first H2 under ''."""
    out: list[tuple[str, list]] = [("", [])]
    for cell in nb.cells:
        first = cell.source.split("\n", 1)[0] if cell.cell_type == "markdown" else ""
        m = HEADING.match(first)
        if m and len(m.group(1)) == 2:
            out.append((m.group(2).strip(), []))
        out[-1][1].append(cell)
    return out


def merged(source, executed) -> object:
    """The committed notebook's cells with the executed notebook's outputs, code cell by code
    cell (the reuse key guarantees the code cells are the same)."""
    nb = copy.deepcopy(source)
    ran = [c for c in executed.cells if c.cell_type == "code"]
    mine = [c for c in nb.cells if c.cell_type == "code"]
    for cell, done in zip(mine, ran, strict=False):
        if cell.source == done.source:
            cell.outputs, cell.execution_count = done.outputs, done.execution_count
    nb.metadata["d2l_run"] = executed.metadata.get("d2l_run", {})
    return nb


def prose(text: str, drop_heading: bool) -> str:
    """A markdown cell for inside a tab: its section heading gone (the tab set has it), the
    Colab badge gone (an image from outside the site), sub-headings as rubrics (a heading
    would open a section, which cannot live inside a tab)."""
    lines = text.split("\n")
    if drop_heading and lines and HEADING.match(lines[0]):
        lines = lines[1:]
    out = []
    for line in BADGE.sub("", "\n".join(lines)).split("\n"):
        m = HEADING.match(line)
        out.append(f"```{{rubric}} {m.group(2)}\n```" if m else line)
    return "\n".join(out).strip()


def colab_line(fw: str, build: Path) -> str:
    if fw == "mxnet":
        return "not on Colab"
    try:
        result = json.loads((build / COLAB_RESULT).read_text())
    except (OSError, ValueError):
        return "Colab's stack (`make test-colab`): not run"
    mine = result.get("frameworks", {}).get(fw, {})
    verdict = "passed" if mine.get("failed") == 0 and mine.get("passed") else "FAILED"
    return (f"Colab's stack (`make test-colab`, Python {result.get('python')}): {verdict} on "
            f"{result.get('date', '?')[:10]}")


def verified(fw: str, nb, colab_url: str | None, build: Path) -> str:
    run = nb.metadata.get("d2l_run", {})
    versions = ", ".join(f"{NAMES.get(k, k)} {v}" for k, v in run.get("versions", {}).items())
    status = "" if run.get("status") == "passed" else f" (**{run.get('status')}**)"
    links = (f"[Open in Colab]({colab_url})" if colab_url and fw != "mxnet" else MXNET_LOCAL)
    return (f":::{{container}} book-verified\n**Verified** {run.get('executed_at', '?')[:10]}"
            f"{status} with Python {run.get('python')}, {versions} · {colab_line(fw, build)}\n\n"
            f"{links} · {{download}}`Download the notebook <notebooks/lazy-init-{fw}.ipynb>`"
            "\n:::")


def page(notebooks: dict[str, object], build: Path) -> object:
    """The page notebook: per heading a tab set of slots, then each framework's cells."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    split = {fw: sections(nb) for fw, nb in notebooks.items()}
    skeleton = [title for title, _ in next(iter(split.values()))]
    for fw, secs in split.items():
        if [t for t, _ in secs] != skeleton:
            raise BookError(f"lazy-init-{fw}.ipynb's ## headings differ from the others': every "
                            "notebook of the set must have the same skeleton "
                            "(tests/tools/test_notebook_structure.py)")
    cells = []
    for k, title in enumerate(skeleton):
        tabs = "\n".join(f":::{{tab-item}} {LABELS[fw]}\n:sync: {fw}\n\n"
                         f"```{{book-slot}} {fw}-{k}\n```\n:::\n" for fw in notebooks)
        head = ("# Lazy Initialization\n\nOne chapter, four frameworks: choose yours in any "
                "tab and every tab on the page follows.\n\n" if k == 0 else f"## {title}\n\n")
        cells.append(new_markdown_cell(f"{head}::::{{tab-set}}\n:sync-group: framework\n\n"
                                       f"{tabs}::::", id=f"tabs-{k}"))
        for fw, nb in notebooks.items():
            cells.append(new_markdown_cell(f"```{{book-group}} {fw}-{k}\n```", id=f"{fw}-{k}"))
            secs = split[fw][k][1]
            if k == 0:
                badge = BADGE.search(secs[0].source) if secs else None
                cells.append(new_markdown_cell(verified(fw, nb, badge and badge.group(1), build),
                                               id=f"{fw}-verified"))
            for i, cell in enumerate(secs):
                cid = f"{fw}-{k}-{i}"
                if cell.cell_type == "markdown":
                    text = prose(cell.source, drop_heading=i == 0)
                    if text:
                        cells.append(new_markdown_cell(text, id=cid))
                    continue
                new = new_code_cell(cell.source, id=cid, outputs=cell.outputs,
                                    execution_count=cell.execution_count,
                                    metadata=copy.deepcopy(cell.metadata))
                # myst-nb takes an image's width and height from the output's metadata, its
                # alt text only from the cell's: move what draw_cascade said there.
                alts = [o.metadata["image/png"]["alt"] for o in cell.outputs
                        if o.get("metadata", {}).get("image/png", {}).get("alt")]
                if alts:
                    new.metadata.setdefault("mystnb", {})["image"] = {"alt": alts[0]}
                cells.append(new)
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def sphinx(src: Path, site: Path) -> int:
    from sphinx.cmd.build import build_main

    return build_main(["-b", "html", "-q", "-c", str(CONF), "-d", str(src / ".doctrees"),
                       str(src), str(site)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--build", type=Path, default=ROOT / "build")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    args = parser.parse_args(argv)
    start = time.monotonic()
    build, src, site = args.build.resolve(), args.build.resolve() / "book-src", \
        args.build.resolve() / "book"
    paths = [args.notebooks / f"lazy-init-{fw}.ipynb" for fw in FRAMEWORKS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"book: missing notebook(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    stale, reused = stale_notebooks(paths, build)
    for path, when in reused.items():
        print(f"book: reused   {path.name} (executed {when}; code and env unchanged)")
    failed = False
    if stale:
        print(f"book: executing {', '.join(p.name for p in stale)} (new, changed code or "
              "env, or failed last time)", flush=True)
        failed = run_all.main(["--jobs", str(args.jobs), "--out", str(build),
                               *map(str, stale)]) != 0
    # Nothing changed since the last build (sources, executed notebooks, the Colab result,
    # this builder and book/): the site stands as it is. It also spares importing nbformat
    # and Sphinx, which take seconds here.
    inputs = hashlib.sha256()
    for f in [*paths, *(build / "notebooks" / p.name for p in paths), build / COLAB_RESULT,
              Path(__file__), Path(run_all.__file__), *sorted(CONF.rglob("*.*"))]:
        inputs.update(str(f).encode() + b"\0" + (f.read_bytes() if f.is_file() else b""))
    stamp = src / ".inputs"
    if not stale and stamp.is_file() and stamp.read_text() == inputs.hexdigest() \
            and (site / "index.html").is_file():
        print(f"book: executed 0, reused {len(reused)}; page unchanged, site up to date; "
              f"{time.monotonic() - start:.1f} s. Open {shown(site)}/index.html")
        return 0
    import nbformat

    notebooks = {}
    for path in paths:
        fw = path.stem.removeprefix("lazy-init-")
        notebooks[fw] = merged(nbformat.read(path, as_version=4),
                               nbformat.read(build / "notebooks" / path.name, as_version=4))
        write_if_changed(src / "notebooks" / path.name, path.read_bytes())
    try:
        text = nbformat.writes(page(notebooks, build)) + "\n"
    except BookError as e:
        print(f"book: {e}", file=sys.stderr)
        return 2
    changed = write_if_changed(src / "index.ipynb", text.encode())
    rc = sphinx(src, site)
    if rc == 0 and not failed:
        stamp.write_text(inputs.hexdigest())
    print(f"book: executed {len(stale)}, reused {len(reused)}; page "
          f"{'re-rendered' if changed else 'unchanged'}; {time.monotonic() - start:.1f} s. "
          f"Open {shown(site)}/index.html (from disk, or any static server)")
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())
