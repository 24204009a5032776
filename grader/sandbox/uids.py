"""A host uid per concurrent job when the grader is root, and the sweep after each job."""

from __future__ import annotations

import fcntl
import os
import pwd
import queue
import signal
import tempfile
import time
from pathlib import Path

from grader.sandbox.bwrap import SandboxUnavailable

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
