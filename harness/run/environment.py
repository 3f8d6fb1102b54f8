"""What a run's manifest says about where and with what it ran."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any

# Packages whose versions can change answers, speed or scoring.
PROJECT = "vqa-harness"


def package_versions() -> dict[str, str]:
    """This project's version and those of its run-time dependencies (the `local` extra's
    too, not the tools of `test` and `lint`) that are installed, as its metadata names them."""
    names = [PROJECT]
    for requirement in requires(PROJECT) or []:
        match = _NAME.match(requirement)
        if any(f'extra == "{tools}"' in requirement for tools in ("test", "lint")):
            continue
        if match and match.group(0) not in names:
            names.append(match.group(0))
    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# The directory holding the `harness` package: the top of the checkout when it is one.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def git_state(root: Path = SOURCE_ROOT) -> dict[str, Any] | None:
    """The commit of the harness's own source tree, and whether it had local changes;
    None unless `root` is the top of a git checkout (an installed copy is not, even
    inside some other repository)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        top, commit = git("rev-parse", "--show-toplevel", "HEAD").splitlines()
        if Path(top).resolve() != root.resolve():
            return None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError, ValueError):
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
