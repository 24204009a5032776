"""Before grading: one sandbox started and checked from inside (probe_inside.py, which runs
in it) and from outside (who owns what it wrote)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from grader.model import Limits
from grader.sandbox.launcher import kernel_argv, launch_spec

# The script runs in the sandbox, where nothing of the grader is visible: sent as source.
PROBE = (Path(__file__).parent / "probe_inside.py").read_text()


def probe(bwrap: str, python: str, *, exposed: list[str], uid: int | None, limits: Limits,
          env: dict, hidden: list[str], scratch: Path, timeout: int) -> list[str]:
    """Start `python` in the sandbox and check it from inside and out: [] if all holds."""
    import socket

    ipc, stage = scratch / "ipc", scratch / "stage"
    ipc.mkdir(mode=0o700)
    stage.mkdir()
    spec = launch_spec(bwrap, exposed=exposed, ipc_dir=str(ipc), stage_dir=str(stage),
                       uid=uid, limits=limits, env=env)
    spec_file = scratch / "launch.json"
    spec_file.write_text(json.dumps(spec))
    spec_file.chmod(0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    args = json.dumps({"hidden": hidden, "exposed": exposed, "ipc": str(ipc),
                       "port": listener.getsockname()[1]})
    argv = kernel_argv(str(spec_file), [python, "-c", PROBE, args], as_root=uid is not None)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        return [f"the sandbox did not answer within {timeout} s"]
    finally:
        listener.close()
    try:
        problems = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return [f"the sandbox did not start: {why[:300]}"]
    owner = ipc / "probe-owner"
    if not owner.exists():
        problems.append("the sandbox cannot write its socket directory")
    elif owner.stat().st_uid == 0:
        problems.append("the sandboxed process is root on the host")
    return problems
