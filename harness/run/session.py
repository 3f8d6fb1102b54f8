"""Start or resume a run: build backend and benchmark by name, keep the manifest, execute.

The manifest is written before the first sample and completed at the end of
each session (a start or a resume), so a crashed or interrupted run still says
what it was; a session ends by naming its cold start, the first sample it
answered. A resume rebuilds the backend and benchmark from the manifest, so it
cannot silently continue with other settings or on another commit of its data
(`DescribesData`), and a selection (`--category`, `--sample`, `--limit`) and a
shard stay what they were. A backend that keeps files of its own in the run
directory (`KeepsRunFiles`: a journal of its requests) is told where it is, and
whether it resumes, before any sample.

Both check everything cheap before anything costly: options, keys, the output
directory, the data and the selection are settled before the backend is built,
since building it may load a model for minutes; each problem is one line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness.errors import HarnessError
from harness.plugins import backends, benchmarks
from harness.protocols import (
    Backend,
    Benchmark,
    DescribesData,
    HttpMode,
    KeepsRunFiles,
    ReadsSecrets,
    SpeaksHttp,
)
from harness.registry import RegistryError, options_of
from harness.run.directory import Run
from harness.run.environment import environment
from harness.run.manifest import (
    MANIFEST_SCHEMA,
    BackendInfo,
    BenchmarkInfo,
    ColdStart,
    Manifest,
    Session,
    data_change,
)
from harness.run.presets import get_preset
from harness.run.recording import Recording
from harness.run.runner import Progress, SystemicFailure, execute
from harness.run.selection import select
from harness.run.settings import RunSettings
from harness.run.spec import RunSpec, new_run_id
from harness.run.store import RecordLog, RunDirError, RunLock, RunStore
from harness.scoring.judge import Judge, JudgeError
from harness.secrets import check_secret
from harness.types import Sample


@dataclass
class ReadyRun:
    store: RunStore
    backend: Backend
    benchmark: Benchmark
    samples: list[Sample]
    judge: Judge | None = None


def start_run(
    spec: RunSpec, out: Path, run_id: str | None = None, recording: Recording | None = None
) -> ReadyRun:
    """Check everything cheap, select samples, build the backend, create the run directory.

    The order is the cost: the backend's availability and keys, its options (the
    device, a model directory: `Registry.check`, loading nothing), the benchmark's
    options (a question file is read here), the judge's key, the output directory;
    then the commit of the benchmark's data (one short request, which says first when
    the Hub cannot be reached or read), its data and the selection (`--category` ...);
    only then is the backend built, which may load a model for minutes (a Hub model is
    first asked for in one short request too).
    """
    recording = recording or Recording("live")
    run_id = new_run_id(spec, run_id)
    _check_backend(spec, recording.mode)
    benchmark = benchmarks.create(spec.benchmark, **spec.benchmark_options)
    judge = _judge(spec, recording)
    RunStore.check_new(out / run_id)
    data = _data_revisions(benchmark)
    samples = _select(benchmark, spec)
    backend = _backend(spec, recording.mode)
    manifest = Manifest(
        run_id=run_id,
        created_at=time.time(),
        mode=recording.mode,
        http=recording.to_dict(),
        spec=replace(
            spec,
            backend_options=options_of(backend),
            benchmark_options=options_of(benchmark),
        ),
        backend=BackendInfo(spec.backend, backend.describe()),
        benchmark=BenchmarkInfo(benchmark.name, benchmark.version),
        judge=judge.describe() if judge else None,
        samples_planned=len(samples),
        data=data,
        preset=get_preset(spec.preset).to_dict() if spec.preset else None,
        environment=environment(),
        command=sys.argv,
    )
    store = RunStore.create(out / manifest.run_id, manifest)
    _use_run_directory(backend, store, resuming=False)
    ids = [sample.id for sample in samples]
    recording.keep_selection(benchmark.name, manifest.spec.benchmark_options, ids, sys.argv)
    return ReadyRun(store, backend, benchmark, samples, judge)


def resume_run(run_dir: Path) -> ReadyRun:
    """Reopen a run directory and rebuild exactly what it was run with (cheap checks
    first, the backend last, as `start_run`); the directory is locked against a second
    writer (`RunStore.open`), and a lock held elsewhere is found before the backend is built."""
    manifest = Run.open(run_dir).manifest
    RunLock.check(run_dir)
    spec = manifest.spec
    _check_backend(spec, "live")
    benchmark = benchmarks.create(spec.benchmark, **spec.benchmark_options)
    if benchmark.version != manifest.benchmark.version:
        raise RegistryError(
            f"benchmark {spec.benchmark!r} is now version {benchmark.version}, "
            f"but {run_dir} was run with version {manifest.benchmark.version}; "
            "start a new run"
        )
    judge = _judge(spec, Recording("live"))
    change = data_change(manifest.data, _data_revisions(benchmark))
    if change:
        repo, recorded, now = change
        raise RunDirError(
            f"dataset {repo} is now at commit {now}, but {run_dir} was run on {recorded}; "
            "start a new run"
        )
    samples = _select(benchmark, spec)
    backend = _backend(spec, "live")
    store = RunStore.open(run_dir)
    _use_run_directory(backend, store, resuming=True)
    return ReadyRun(store, backend, benchmark, samples, judge)


async def execute_run(
    ready: ReadyRun, settings: RunSettings, *, show_progress: bool = True
) -> Progress:
    """Execute one session of the run, recording it in the manifest however it ends
    (`stopped`, with the reason, after a `SystemicFailure`; `failed`, with the error,
    after another `HarnessError`, such as a full disk); then release the run
    directory's lock."""
    store = ready.store
    session = Session(started_at=time.time(), settings=asdict(settings))
    _update_manifest(store, session)
    store.reserve()  # so that a full disk cannot keep the manifest from saying how it ended
    status, reason = "failed", None
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
    except SystemicFailure as exc:
        status, reason = "stopped", str(exc)
        raise
    except HarnessError as exc:  # a run directory that cannot be written (a full disk)
        reason = str(exc)
        raise
    finally:
        run = Run.open(store.path)
        ended = replace(_session_outcome(run.log, session, status), reason=reason)
        store.release()
        _update_manifest(store, ended, run.manifest)
        store.unlock()
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


