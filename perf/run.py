"""`nox -s perf`: performance measured side by side in one process, written to files.

Writes `perf/results.json` (every number, the machine, the versions) and
`perf/results.md` (the same as a table). Each measurement states its target;
a missed target is reported, not hidden, and makes the command exit 1.

Remote concurrency runs the real fal backend and runner against the protocol
emulator of the tests (`tests/fal_emulator.py`), which stands in for the hosted
service with a fixed simulated service time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from unittest.mock import patch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fal protocol emulator lives with the tests

from fal_emulator import FalEmulator  # noqa: E402

from backends.fal import FalBackend  # noqa: E402
from benchmarks.base import multiple_choice_prompt, score_multiple_choice  # noqa: E402
from harness.manifest import environment  # noqa: E402
from harness.runner import RunSettings, execute  # noqa: E402
from harness.store import RunStore  # noqa: E402
from harness.types import Sample, Score  # noqa: E402

VIDEO_URL = "https://storage.googleapis.com/falserverless/model_tests/musepose/dance.mp4"


@dataclass
class UrlQuestions:
    """`count` four-way questions about one hosted video: no upload, no decode."""

    name: ClassVar[str] = "perf-url-questions"
    version: ClassVar[str] = "1"

    count: int

    def samples(self) -> Iterator[Sample]:
        for index in range(self.count):
            yield Sample(
                id=f"perf/{index:04d}",
                video=VIDEO_URL,
                question=f"Question {index}: what happens?",
                options=("dancing", "running", "sitting", "cooking"),
                answer="A",
            )

    def prompt(self, sample: Sample) -> str:
        return multiple_choice_prompt(sample)

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)


def fal_concurrency(samples: int, service_time: float, concurrency: int) -> dict[str, Any]:
    """Wall time of a fal run over the emulator against the ideal of perfect overlap."""
    emulator = FalEmulator(reply="A", service_time=service_time)
    benchmark = UrlQuestions(samples)
    with (
        tempfile.TemporaryDirectory() as scratch,
        emulator.installed(),
        patch.dict(os.environ, FAL_KEY="emulator-key"),  # fal-client insists on a key
    ):
        backend = FalBackend(upload_cache=Path(scratch) / "uploads.json")
        store = RunStore.create(Path(scratch) / "run", {})
        started = time.perf_counter()
        progress = asyncio.run(
            execute(
                backend,
                benchmark,
                list(benchmark.samples()),
                store,
                RunSettings(concurrency=concurrency),
                show_progress=False,
            )
        )
        wall = time.perf_counter() - started
        polls = sum(emulator.polls.values())
    ideal = math.ceil(samples / concurrency) * service_time
    return {
        "name": f"fal emulator: {samples} samples, {service_time:g} s service, "
        f"concurrency {concurrency}",
        "wall_s": round(wall, 3),
        "ideal_s": ideal,
        "ratio": round(wall / ideal, 3),
        "target": "ratio <= 1.25",
        "met": wall / ideal <= 1.25 and progress.failed == 0,
        "failed_samples": progress.failed,
        "status_polls_per_sample": round(polls / samples, 2),
    }


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": environment()["packages"],
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Performance results",
        "",
        f"Measured {results['measured_at']} on {results['machine']['cpus']} CPUs "
        f"({results['machine']['cpu']}), Python {results['machine']['python']}.",
        "",
        "| measurement | measured | ideal | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for m in results["measurements"]:
        met = "yes" if m["met"] else "**no**"
        lines.append(
            f"| {m['name']} | {m['wall_s']:.2f} s | {m['ideal_s']:.2f} s | {m['ratio']:.2f}x "
            f"| {m['target']} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "perf", help="directory for results")
    args = parser.parse_args(argv)
    measurements = [fal_concurrency(samples=200, service_time=0.5, concurrency=16)]
    results = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "measurements": measurements,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0 if all(m["met"] for m in measurements) else 1


if __name__ == "__main__":
    raise SystemExit(main())
