"""`make lab` for real: JupyterLab from the tools env, driven by Debian's Chromium.

The test runs `make lab` as a student does, with LAB_ARGS for 127.0.0.1, a free port and a
token, and LAB_DIR / LAB_RELEASE pointing at temp dirs (so nothing in the repository or in
~/.jupyter is touched, which `git status` confirms). It checks that the lab shows no nbgrader
menu, button or pop-up and lists the released assignment, opens make lab's working copy of
one chapter notebook by URL, checks that JupyterLab picked the notebook's own kernel, runs
every cell with
Run > Run All Cells, waits until every code cell has an execution count, and fails on any
error output (no cell of the chapter may raise). It leaves a screenshot in
build/lab-<framework>.png and always shuts JupyterLab and its kernels down.

The notebook is notebooks/lazy-init-<fw>.ipynb for the first framework (pytorch first)
whose kernel is registered; a tiny stand-in with the same kernel while that notebook does
not exist yet. The browser is the system's /usr/bin/chromium, installed by
ci/install_browser.sh (never a Playwright browser download); the test skips, with the
installer's reason, only when that browser is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
CHROMIUM = Path("/usr/bin/chromium")
INSTALLER = ROOT / "ci" / "install_browser.sh"
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")  # the first one registered is used
# Flags the closed network needs: without the background-networking ones Chromium's own
# connections (updates, field trials, sync) are refused and slow every page down.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Every wait is bounded (seconds).
SERVER_START_TIMEOUT = 90
PAGE_TIMEOUT = 120  # notebook loaded, kernel started and idle
RUN_TIMEOUT = 900  # all cells executed (the chapter notebooks run in well under a minute)
SHUTDOWN_TIMEOUT = 20

# Error outputs are rendered like stderr streams (same mime type, no class of their own);
# what tells them apart in the DOM is IPython's traceback text. The saved notebook, checked
# too, says it exactly (output_type "error").
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception): ",
                       re.MULTILINE)

JS_CELLS = f"""() => Array.from(
    document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')
  ).map(cell => ({{
    code: cell.classList.contains('jp-CodeCell'),
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {{}}).textContent || '',
    outputs: cell.querySelectorAll('.jp-OutputArea-output').length,
    stderr: Array.from(cell.querySelectorAll('{STDERR}')).map(e => e.textContent),
  }}))"""
JS_TOOLBAR_ITEM = """name => {
  const item = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) '
    + `.jp-NotebookPanel-toolbar [data-jp-item-name=${name}]`);
  return item ? item.textContent.trim() : null;
}"""


def ensure_browser() -> str:
    """Run the project's installer when the browser is missing; return its last line."""
    if CHROMIUM.exists():
        return ""
    proc = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True,
                          timeout=900)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[-1] if lines else f"{INSTALLER.name} printed nothing"


