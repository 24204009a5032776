# Run inside a grading sandbox by grader/sandbox/probe.py, with the framework env's Python:
# the standard library only (nothing of the grader is visible there). Prints a JSON list of
# what does not hold.
import json
import os
import socket
import sys

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
