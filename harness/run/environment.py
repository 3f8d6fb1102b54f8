"""What a run's manifest says about where and with what it ran."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Packages whose versions can change answers, speed or scoring.
TRACKED_PACKAGES = (
    "vqa-harness",
    "av",
    "numpy",
    "torch",
    "transformers",
    "accelerate",
    "fal-client",
    "httpx",
    "datasets",
    "huggingface-hub",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_state(path: Path | None = None) -> dict[str, Any] | None:
    """The commit of the harness's own source tree, and whether it had local changes."""
    where = path or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def environment() -> dict[str, Any]:
    return {"packages": package_versions(), "git": git_state(), "host": host_info()}
