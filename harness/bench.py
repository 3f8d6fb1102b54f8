"""`vqa-harness bench`: every available backend over one benchmark, then side by side.

A backend that is not registered or cannot run here is listed with the reason,
never silently dropped, so a comparison always says what it left out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import backends
import benchmarks
from harness.report import percent, seconds, table, write_report
from harness.runner import RunSettings
from harness.runs import RunSpec, prepare_new, run_prepared
from harness.store import RunStore
from harness.summary import summarize

# The backends a comparison is about: the hosted endpoint and the local model.
DEFAULT_BACKENDS = ("fal", "local")


@dataclass(frozen=True)
class BenchEntry:
    backend: str
    run_dir: Path | None = None
    skipped: str | None = None


def availability(name: str) -> str | None:
    """Why backend `name` cannot run here, or None when it can."""
    if name not in backends.registry.names():
        return "not registered: no installed package provides it yet"
    return backends.registry.get(name).unavailable_reason()


def run_bench(
    names: list[str], benchmark: str, out: Path, settings: RunSettings, limit: int | None = None
) -> str:
    """Run each available backend; return (and write to `out/bench.md`) the side-by-side report."""
    suite = benchmarks.create(benchmark)
    started = time.perf_counter()
    count = sum(1 for _ in suite.samples())
    print(
        f"benchmark {benchmark} v{suite.version}: {count} samples ready "
        f"in {time.perf_counter() - started:.1f} s"
    )
    entries = []
    for name in names:
        reason = availability(name)
        if reason:
            print(f"backend {name}: skipped ({reason})")
            entries.append(BenchEntry(name, skipped=reason))
            continue
        prepared = prepare_new(RunSpec(name, benchmark, limit=limit), out)
        print(f"backend {name}: running into {prepared.store.path}")
        asyncio.run(run_prepared(prepared, settings))
        write_report(prepared.store.path)
        entries.append(BenchEntry(name, run_dir=prepared.store.path))
    markdown = side_by_side(entries, benchmark)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(markdown)
    return markdown


def side_by_side(entries: list[BenchEntry], benchmark: str) -> str:
    lines = [f"# Bench: {benchmark}", ""]
    skipped = [e for e in entries if e.skipped]
    ran = [e for e in entries if e.run_dir]
    if skipped:
        lines += ["Not compared:", *(f"- `{e.backend}`: {e.skipped}" for e in skipped), ""]
    if not ran:
        lines.append("No backend could run here, so there is nothing to compare yet.")
        return "\n".join(lines) + "\n"
    rows = []
    for entry in ran:
        store = RunStore.open(entry.run_dir)
        summary = summarize(store.read_records(), store.read_manifest())
        total = summary["latency"].get("total")
        rows.append(
            [
                entry.backend,
                percent(summary["accuracy"]["value"]),
                summary["samples"]["failed"],
                seconds(total["p50"]) if total else "n/a",
                seconds(total["p90"]) if total else "n/a",
                str(entry.run_dir),
            ]
        )
    lines += table(["backend", "accuracy", "failed", "total p50 (s)", "total p90 (s)", "run"], rows)
    return "\n".join(lines) + "\n"
