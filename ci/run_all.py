"""Execute notebooks headlessly, each in its own kernel, several at once.

Usage (from the tools env): python ci/run_all.py [--jobs N] [--timeout S] [NOTEBOOK ...]

Each notebook runs in the kernel its metadata names (d2l-pytorch, d2l-jax, ...) in a worker
process of its own: never one nbconvert call over mixed kernels, which would run them all on
the first one's kernel. nbclient does the executing; what it lacks, and this file adds, is
running a set of notebooks in parallel, classifying how each one failed, and the report.

Each executed notebook records where it came from in its metadata (`d2l_run`): when it
ran, the kernel's Python and framework versions, and a key over what its outputs depend on
(its code cells, every package in the kernel's env, d2l_shim's source). `make book`
(ci/book.py) reads both: it shows the versions, and reuses a notebook whose key still holds.

Writes the executed notebooks to <out>/notebooks/, an HTML rendering of each to <out>/html/,
each kernel's own stderr to <out>/logs/, and the summary to <out>/run-all.json. A failing
cell (one tagged `raises-exception` included: the tag is ignored here, as VS Code and Colab
ignore it, so a notebook passes only if a student's Run All reaches its last cell), a
timeout, a dead kernel, a kernel that is not installed or an unreadable notebook
fails only that notebook; the others still run. Exits 1 if any notebook failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The packages a reader is told a notebook ran with, by kernel; the key covers all of them.
SHOWN_PACKAGES = {
    "d2l-pytorch": ("torch",),
    "d2l-tensorflow": ("tensorflow", "tensorflow-cpu", "keras"),
    "d2l-mxnet": ("mxnet", "numpy"),
    "d2l-jax": ("jax", "flax"),
}
# Run with the kernel's own interpreter: its Python and every distribution in its env,
# read from the metadata alone (no framework is imported, so it takes a fraction of a second).
PROBE = """import importlib.metadata as m, json, re, sys
print(json.dumps({"python": sys.version.split()[0], "packages": dict(sorted(
    (re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(), d.version)
    for d in m.distributions() if d.metadata["Name"]))}))"""


def kernel_env(kernel: str) -> dict:
    """{"python": version, "packages": {name: version}} of the env the kernel runs in."""
    from jupyter_client.kernelspec import KernelSpecManager

    python = KernelSpecManager().get_kernel_spec(kernel).argv[0]
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def shim_digest() -> str:
    """d2l_shim is installed editable: its source is part of every notebook's env."""
    h = hashlib.sha256()
    for f in sorted((ROOT / "d2l_shim").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def run_key(nb, env: dict, shim: str) -> str:
    """What a notebook's outputs depend on. Markdown is left out: editing prose changes no
    output, so a page built from the notebook re-renders without executing it again."""
    # Plain JSON or nbformat's reading of it (sources as lists of lines or one string): the
    # book checks keys reading JSON alone, as nbformat takes seconds to import here.
    code = [("".join(c["source"]), c.get("metadata", {}).get("tags", []))
            for c in nb["cells"] if c["cell_type"] == "code"]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    blob = json.dumps([kernel, code, env, shim], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def execute(path: str, out: str, timeout: int) -> dict:
    """Run one notebook; return its result row. Runs in a worker process."""
    import nbformat
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbconvert import HTMLExporter

    nb_path = Path(path)
    row = {"notebook": nb_path.name, "path": str(nb_path), "kernel": None, "status": "passed",
           "seconds": 0.0, "cell": None, "error": None}
    start = time.monotonic()
    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception as e:  # not JSON, not a notebook: nothing to execute
        row.update(status="unreadable", error=f"{type(e).__name__}: {e}".splitlines()[0])
        return row
    row["kernel"] = kernel = nb.metadata.get("kernelspec", {}).get("name")
    if not kernel:
        row.update(status="no kernel", error="the notebook's metadata names no kernelspec")
        return row

    try:
        env = kernel_env(kernel)
    except Exception:  # no such kernel or a broken env: nbclient below says which
        env = {"python": None, "packages": {}}
    shown = [p for p in SHOWN_PACKAGES.get(kernel, ()) if p in env["packages"]]
    row.update(executed_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               python=env["python"], versions={p: env["packages"][p] for p in shown})
    key = run_key(nb, env, shim_digest())  # before executing: nbclient adds the outputs

    # nbclient lets a cell tagged raises-exception fail; a student's frontend may not.
    tagged = set()
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if "raises-exception" in tags:
            tagged.add(index)
            cell.metadata["tags"] = [t for t in tags if t != "raises-exception"]
    current = {"index": None}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(
        nb, kernel_name=kernel, timeout=timeout, startup_timeout=120, allow_errors=False,
        resources={"metadata": {"path": str(nb_path.parent.resolve())}},
        on_cell_start=on_cell_start,
    )
    # The kernel process's own stderr (start-up warnings, a crash's last words) goes to a log
    # per notebook rather than into the runner's report.
    log_path = Path(out) / "logs" / nb_path.with_suffix(".log").name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_path.open("w") as kernel_log:
            client.execute(stdout=kernel_log, stderr=kernel_log)
    except NoSuchKernel:
        row.update(status="no such kernel",
                   error=f"kernel {kernel!r} is not installed: run `make setup`")
    except CellTimeoutError:
        row.update(status="timeout", error=f"a cell ran longer than {timeout} s")
    except DeadKernelError as e:
        row.update(status="kernel died", error=(str(e).splitlines() or ["Kernel died"])[0]
                   + f" (kernel log: {log_path})")
    except CellExecutionError as e:
        row.update(status="error", error=f"{e.ename}: {e.evalue}".splitlines()[0][:300])
        if current["index"] in tagged:
            row["error"] += (" (the cell's raises-exception tag is ignored, as VS Code and "
                             "Colab ignore it: show the error with d2l.expect_error)")
    except Exception as e:  # anything else nbclient or the kernel raises: report, don't crash
        row.update(status="error", error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
    row["seconds"] = round(time.monotonic() - start, 1)
    if row["status"] != "passed":
        row["cell"] = current["index"]
    # Write what ran, even after a failure: the partial notebook shows where it stopped.
    nb.metadata["d2l_run"] = {"key": key, **{k: row[k] for k in (
        "status", "executed_at", "python", "versions")}}
    out_dir = Path(out)
    nbformat.write(nb, out_dir / "notebooks" / nb_path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / "html" / nb_path.with_suffix(".html").name).write_text(html)
    return row


def line(row: dict) -> str:
    mark = "PASS" if row["status"] == "passed" else "FAIL"
    where = f" in cell {row['cell']}" if row["cell"] is not None else ""
    detail = f"  {row['status']}{where}: {row['error']}" if row["status"] != "passed" else ""
    return (f"{mark}  {row['notebook']:<28} {str(row['kernel']):<16} "
            f"{row['seconds']:>6.1f} s{detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute notebooks, each in its own kernel.")
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    parser.add_argument("--out", default=str(ROOT / "build"))
    args = parser.parse_args(argv)

    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        print(f"run-all: no such notebook: {', '.join(missing) or 'notebooks/*.ipynb'}. "
              "Pass paths like NOTEBOOKS=\"notebooks/lazy-init-jax.ipynb\".", file=sys.stderr)
        return 2
    out = Path(args.out)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "html").mkdir(parents=True, exist_ok=True)

    jobs = max(1, min(args.jobs, len(paths)))
    print(f"run-all: {len(paths)} notebook(s), {jobs} at a time, {args.timeout} s per cell",
          flush=True)
    start = time.monotonic()
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(execute, str(p), str(out), args.timeout): p for p in paths}
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as e:  # the worker process itself died
                p = futures[future]
                row = {"notebook": p.name, "path": str(p), "kernel": None, "status": "crashed",
                       "seconds": 0.0, "cell": None, "error": f"{type(e).__name__}: {e}"}
            rows.append(row)
            print(line(row), flush=True)
    wall = round(time.monotonic() - start, 1)

    rows.sort(key=lambda r: r["notebook"])
    failed = [r for r in rows if r["status"] != "passed"]
    print(f"\n{'notebook':<28} {'kernel':<16} {'status':<15} {'seconds':>7}  failure")
    for r in rows:
        where = f"cell {r['cell']}: " if r["cell"] is not None else ""
        print(f"{r['notebook']:<28} {str(r['kernel']):<16} {r['status']:<15} "
              f"{r['seconds']:>7.1f}  {where + (r['error'] or '') if r['error'] else ''}")
    print(f"\nrun-all: {len(rows) - len(failed)} passed, {len(failed)} failed "
          f"in {wall} s (JOBS={jobs}); executed notebooks in {out}/notebooks, "
          f"HTML in {out}/html")
    summary = {"jobs": jobs, "cell_timeout": args.timeout, "wall_seconds": wall,
               "passed": len(rows) - len(failed), "failed": len(failed), "notebooks": rows}
    (out / "run-all.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
