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

One module per job: bwrap (finding a bubblewrap that will do), launcher (the kernel's argv:
staging, limits, dropping root, exec bwrap; `python -m grader.sandbox launch SPEC.json --
KERNEL_ARGV...`, nothing a person types), uids (a uid per job slot, and the sweep after a
job) and probe (one sandbox started and checked from inside and out before grading).
"""


from grader.sandbox.bwrap import Bwrap, SandboxUnavailable, find_bwrap, venv_of
from grader.sandbox.launcher import HOME, INSIDE_UID, bwrap_args, kernel_argv, launch_spec
from grader.sandbox.probe import probe
from grader.sandbox.uids import UidSlots, processes_of, sweep

__all__ = ["HOME", "INSIDE_UID", "Bwrap", "SandboxUnavailable", "UidSlots", "bwrap_args",
           "find_bwrap", "kernel_argv", "launch_spec", "probe", "processes_of", "sweep",
           "venv_of"]
