"""Start or resume a run: build backend and benchmark by name, keep the manifest, execute.

The manifest is written before the first sample and completed at the end of
each session (a start or a resume), so a crashed or interrupted run still says
what it was; a session ends by naming its cold start, the first sample it
answered. A resume rebuilds the backend and benchmark from the manifest, so it
cannot silently continue with other settings, and a selection (`--category`,
`--sample`, `--limit`) and a shard stay what they were.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import backends
import benchmarks
from harness.protocols import Backend, Benchmark, HttpMode, SpeaksHttp
from harness.registry import RegistryError
from harness.run.environment import environment, options_of
from harness.run.recording import Recording
from harness.run.runner import Progress, RunSettings, execute
from harness.run.selection import select
from harness.run.shards import Shard
from harness.run.store import RunStore
from harness.scoring.judge import Judge, JudgeError
from harness.types import Sample


@dataclass(frozen=True)
class RunSpec:
    """What is evaluated: everything here can change the results."""

    backend: str
    benchmark: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    sample: int | None = None
    seed: int = 0
    limit: int | None = None
    shard: Shard | None = None
    judge: dict[str, Any] | None = None
    """An LLM judge for open-ended answers: `Judge` fields (`base_url`, `model`, ...)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """The spec as a manifest stores it (`asdict`); older manifests lack later fields."""
        shard = data.get("shard")
        return cls(
            **{
                **data,
                "categories": tuple(data.get("categories", ())),
                "shard": Shard(**shard) if shard else None,
            }
        )


@dataclass
class ReadyRun:
    store: RunStore
    backend: Backend
    benchmark: Benchmark
    samples: list[Sample]
    judge: Judge | None = None


def new_run_id(spec: RunSpec, name: str | None = None) -> str:
    """`name` (default: time, benchmark, backend, random suffix), ending in the shard if any."""
    if not name:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{stamp}-{spec.benchmark}-{spec.backend}-{uuid.uuid4().hex[:6]}"
    return f"{name}-{spec.shard.label}" if spec.shard else name


def start_run(
    spec: RunSpec, out: Path, run_id: str | None = None, recording: Recording | None = None
) -> ReadyRun:
    """Build backend and benchmark, select samples, and create the run directory."""
    recording = recording or Recording("live")
    benchmark, backend = _build(spec, recording.mode)
    judge = _judge(spec, recording)
    samples = _select(benchmark, spec)
    manifest = {
        "run_id": new_run_id(spec, run_id),
        "created_at": time.time(),
        "status": "created",
        "mode": recording.mode,
        "http": recording.to_dict(),
        "spec": asdict(spec)
        | {
            "backend_options": options_of(backend),
            "benchmark_options": options_of(benchmark),
        },
        "backend": {"name": spec.backend, "describe": backend.describe()},
        "benchmark": {"name": benchmark.name, "version": benchmark.version},
        "judge": judge.describe() if judge else None,
        "samples_planned": len(samples),
        "environment": environment(),
        "command": sys.argv,
        "sessions": [],
    }
    store = RunStore.create(out / manifest["run_id"], manifest)
    return ReadyRun(store, backend, benchmark, samples, judge)


def resume_run(run_dir: Path) -> ReadyRun:
    """Reopen a run directory and rebuild exactly what it was run with."""
    store = RunStore.open(run_dir)
    manifest = store.read_manifest()
    try:
        spec = RunSpec.from_dict(manifest["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"{store.manifest_path} has no usable run spec ({exc})") from None
    benchmark, backend = _build(spec, "live")
    if benchmark.version != manifest["benchmark"]["version"]:
        raise RegistryError(
            f"benchmark {spec.benchmark!r} is now version {benchmark.version}, "
            f"but {run_dir} was run with version {manifest['benchmark']['version']}; "
            "start a new run"
        )
    judge = _judge(spec, Recording("live"))
    return ReadyRun(store, backend, benchmark, _select(benchmark, spec), judge)


async def execute_run(
    ready: ReadyRun, settings: RunSettings, *, show_progress: bool = True
) -> Progress:
    """Execute one session of the run, recording it in the manifest however it ends."""
    store = ready.store
    session: dict[str, Any] = {
        "started_at": time.time(),
        "settings": asdict(settings),
        "status": "running",
    }
    _update_manifest(store, session, status="running")
    status = "failed"
    try:
        progress = await execute(
            ready.backend,
            ready.benchmark,
            ready.samples,
            store,
            settings,
            show_progress=show_progress,
            judge=ready.judge,
        )
        status = "completed" if progress.ok + progress.failed == progress.total else "partial"
        return progress
    except asyncio.CancelledError:
        status = "interrupted"
        raise
    finally:
        session.update(_session_outcome(store, session["started_at"]))
        session["finished_at"] = time.time()
        session["status"] = status
        _update_manifest(store, session, status=status)
        await ready.backend.aclose()


def _judge(spec: RunSpec, recording: Recording) -> Judge | None:
    """The run's judge; live and recorded runs check its key before any sample."""
    if spec.judge is None:
        return None
    try:
        if recording.mode == "replay":
            return Judge(**spec.judge)
        return Judge.from_env(**spec.judge)
    except JudgeError as exc:
        raise RegistryError(f"judge: {exc}") from None


def _build(spec: RunSpec, mode: HttpMode) -> tuple[Benchmark, Backend]:
    """Benchmark and backend by name; the backend told the run's HTTP `mode`."""
    backend_cls = backends.registry.get(spec.backend)
    reason = backend_cls.unavailable_reason(mode)
    if reason:
        raise RegistryError(f"backend {spec.backend!r} cannot run here: {reason}")
    benchmark = benchmarks.create(spec.benchmark, **spec.benchmark_options)
    backend = backends.create(spec.backend, **spec.backend_options)
    if isinstance(backend, SpeaksHttp):
        backend.use_http_mode(mode)
    return benchmark, backend


def _select(benchmark: Benchmark, spec: RunSpec) -> list[Sample]:
    samples = select(
        benchmark.samples(),
        categories=spec.categories,
        sample=spec.sample,
        seed=spec.seed,
        limit=spec.limit,
    )
    return spec.shard.select(samples) if spec.shard else samples


def _session_outcome(store: RunStore, since: float) -> dict[str, Any]:
    """How many records the session wrote, and its cold start: the first it answered.

    Records are appended as they complete, so the first OK one in the log is the
    first answer; it is named by sample id and start time (`summary.cold_starts`).
    """
    written = [r for r in store.read_records().records if r.started_at >= since]
    first = next((r for r in written if r.ok), None)
    cold = {"sample_id": first.sample_id, "started_at": first.started_at} if first else None
    return {"written": len(written), "cold_start": cold}


def _update_manifest(store: RunStore, session: dict[str, Any], *, status: str) -> None:
    manifest = store.read_manifest()
    sessions = manifest.setdefault("sessions", [])
    if sessions and sessions[-1]["started_at"] == session["started_at"]:
        sessions[-1] = session
    else:
        sessions.append(session)
    manifest["status"] = status
    if status != "running":
        manifest["finished_at"] = session.get("finished_at")
    store.write_manifest(manifest)
