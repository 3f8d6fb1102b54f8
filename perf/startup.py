"""Start-up time of the command line against `python -c pass`, measured side by side.

Each command runs in a fresh interpreter, all of them taken in turn in every repeat
so that they share the machine's state (page cache, CPU frequency); the median of
the repeats is reported, with its ratio to, and difference from, the bare
interpreter's median of the same repeats. `report`, `gate` and `compare` read small
finished runs, as CI does after a replay: they import no backend or benchmark.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results import Column, Section
from workloads import InstantBackend, Questions

from harness.plugins import backends, benchmarks
from harness.report.markdown import write_report
from harness.run.session import RunSpec, execute_run, start_run
from harness.run.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 30
PYTHON = "python -c pass"
# A command that only reads run directories answers within this, interpreter included.
TARGET_S = 0.35


def measure(*, quick: bool = False) -> Section:
    """The start-up section: every command's median wall time against the target."""
    repeats = 5 if quick else 21
    with tempfile.TemporaryDirectory() as scratch:
        first, second = (_finished_run(Path(scratch), name) for name in ("a", "b"))
        harness = ("-m", "harness")
        commands = {
            PYTHON: ["-c", "pass"],
            "vqa-harness --version": [*harness, "--version"],
            "vqa-harness --help": [*harness, "--help"],
            "vqa-harness report": [*harness, "report", str(first)],
            "vqa-harness gate": [
                *(*harness, "gate", str(first)),
                *("--baseline", str(first / "summary.json")),
            ],
            "vqa-harness compare": [
                *(*harness, "compare", str(first), str(second)),
                *("--html", str(Path(scratch) / "compare.html")),
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, args in commands.items():
                times[name].append(_time(args))
    python = statistics.median(times[PYTHON])
    rows = []
    for name, walls in times.items():
        median = statistics.median(walls)
        row: dict[str, Any] = {
            "name": name,
            "median_s": round(median, 4),
            "min_s": round(min(walls), 4),
            "ratio": round(median / python, 2),
            "over_python_s": round(median - python, 4),
        }
        if name != PYTHON:
            row["target"] = f"<= {TARGET_S:g} s"
            row["met"] = median <= TARGET_S
        rows.append(row)
    return Section(
        key="startup",
        title="Start-up of the command line",
        note=(
            f"Wall time of each command in a fresh interpreter (`{Path(sys.executable).name}"
            f" -m harness`), all in turn, median of {repeats}; ratio to, and time over, "
            f"`{PYTHON}` in the same repeats. Target: at most {TARGET_S:g} s, interpreter "
            f"included. `report`, `gate` and `compare` read finished {SAMPLES}-sample runs; "
            "none of these imports a backend or dataset library (tests/test_imports.py)."
        ),
        columns=[
            Column("command", "name"),
            Column("median", "median_s", "{:.3f} s"),
            Column("fastest", "min_s", "{:.3f} s"),
            Column("x python", "ratio", "{:.1f}"),
            Column("over python", "over_python_s", "{:+.3f} s"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=rows,
    )


def _time(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def _finished_run(scratch: Path, run_id: str) -> Path:
    """A reported run of the instant backend: its directory, with summary.json."""
    if "instant" not in backends.names():
        backends.register(InstantBackend)
    if Questions.name not in benchmarks.names():
        benchmarks.register(Questions)
    options = {"videos": ["clip.mp4"], "per_video": 3, "count": SAMPLES}
    spec = RunSpec(InstantBackend.name, Questions.name, benchmark_options=options)
    ready = start_run(spec, scratch, run_id)
    asyncio.run(execute_run(ready, RunSettings(), show_progress=False))
    write_report(ready.store.path)
    return ready.store.path


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv).rows)
