"""`make lab`: the student's JupyterLab, on working copies under build/lab/.

Usage (from the tools env): python ci/lab.py [--prepare-only] [JUPYTER LAB ARGS ...]
(LAB_FRESH=1 replaces the working copies with fresh ones from the repository.)

The tools env holds nbgrader for the grader, and its extensions would show students an
instructor's "Nbgrader" menu, a Create Assignment sidebar and a Validate button. They are
switched off in a config dir of the lab's own (build/lab/.jupyter/config), never uninstalled, with
JupyterLab's own `labextension disable` for the front end; the server side, whose
`--user` disable does not honour JUPYTER_CONFIG_DIR, by a jupyter_server_config.json there.
The lab opens copies of the chapter notebooks (build/lab/notebooks) and of the released
assignments (build/lab/release, from `make release`), so autosave never touches a tracked
file. JupyterLab's news and update pop-ups are off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Overridable so that the browser test runs `make lab` in a temp dir (tests/tools/test_lab.py).
LAB = Path(os.environ.get("LAB_DIR") or ROOT / "build" / "lab")
RELEASE = Path(os.environ.get("LAB_RELEASE") or ROOT / "build" / "release")
# Hidden (a leading dot) so that the lab's file browser shows only the work.
CONFIG = LAB / ".jupyter" / "config"
SETTINGS = LAB / ".jupyter" / "settings"
NBGRADER_SERVER = ("formgrader", "validate_assignment", "assignment_list", "course_list")


def copy_in(source: Path, target: Path, fresh: bool) -> None:
    """Copy `source` (a folder) to `target` unless it is there already (or `fresh`)."""
    if not source.is_dir():
        return
    if fresh and target.exists():
        shutil.rmtree(target)
    if not target.exists():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


def configure(jupyter: Path) -> dict[str, str]:
    """The environment of the student's lab; writes its config dir once."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(CONFIG),
           "JUPYTERLAB_SETTINGS_DIR": str(SETTINGS),
           "JUPYTERLAB_WORKSPACES_DIR": str(LAB / ".jupyter" / "workspaces")}
    page_config = CONFIG / "labconfig" / "page_config.json"
    if not page_config.exists():
        subprocess.run([str(jupyter), "labextension", "disable", "--level=user",
                        "@jupyter/nbgrader"], env=env, check=True, capture_output=True)
    server = {"ServerApp": {"jpserver_extensions": {
        f"nbgrader.server_extensions.{name}": False for name in NBGRADER_SERVER}}}
    (CONFIG / "jupyter_server_config.json").write_text(json.dumps(server, indent=2) + "\n")
    news = SETTINGS / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}) + "\n")
    return env


def prepare(fresh: bool = False) -> dict[str, str]:
    copy_in(ROOT / "notebooks", LAB / "notebooks", fresh)
    copy_in(RELEASE, LAB / "release", fresh)
    return configure(Path(sys.executable).with_name("jupyter"))


def command(args: list[str]) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", f"--ServerApp.root_dir={LAB}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.news_url=None"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI images often run as root
    return cmd + args


def main(argv: list[str]) -> int:
    prepare_only = "--prepare-only" in argv
    args = [a for a in argv if a != "--prepare-only"]
    env = prepare(fresh=os.environ.get("LAB_FRESH", "") not in ("", "0"))
    print(f"lab: working copies in {LAB}/ (LAB_FRESH=1 for fresh ones)", flush=True)
    if prepare_only:
        return 0
    os.execve(command(args)[0], command(args), env)  # the lab replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