def _check_backend(spec: RunSpec, mode: HttpMode) -> None:
    """The backend can run here in `mode` (its libraries, its keys, none with stray
    whitespace: `harness.secrets`), and its options are good (`Registry.check`: names,
    types, and its own cheap checks), building nothing."""
    cls = backends.get(spec.backend)
    reason = cls.unavailable_reason(mode)
    if reason:
        raise RegistryError(f"backend {spec.backend!r} cannot run here: {reason}")
    if isinstance(cls, ReadsSecrets):  # before anything is sent: no key in what is written
        for variable in cls.secret_variables(spec.backend_options):
            check_secret(variable, os.environ.get(variable))
    backends.check(spec.backend, **spec.backend_options)


def _backend(spec: RunSpec, mode: HttpMode) -> Backend:
    """The backend, built (a model loads here), and told the run's HTTP `mode`."""
    backend = backends.create(spec.backend, **spec.backend_options)
    if isinstance(backend, SpeaksHttp):
        backend.use_http_mode(mode)
    return backend


def _use_run_directory(backend: Backend, store: RunStore, *, resuming: bool) -> None:
    """Tell a backend that keeps files of its own (`KeepsRunFiles`) where the run is; the
    directory is unlocked again if that fails."""
    if isinstance(backend, KeepsRunFiles):
        try:
            backend.use_run_directory(store.path, resuming)
        except BaseException:
            store.unlock()
            raise


def _data_revisions(benchmark: Benchmark) -> dict[str, str | None] | None:
    return benchmark.data_revisions() if isinstance(benchmark, DescribesData) else None


def _select(benchmark: Benchmark, spec: RunSpec) -> list[Sample]:
    samples = select(
        benchmark.samples(),
        categories=spec.categories,
        sample=spec.sample,
        seed=spec.seed,
        limit=spec.limit,
    )
    return spec.shard.select(samples) if spec.shard else samples


def _session_outcome(log: RecordLog, session: Session, status: str) -> Session:
    """The session ended: how many records it wrote, and its cold start, the first it answered.

    Records are appended as they complete, so the first OK one in the log is the
    first answer; it is named by sample id and start time (`summary.cold_starts`).
    """
    written = [r for r in log.records if r.started_at >= session.started_at]
    first = next((r for r in written if r.ok), None)
    return replace(
        session,
        status=status,
        finished_at=time.time(),
        written=len(written),
        cold_start=ColdStart(first.sample_id, first.started_at) if first else None,
    )


def _update_manifest(store: RunStore, session: Session, manifest: Manifest | None = None) -> None:
    """Put `session` in the manifest, in place of its earlier state; the run takes its status."""
    manifest = manifest or Run.open(store.path).manifest
    sessions = manifest.sessions
    if sessions and sessions[-1].started_at == session.started_at:
        sessions = sessions[:-1]
    finished = manifest.finished_at if session.status == "running" else session.finished_at
    store.write_manifest(
        replace(
            manifest,
            schema=MANIFEST_SCHEMA,  # rewritten in this version's format
            sessions=(*sessions, session),
            status=session.status,
            finished_at=finished,
        )
    )
