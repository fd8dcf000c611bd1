"""ffmpeg and ffprobe: present on PATH, and which version (the encoder's ladder depends on them)."""

from __future__ import annotations

import shutil
import subprocess

from devtools.stack.model import INSTALL_HINT, ComponentStatus

TOOLS = ("ffmpeg", "ffprobe")


def tool_status(name: str) -> ComponentStatus:
    """Run `<tool> -version` and report its version line, or how to install it."""
    path = shutil.which(name)
    if path is None:
        return ComponentStatus(name, "PATH", False, f"{name} not found: {INSTALL_HINT}")
    try:
        done = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ComponentStatus(name, path, False, f"{name} -version failed: {exc}")
    first = done.stdout.splitlines()[0] if done.stdout else ""
    # "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) ..." -> "5.1.9-0+deb12u1"
    words = first.split()
    version = words[2] if done.returncode == 0 and len(words) > 2 and words[1] == "version" else None
    if version is None:
        return ComponentStatus(name, path, False, f"{name} -version gave no version (exit {done.returncode})")
    return ComponentStatus(name, path, True, f"version {version}")


def statuses() -> list[ComponentStatus]:
    """ffmpeg's and ffprobe's status."""
    return [tool_status(name) for name in TOOLS]
