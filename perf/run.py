"""`nox -s perf`: performance measured side by side in one process, written to files.

Writes `perf/results.json` (every number, the machine, the versions) and
`perf/results.md` (the same as tables). Each measurement states its target;
a missed target is reported, not hidden, and makes the command exit 1 after
everything is written. `--quick` is a short smoke run for development (the
10 s clips, fewer remote samples), written to a temporary directory unless
`--out` says otherwise; its results say so. `--only SECTION` runs one section
(e.g. `startup`), also into a temporary directory unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import clips
import openai_server
import pipeline
import remote
import replay
import startup
import video_sampling
from results import Section, write

from harness.run.environment import environment

ROOT = Path(__file__).resolve().parents[1]
SECTIONS: dict[str, Callable[[Path, bool], list[Section]]] = {
    "video_sampling": lambda clip_dir, quick: video_sampling.measure(clip_dir, quick=quick),
    "pipeline": lambda clip_dir, quick: pipeline.measure(clip_dir, quick=quick),
    "remote": lambda clip_dir, quick: [
        remote.measure(quick=quick),
        remote.measure_account_limit(quick=quick),
        remote.measure_webhooks(quick=quick),
    ],
    "replay": lambda clip_dir, quick: [replay.measure(quick=quick)],
    "openai": lambda clip_dir, quick: [openai_server.measure(clip_dir, quick=quick)],
    "startup": lambda clip_dir, quick: [startup.measure(quick=quick)],
}


def machine() -> dict[str, Any]:
    """The host, its CPUs and the versions that matter here."""
    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "av": importlib.metadata.version("av"),
        "decord": _version("decord") or "not installed",
        "packages": environment()["packages"],
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help="directory for results (default: perf/; --quick: a temp dir)"
    )
    parser.add_argument(
        "--clips", type=Path, default=clips.default_directory(), help="generated video cache"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", choices=SECTIONS, help="run this section alone")
    args = parser.parse_args(argv)
    chosen = [args.only] if args.only else list(SECTIONS)
    if {"video_sampling", "pipeline"} & set(chosen) and _version("decord") is None:
        print("perf needs decord (the reference recipe's decoder): pip install decord==0.6.0")
        return 2
    header = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": ("quick" if args.quick else "full") + (f", {args.only} only" if args.only else ""),
        "machine": machine(),
    }
    sections = [s for name in chosen for s in SECTIONS[name](args.clips, args.quick)]
    partial = args.quick or args.only
    out = args.out or (
        Path(tempfile.gettempdir()) / "vqa-harness-perf-quick" if partial else ROOT / "perf"
    )
    print(write(out, header, sections))
    print(f"results written to {out}")
    return 0 if all(s.met for s in sections) else 1


if __name__ == "__main__":
    sys.exit(main())
