"""`nox -s perf`: performance measured side by side in one process, written to files.

Writes `perf/results.json` (every number, the machine, the versions) and
`perf/results.md` (the same as tables). Each measurement states its target;
a missed target is reported, not hidden, and makes the command exit 1 after
everything is written. `--quick` is a short smoke run for development (the
10 s clips, fewer remote samples), written to a temporary directory unless
`--out` says otherwise; its results say so.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clips
import pipeline
import remote
import replay
import video_sampling
from results import write

from harness.run.environment import environment

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """The host, its CPUs and the versions that matter here."""
    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "av": importlib.metadata.version("av"),
        "decord": importlib.metadata.version("decord"),
        "packages": environment()["packages"],
    }


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
    args = parser.parse_args(argv)
    try:
        import decord  # noqa: F401
    except ImportError:
        print("perf needs decord (the reference recipe's decoder): pip install decord==0.6.0")
        return 2
    header = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
    }
    sections = [
        *video_sampling.measure(args.clips, quick=args.quick),
        *pipeline.measure(args.clips, quick=args.quick),
        remote.measure(quick=args.quick),
        replay.measure(quick=args.quick),
    ]
    out = args.out or (
        Path(tempfile.gettempdir()) / "vqa-harness-perf-quick" if args.quick else ROOT / "perf"
    )
    print(write(out, header, sections))
    print(f"results written to {out}")
    return 0 if all(s.met for s in sections) else 1


if __name__ == "__main__":
    sys.exit(main())
