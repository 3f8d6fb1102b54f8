"""`vqa-harness bench`: every available backend over one benchmark, then side by side.

The report ends with the runs compared with the first one that ran (as
`vqa-harness compare` does), and the HTML report written next to them. A
backend that is not registered or cannot run here is listed with the reason,
never silently dropped. A backend that cannot run for real here but has a
stand-in (`harness.protocols.HasBenchStandIn`: a committed recording to replay,
or with `demo`, a demo model) runs that instead. The report opens with each run's
provenance (`harness.analysis.provenance`) and why it ran as it did: the numbers
of a replay or a stand-in are a pipeline check, not a measurement of the backend.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from harness.analysis.compare import compare_runs
from harness.analysis.provenance import PIPELINE_CHECK
from harness.analysis.summary import summarize_run
from harness.files import visible, write_bytes_atomic
from harness.plugins import backends, benchmarks
from harness.protocols import HasBenchStandIn, StandIn
from harness.report.compare_tables import render_markdown
from harness.report.html import default_html_path, write_html_report
from harness.report.markdown import percent, provenance_line, seconds, table, write_report
from harness.run.recording import Recording, http_recording
from harness.run.runner import SystemicFailure
from harness.run.session import execute_run, start_run
from harness.run.settings import RunSettings
from harness.run.spec import RunSpec


@dataclass(frozen=True)
class BenchEntry:
    backend: str
    run_dir: Path | None = None
    skipped: str | None = None
    note: str | None = None


def plan(name: str, benchmark: str, demo_dir: Path | None) -> StandIn | str | None:
    """How the bench runs backend `name`: None for real, a `StandIn`, or why it cannot."""
    cls = backends.find(name)
    if cls is None:
        return "not registered: no installed package provides it yet"
    if isinstance(cls, HasBenchStandIn):
        return cls.bench_standin(benchmark, demo_dir)
    return cls.unavailable_reason()


def run_bench(
    names: list[str],
    benchmark: str,
    out: Path,
    concurrency: int | None = None,
    limit: int | None = None,
    demo: bool = False,
) -> str:
    """Run each backend it can; return (and write to `out/bench.md`) the side-by-side report.

    With `demo`, a backend whose real model cannot run here may run its demo model,
    built under `out/demo-model`.
    """
    suite = benchmarks.create(benchmark)
    started = time.perf_counter()
    count = sum(1 for _ in suite.samples())
    elapsed = time.perf_counter() - started
    print(f"benchmark {benchmark} v{suite.version}: {count} samples ready in {elapsed:.1f} s")
    demo_dir = out / "demo-model" if demo else None
    entries = [_bench_one(name, benchmark, out, concurrency, limit, demo_dir) for name in names]
    markdown = side_by_side(entries, benchmark)
    markdown += comparison([entry.run_dir for entry in entries if entry.run_dir])
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "bench.md", visible(markdown).encode())
    return markdown


def _bench_one(
    name: str,
    benchmark: str,
    out: Path,
    concurrency: int | None,
    limit: int | None,
    demo_dir: Path | None,
) -> BenchEntry:
    how = plan(name, benchmark, demo_dir)
    if isinstance(how, str):
        print(f"backend {name}: skipped ({how})")
        return BenchEntry(name, skipped=how)
    spec = RunSpec(name, benchmark, how.options if how else {}, limit=limit)
    replay = how.replay if how else None
    try:
        with http_recording("replay" if replay else "live", replay) as recording:
            run_dir = _run(spec, out, concurrency, recording)
    except SystemicFailure as exc:  # its run directory keeps the records, but is not compared
        print(f"backend {name}: {exc}")
        return BenchEntry(name, skipped=str(exc))
    return BenchEntry(name, run_dir=run_dir, note=how.note if how else None)


def _run(spec: RunSpec, out: Path, concurrency: int | None, recording: Recording) -> Path:
    ready = start_run(spec, out, recording=recording)
    print(f"backend {spec.backend}: {recording.mode} run into {ready.store.path}")
    settings = RunSettings(concurrency=concurrency or ready.backend.default_concurrency)
    asyncio.run(execute_run(ready, settings))
    write_report(ready.store.path)
    return ready.store.path


def side_by_side(entries: list[BenchEntry], benchmark: str) -> str:
    """The top of `bench.md`: what produced each run, what did not run, and a row per run."""
    lines = [f"# Bench: {benchmark}", ""]
    skipped = [e for e in entries if e.skipped]
    ran = [(e, summarize_run(e.run_dir)) for e in entries if e.run_dir is not None]
    if ran:
        lines += [
            "**Provenance:**",
            *(
                f"- `{e.backend}`: {provenance_line(s)}{f'; {e.note}' if e.note else ''}"
                for e, s in ran
            ),
            "",
        ]
    if any(not (s.provenance or {}).get("measurement") for _, s in ran):
        lines += [f"**Not live:** the numbers of a run that is not live are {PIPELINE_CHECK}.", ""]
    if skipped:
        lines += ["Not compared:", *(f"- `{e.backend}`: {e.skipped}" for e in skipped), ""]
    if not ran:
        lines.append("No backend could run here, so there is nothing to compare yet.")
        return "\n".join(lines) + "\n"
    rows = []
    for entry, summary in ran:
        total = summary.latency.get("total")
        rows.append(
            [
                entry.backend,
                summary.mode,
                percent(summary.accuracy["value"]),
                summary.samples["failed"],
                seconds(total["p50"]) if total else "n/a",
                seconds(total["p90"]) if total else "n/a",
                str(entry.run_dir),
            ]
        )
    header = ["backend", "mode", "accuracy", "failed", "total p50 (s)", "total p90 (s)", "run"]
    lines += table(header, rows)
    return "\n".join(lines) + "\n"


def comparison(run_dirs: list[Path]) -> str:
    """The runs compared with the first (Markdown), ending with where the HTML report is."""
    if len(run_dirs) < 2:
        return "\nOnly one backend ran: there is nothing to compare it with.\n" if run_dirs else ""
    compared = compare_runs(run_dirs)
    html = write_html_report(compared, default_html_path(run_dirs[0]))
    return f"\n{render_markdown(compared, depth=2)}\nHTML report: {html}\n"