def pick_notebook(tmp: Path) -> tuple[str, Path, str]:
    """(framework, notebook copy in tmp, origin) for the first framework with a kernel."""
    ksm = KernelSpecManager()
    for fw in FRAMEWORKS:
        try:
            spec = ksm.get_kernel_spec(f"d2l-{fw}")
        except NoSuchKernel:
            continue
        if not Path(spec.argv[0]).exists():
            continue
        real = ROOT / "notebooks" / f"lazy-init-{fw}.ipynb"
        copy = tmp / real.name
        if real.exists():
            shutil.copyfile(real, copy)
            return fw, copy, f"notebooks/{real.name}"
        nb = new_notebook(cells=[
            new_markdown_cell(f"# Stand-in for lazy-init-{fw}.ipynb (not written yet)"),
            new_code_cell("import sys\nprint(sys.executable)"),
            new_code_cell("x = 6 * 7\nx"),
        ], metadata={"kernelspec": {"name": f"d2l-{fw}", "display_name": spec.display_name,
                                    "language": "python"}})
        nbformat.write(nb, copy)
        return fw, copy, "a stand-in notebook (the real one does not exist yet)"
    pytest.fail("no d2l-<framework> kernel is registered in the tools env; run `make setup`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Lab:
    """A JupyterLab server in its own process group, on loopback, in temp dirs."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.base = f"http://127.0.0.1:{self.port}"
        self.root = tmp / "root"
        self.release = tmp / "release"
        self.runtime = tmp / "runtime"
        settings = self.root / ".jupyter" / "settings"  # make lab's own settings dir
        self.runtime.mkdir()
        # Every cell in the DOM at once (make lab turns the news pop-up off itself).
        for plugin, values in {
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        }.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        self.env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime)}
        self.log_path = tmp / "lab.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """`make lab` as a student types it, with LAB_ARGS for the port and token, in a temp
        LAB_DIR (the working copies) and with a stand-in release (LAB_RELEASE)."""
        args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={self.port} "
                f"--ServerApp.port_retries=0 --IdentityProvider.token={self.token}")
        cmd = ["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"]
        self.env.update(LAB_DIR=str(self.root), LAB_RELEASE=str(self.release))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, cwd=ROOT,
                                         start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log()}")
            try:
                json.loads(get(f"{self.base}/api/status?token={self.token}", timeout=2))
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"jupyter lab did not answer in {SERVER_START_TIMEOUT}s:\n"
                           f"{self.log()}")

    def log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut the server (and with it its kernels) down; kill whatever is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # the graceful way: the server shuts its kernels down itself
                req = urllib.request.Request(f"{self.base}/api/shutdown?token={self.token}",
                                             method="POST")
                urllib.request.urlopen(req, timeout=5).close()
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # Kernels run in sessions of their own (jupyter_client), so the group kill misses
        # them: find the ones this server started by the temp runtime dir in their argv.
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT
        while (pids := self.kernel_pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def kernel_pids(self) -> list[int]:
        marker = f"{self.runtime}/".encode()  # the kernels' connection files live there
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids


@pytest.fixture(scope="module")
def browser():
    reason = ensure_browser()
    if not CHROMIUM.exists():
        pytest.skip(f"no browser for the JupyterLab test: {reason or 'chromium missing'}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                              timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def cells_ran(page) -> bool:
    """True once Run All is over: no cell queued or running and the kernel idle."""
    cells = page.evaluate(JS_CELLS)
    status = page.evaluate(JS_TOOLBAR_ITEM, "executionProgress") or ""
    return "Idle" in status and not any("*" in c["prompt"] for c in cells if c["code"])


def test_lab_opens_notebook_on_its_kernel_and_runs_all_cells(browser, tmp_path):
    fw, notebook, origin = pick_notebook(tmp_path)
    kernel = nbformat.read(notebook, as_version=4).metadata["kernelspec"]["name"]
    spec_file = Path(KernelSpecManager().find_kernel_specs()[kernel]) / "kernel.json"
    display_name = json.loads(spec_file.read_text())["display_name"]
    lab = Lab(tmp_path)
    assignment = lab.release / "lazy-init" / f"lazy-init-{fw}.ipynb"
    assignment.parent.mkdir(parents=True)
    assignment.write_bytes(notebook.read_bytes())
    served = lab.root / "notebooks" / notebook.name  # make lab's working copy
    git_status = repository_status()
    shot = BUILD / f"lab-{fw}.png"
    BUILD.mkdir(exist_ok=True)
    page = None
    t0 = time.monotonic()
    try:
        lab.start()
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        page.set_default_timeout(PAGE_TIMEOUT * 1000)
        page.goto(f"{lab.base}/lab/tree/notebooks/{notebook.name}?token={lab.token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")

        # A student's lab: no instructor's menu, the released assignment in the file browser.
        menus = page.locator("li.lm-MenuBar-item").all_inner_texts()
        assert "Run" in menus and not any("nbgrader" in m.lower() for m in menus), menus
        assert not page.locator(".Toastify__toast").count(), "a pop-up covers the notebook"
        assert not page.locator("[data-jp-item-name*='nbgrader' i], .nbgrader-validate"
                                ).count(), "an nbgrader toolbar item is shown"
        listing = json.loads(get(f"{lab.base}/api/contents/release/lazy-init?token={lab.token}"))
        assert assignment.name in [item["name"] for item in listing["content"]], listing

        # The notebook's own kernel, started without asking (no "Select Kernel" dialog).
        page.wait_for_function(
            f"""name => {{
                 const item = {JS_TOOLBAR_ITEM};
                 return (item('kernelName') || '').includes(name)
                        && (item('executionProgress') || '').includes('Idle');
               }}""", arg=display_name)
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        assert not dialogs, f"JupyterLab asked instead of starting the kernel: {dialogs}"
        shown = page.evaluate(JS_TOOLBAR_ITEM, "kernelName")
        assert shown == display_name, f"{origin} opened on kernel {shown!r}, not {display_name!r}"
        t_open = time.monotonic()

        # Run > Run All Cells, the way a reader does it.
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click(".lm-Menu .lm-Menu-item[data-command='runmenu:run-all']")
        page.wait_for_function(  # Run All has begun: some code cell is queued or done
            f"() => ({JS_CELLS})().some(c => c.code && /[*0-9]/.test(c.prompt))")
        deadline = time.monotonic() + RUN_TIMEOUT
        while not cells_ran(page):
            assert time.monotonic() < deadline, f"cells still running after {RUN_TIMEOUT}s"
            time.sleep(1)
        t_run = time.monotonic()

        # Save (File > Save Notebook) so the outputs can be checked exactly, on disk.
        before = served.stat().st_mtime_ns
        page.click("li.lm-MenuBar-item:has-text('File')")
        page.click(".lm-Menu .lm-Menu-item[data-command='docmanager:save']")
        page.wait_for_function(  # the notebook's tab loses its "unsaved" mark
            "() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty')")
        deadline = time.monotonic() + PAGE_TIMEOUT
        while served.stat().st_mtime_ns == before:
            assert time.monotonic() < deadline, f"File > Save did not write {served.name}"
            time.sleep(0.2)

        page.evaluate("""() => document.querySelectorAll(
            '.jp-NotebookPanel .jp-WindowedPanel-outer').forEach(e => { e.scrollTop = 0; })""")
        page.screenshot(path=str(shot))

        dom = [c for c in page.evaluate(JS_CELLS) if c["code"]]
        saved = [c for c in nbformat.read(served, as_version=4).cells if c.cell_type == "code"]
        assert len(dom) == len(saved), f"{len(dom)} code cells shown, {len(saved)} saved"
        problems = []
        for i, (shown_cell, cell) in enumerate(zip(dom, saved, strict=True), 1):
            where = f"code cell {i} ({cell.source.splitlines()[0] if cell.source else ''!r})"
            if not re.fullmatch(r"\[\d+\]:", shown_cell["prompt"].strip()):
                problems.append(f"{where} did not run (prompt {shown_cell['prompt']!r})")
            if cell.execution_count is None:
                problems.append(f"{where} has no execution count in the saved notebook")
            for out in cell.outputs:
                if out.output_type == "error":
                    problems.append(f"{where} raised {out.ename}: {out.evalue}")
            for text in shown_cell["stderr"]:
                if TRACEBACK.search(text):
                    problems.append(f"{where} shows an error:\n{text[-1500:]}")
        print(f"\nlab test: {origin} on kernel {shown!r}: {len(dom)} code cells run; "
              f"server+page+kernel {t_open - t0:.1f}s, run all {t_run - t_open:.1f}s, "
              f"total {time.monotonic() - t0:.1f}s; screenshot {shot.relative_to(BUILD.parent)}")
        assert not problems, f"{origin} in JupyterLab:\n" + "\n".join(problems)
    except BaseException:
        if page is not None:
            try:
                page.screenshot(path=str(shot))
            except Exception:  # the original failure matters more
                pass
        print(f"jupyter lab log (last lines):\n{lab.log()}")
        raise
    finally:
        if page is not None:
            page.close()
        lab.stop()
    assert not lab.kernel_pids(), "kernels left running after JupyterLab shut down"
    assert repository_status() == git_status, "the lab changed files of the repository"


def repository_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_make_lab_prepares_copies_and_a_config_without_nbgrader(tmp_path):
    """ci/lab.py --prepare-only, as make lab runs it: copies kept until LAB_FRESH=1, and a
    config dir in which JupyterLab itself reports nbgrader's front end disabled."""
    lab_dir, release = tmp_path / "lab", tmp_path / "release"
    (release / "ps1").mkdir(parents=True)
    (release / "ps1" / "a.ipynb").write_text("{}")
    env = {**os.environ, "LAB_DIR": str(lab_dir), "LAB_RELEASE": str(release)}
    tools = Path(ROOT / ".venvs" / "tools" / "bin")

    def prepare(**extra):
        subprocess.run([str(tools / "python"), str(ROOT / "ci" / "lab.py"), "--prepare-only"],
                       env={**env, **extra}, check=True, capture_output=True, timeout=120)

    prepare()
    copy = lab_dir / "notebooks" / "lazy-init-pytorch.ipynb"
    assert copy.read_bytes() == (ROOT / "notebooks" / copy.name).read_bytes()
    assert (lab_dir / "release" / "ps1" / "a.ipynb").exists()
    copy.write_text("a student's work")
    prepare()
    assert copy.read_text() == "a student's work"  # kept: autosave's changes are the student's
    prepare(LAB_FRESH="1")
    assert copy.read_bytes() == (ROOT / "notebooks" / copy.name).read_bytes()
    config = {**env, "JUPYTER_CONFIG_DIR": str(lab_dir / ".jupyter" / "config")}
    listed = subprocess.run([str(tools / "jupyter"), "labextension", "list"], env=config,
                            capture_output=True, text=True, timeout=120)
    line = next(x for x in (listed.stdout + listed.stderr).splitlines() if "nbgrader" in x)
    assert "disabled" in line, line
    server = json.loads((lab_dir / ".jupyter" / "config" / "jupyter_server_config.json")
                        .read_text())["ServerApp"]["jpserver_extensions"]
    assert server and not any(server.values()), server
