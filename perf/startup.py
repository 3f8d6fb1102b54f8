"""Start-up time of `vqa-harness --help` and `vqa-harness gate` against `python -c pass`.

Each command runs in a fresh interpreter, the three taken in turn in every
repeat so that they share the machine's state (page cache, CPU frequency); the
median of the repeats is reported, and its ratio to the bare interpreter's.
`gate` checks a small finished run against its own summary, as CI does after a
replay: it reads the run directory and imports no backend or benchmark.
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
# Start-up is interpreter start plus imports: at most this much over a bare interpreter.
TARGET_OVER_PYTHON_S = 0.5


def measure(*, quick: bool = False) -> Section:
    repeats = 5 if quick else 21
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = _finished_run(Path(scratch))
        commands = {
            "python -c pass": ["-c", "pass"],
            "vqa-harness --help": ["-m", "harness", "--help"],
            "vqa-harness gate": [
                *("-m", "harness", "gate", str(run_dir)),
                *("--baseline", str(run_dir / "summary.json")),
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, args in commands.items():
                times[name].append(_time(args))
    python = statistics.median(times["python -c pass"])
    rows = []
    for name, walls in times.items():
        median = statistics.median(walls)
        row: dict[str, Any] = {
            "name": name,
            "median_s": round(median, 4),
            "min_s": round(min(walls), 4),
            "ratio": round(median / python, 2),
        }
        if name != "python -c pass":
            row["target"] = f"<= python + {TARGET_OVER_PYTHON_S:g} s"
            row["met"] = median - python <= TARGET_OVER_PYTHON_S
        rows.append(row)
    return Section(
        key="startup",
        title="Start-up of the command line",
        note=(
            f"Wall time of each command in a fresh interpreter (`{Path(sys.executable).name}`),"
            f" the three in turn, median of {repeats}; ratio to `python -c pass`. `gate` reads"
            f" a finished {SAMPLES}-sample run and its summary. Neither imports a backend or"
            " dataset library (tests/test_imports.py)."
        ),
        columns=[
            Column("command", "name"),
            Column("median", "median_s", "{:.3f} s"),
            Column("fastest", "min_s", "{:.3f} s"),
            Column("x python", "ratio", "{:.1f}"),
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


def _finished_run(scratch: Path) -> Path:
    """A reported run of the instant backend: its directory, with summary.json."""
    if "instant" not in backends.names():
        backends.register(InstantBackend)
    if Questions.name not in benchmarks.names():
        benchmarks.register(Questions)
    options = {"videos": ["clip.mp4"], "per_video": 3, "count": SAMPLES}
    spec = RunSpec(InstantBackend.name, Questions.name, benchmark_options=options)
    ready = start_run(spec, scratch)
    asyncio.run(execute_run(ready, RunSettings(), show_progress=False))
    write_report(ready.store.path)
    return ready.store.path


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv).rows)
