"""The runner and run store: records, concurrency, deadlines, failures, resume, cancellation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from fakes import ScriptedBackend, TinyBenchmark

from harness.errors import UsageError
from harness.run.directory import Run
from harness.run.runner import execute
from harness.run.session import ReadyRun, RunSpec, execute_run, resume_run, start_run
from harness.run.settings import RunSettings
from harness.run.store import RunStore, read_records
from harness.types import RECORD_SCHEMA, Record, Sample


def new_run(tmp_path: Path, count: int = 8, **backend_options: str) -> ReadyRun:
    spec = RunSpec("scripted", "tiny", backend_options, {"count": count})
    return start_run(spec, tmp_path, run_id="run")


def run(ready: ReadyRun, **settings) -> None:
    asyncio.run(execute_run(ready, RunSettings(**settings), show_progress=False))


def records(ready: ReadyRun) -> list[Record]:
    return read_records(ready.store.records_path).records


def test_every_sample_gets_one_scored_record(tmp_path):
    ready = new_run(tmp_path)
    run(ready)
    written = records(ready)
    assert sorted(r.sample_id for r in written) == [f"tiny/{i:03d}" for i in range(8)]
    assert all(r.ok for r in written)
    # "The answer is A." is right exactly where the answer letter is A (samples 0 and 4).
    assert sorted(r.sample_id for r in written if r.correct) == ["tiny/000", "tiny/004"]
    first = next(r for r in written if r.sample_id == "tiny/001")
    assert first.score.prediction == "A" and first.target == "B"
    assert "A. red" in first.prompt and "D. yellow" in first.prompt
    assert first.timings["total"] >= first.timings["inference"] >= 0
    assert first.usage == {"output_tokens": 3}


def test_records_are_json_lines_with_schema(tmp_path):
    ready = new_run(tmp_path, count=3)
    run(ready)
    lines = ready.store.records_path.read_text().splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)["schema"] == 3 == RECORD_SCHEMA for line in lines)
    assert Record.from_dict(json.loads(lines[0])).to_dict() == json.loads(lines[0])
    assert json.loads(lines[0])["groups"] == {"category": "cat0"}


def test_schema_1_records_are_still_read(tmp_path):
    line = json.loads(
        '{"sample_id": "s1", "status": "ok", "category": "color", "video": "v.mp4",'
        ' "prompt": "p", "target": "A", "response": "A",'
        ' "score": {"correct": true, "prediction": "A", "rule": "bare", "reason": null},'
        ' "error": null, "timings": {"total": 1.0}, "usage": {}, "meta": {}, "warmup": false,'
        ' "started_at": 1.0, "finished_at": 2.0, "schema": 1}'
    )
    record = Record.from_dict(line)
    assert (record.schema, record.groups, record.correct) == (1, {}, True)
    assert record.score is not None and record.score.official is None
    with pytest.raises(ValueError, match="record schema 4 is not supported"):
        Record.from_dict({**line, "schema": 4})


def test_manifest_describes_the_run(tmp_path):
    ready = new_run(tmp_path, count=2, reply="B")
    run(ready, concurrency=2)
    manifest = Run.open(ready.store.path).manifest.to_dict()
    assert manifest["status"] == "completed"
    assert manifest["backend"] == {"name": "scripted", "describe": {"reply": "B", "delay": 0.0}}
    assert manifest["benchmark"] == {"name": "tiny", "version": "1"}
    assert manifest["spec"]["benchmark_options"] == {"count": 2}
    assert manifest["samples_planned"] == 2
    assert "av" in manifest["environment"]["packages"]
    assert manifest["environment"]["host"]["cpus"] >= 1
    (ready,) = manifest["sessions"]
    assert ready["settings"]["concurrency"] == 2
    assert ready["written"] == 2 and ready["finished_at"] >= ready["started_at"]


def test_concurrency_is_bounded(tmp_path):
    ready = new_run(tmp_path, count=20, delay="0.01")
    run(ready, concurrency=3)
    assert ready.backend.max_in_flight == 3
    assert len(records(ready)) == 20


def test_a_failing_sample_is_recorded_and_the_run_goes_on(tmp_path):
    ready = new_run(tmp_path, fail="tiny/001")
    run(ready)
    by_id = {r.sample_id: r for r in records(ready)}
    failed = by_id["tiny/001"]
    assert failed.status == "failed" and failed.score is None and failed.response is None
    assert failed.error.kind == "validation_error"
    assert failed.error.details == {"status": 422}
    assert sum(r.ok for r in by_id.values()) == 7


def test_deadline_fails_the_sample_and_cancels_it_in_the_backend(tmp_path):
    ready = new_run(tmp_path, count=4, hang="tiny/002")
    run(ready, deadline=0.05)
    by_id = {r.sample_id: r for r in records(ready)}
    assert by_id["tiny/002"].error.kind == "deadline"
    assert "0.05 s deadline" in by_id["tiny/002"].error.message
    assert ready.backend.cancelled == ["tiny/002"]
    assert sum(r.ok for r in by_id.values()) == 3


def test_resume_skips_ok_and_failed_unless_retrying(tmp_path):
    ready = new_run(tmp_path, fail="tiny/003")
    run(ready)
    resumed = resume_run(ready.store.path)
    run(resumed)
    assert len(records(ready)) == 8  # nothing was run again

    resumed = resume_run(ready.store.path)
    resumed.backend.fail = ""  # the service recovered
    run(resumed, retry_failed=True)
    written = records(ready)
    assert len(written) == 9
    assert [r.status for r in written if r.sample_id == "tiny/003"] == ["failed", "ok"]
    assert Counter(r.sample_id for r in written if r.ok) == {f"tiny/{i:03d}": 1 for i in range(8)}
    assert len(Run.open(ready.store.path).manifest.sessions) == 3


def test_resume_rebuilds_the_runs_own_settings(tmp_path):
    ready = new_run(tmp_path, count=3, reply="C", delay="0.001")
    ready.store.unlock()  # as its process would by ending
    resumed = resume_run(ready.store.path)
    assert isinstance(resumed.backend, ScriptedBackend)
    assert (resumed.backend.reply, resumed.backend.delay) == ("C", 0.001)
    assert [s.id for s in resumed.samples] == ["tiny/000", "tiny/001", "tiny/002"]


def test_cancelling_a_run_cancels_in_flight_work_and_keeps_finished_records(tmp_path):
    ready = new_run(tmp_path, count=6, hang="tiny/004,tiny/005")

    async def scenario() -> None:
        task = asyncio.create_task(
            execute_run(ready, RunSettings(concurrency=6), show_progress=False)
        )
        while len(records(ready)) < 4 or ready.backend.in_flight < 2:  # both hanging
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert sorted(ready.backend.cancelled) == ["tiny/004", "tiny/005"]
    assert sorted(r.sample_id for r in records(ready)) == [f"tiny/{i:03d}" for i in range(4)]
    assert Run.open(ready.store.path).manifest.status == "interrupted"
    assert ready.backend.closed


def test_prompt_and_scoring_bugs_fail_only_their_sample(tmp_path):
    class Fragile(TinyBenchmark):
        def prompt(self, sample: Sample) -> str:
            if sample.id == "tiny/000":
                raise KeyError("template field")
            return super().prompt(sample)

        def score(self, sample, text):
            if sample.id == "tiny/001":
                raise ZeroDivisionError("division by zero")
            return super().score(sample, text)

    ready = new_run(tmp_path, count=3)
    store = RunStore(tmp_path / "fragile")
    store.path.mkdir()
    asyncio.run(
        execute(
            ready.backend,
            Fragile(count=3),
            list(Fragile(count=3).samples()),
            store,
            RunSettings(),
            show_progress=False,
        )
    )
    by_id = {r.sample_id: r for r in read_records(store.records_path).records}
    assert by_id["tiny/000"].error.kind == "KeyError"
    assert by_id["tiny/001"].error.kind == "scoring_error"
    assert by_id["tiny/001"].response == "The answer is A."
    assert by_id["tiny/002"].ok


def test_scoring_runs_in_a_worker_thread_and_groups_come_from_the_sample(tmp_path):
    scored_on = []

    class Grouped(TinyBenchmark):
        def samples(self):
            for sample in super().samples():
                meta = {"task": "count", "duration_s": 1200} if sample.id == "tiny/000" else {}
                yield replace(sample, meta=meta)

        def score(self, sample, text):
            scored_on.append(threading.current_thread())
            return super().score(sample, text)

    store = RunStore(tmp_path)
    bench = Grouped(count=2)
    asyncio.run(
        execute(
            ScriptedBackend(),
            bench,
            list(bench.samples()),
            store,
            RunSettings(),
            show_progress=False,
        )
    )
    assert len(scored_on) == 2 and threading.main_thread() not in scored_on
    by_id = {r.sample_id: r for r in read_records(store.records_path).records}
    assert by_id["tiny/000"].groups == {"category": "cat0", "task": "count", "duration": "long"}
    assert by_id["tiny/001"].groups == {"category": "cat1"}


def test_an_invalid_sample_fails_without_asking_the_backend(tmp_path):
    asked = []

    class Asked(ScriptedBackend):
        async def answer(self, query):
            asked.append(query.sample_id)
            return await super().answer(query)

    class WithABadRow(TinyBenchmark):
        def samples(self):
            yield from super().samples()
            yield Sample("row 9", "", "", "", category="cat1", meta={"invalid": "row 9: bad"})

    backend, bench, store = Asked(), WithABadRow(count=2), RunStore(tmp_path)
    asyncio.run(
        execute(backend, bench, list(bench.samples()), store, RunSettings(), show_progress=False)
    )
    assert sorted(asked) == ["tiny/000", "tiny/001"]
    record = read_records(store.records_path).latest_by_sample()["row 9"]
    assert (record.status, record.error.kind, record.error.message) == (
        "failed",
        "invalid_sample",
        "row 9: bad",
    )
    assert (record.prompt, record.response, record.groups) == ("", None, {"category": "cat1"})


def test_duplicate_sample_ids_are_refused(tmp_path):
    class Doubled(TinyBenchmark):
        def samples(self):
            yield from super().samples()
            yield from super().samples()

    store = RunStore(tmp_path)
    with pytest.raises(UsageError, match="more than once"):
        asyncio.run(
            execute(
                ScriptedBackend(),
                Doubled(count=1),
                list(Doubled(count=1).samples()),
                store,
                RunSettings(),
                show_progress=False,
            )
        )


def test_torn_last_line_is_skipped_and_never_merged(tmp_path):
    ready = new_run(tmp_path, count=2)
    run(ready)
    path = ready.store.records_path
    with path.open("ab") as handle:
        handle.write(b'{"sample_id": "tiny/009", "sta')  # a writer killed mid-line
    log = read_records(path)
    assert len(log.records) == 2
    assert len(log.skipped) == 1 and "torn last line" in log.skipped[0]

    store = RunStore(ready.store.path)
    store.append(records(ready)[0])
    store.close()
    log = read_records(path)
    assert len(log.records) == 3 and len(log.skipped) == 1


def test_settings_are_validated():
    with pytest.raises(UsageError, match="concurrency"):
        RunSettings(concurrency=0)
    with pytest.raises(UsageError, match="deadline"):
        RunSettings(deadline=0)
    with pytest.raises(UsageError, match="decode_ahead must be 0 or more, got -1"):
        RunSettings(decode_ahead=-1)
    with pytest.raises(UsageError, match="decode_workers must be at least 1, got 0"):
        RunSettings(decode_workers=0)


def test_videos_are_fetched_for_selected_samples_and_a_failed_fetch_fails_one(tmp_path):
    fetched: list[str] = []

    class Remote(TinyBenchmark):
        """Videos on a 'Hub': fetched on demand, except one that is gone."""

        def fetch_video(self, sample: Sample) -> str:
            if sample.id == "tiny/001":
                raise FileNotFoundError("videos_02.zip has no data/1.mp4")
            fetched.append(sample.id)
            return str(tmp_path / f"{sample.id.replace('/', '-')}.mp4")

    seen: list[str] = []

    class Seeing(ScriptedBackend):
        async def answer(self, query):
            seen.append(query.video)
            return await super().answer(query)

    store = RunStore(tmp_path / "remote")
    store.path.mkdir()
    samples = list(Remote(count=3).samples())
    asyncio.run(
        execute(Seeing(), Remote(count=3), samples, store, RunSettings(), show_progress=False)
    )
    by_id = {r.sample_id: r for r in read_records(store.records_path).records}
    assert sorted(fetched) == ["tiny/000", "tiny/002"]
    assert sorted(seen) == [str(tmp_path / "tiny-000.mp4"), str(tmp_path / "tiny-002.mp4")]
    assert by_id["tiny/001"].error.kind == "video_unavailable"
    assert "videos_02.zip has no data/1.mp4" in by_id["tiny/001"].error.message
    assert by_id["tiny/000"].ok and by_id["tiny/000"].video == "/videos/0.mp4"  # the locator
    assert "fetch" in by_id["tiny/000"].timings


@dataclass
class Preparing(ScriptedBackend):
    """A backend with per-video work (`PreparesVideos`, as `local` decodes frames). Its
    answer to the i-th query first waits (5 s at most) for `wanted(i)` preparations, then
    notes how many there were. `prepare_fails` names a video whose preparation raises."""

    wanted: Callable[[int], int] = lambda answered: 0
    prepare_fails: str = ""
    ready: list[str] = field(default_factory=list, init=False)
    seen: list[int] = field(default_factory=list, init=False)

    def prepare(self, video: str) -> None:
        self.ready.append(video)
        if video == self.prepare_fails:
            raise ValueError(f"{video}: cannot decode")

    async def answer(self, query):
        wanted = self.wanted(len(self.seen))
        deadline = time.monotonic() + 5
        while len(self.ready) < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        self.seen.append(len(self.ready))
        return await super().answer(query)


def run_tiny(backend, tmp_path, count: int, **settings) -> dict[str, Record]:
    bench, store = TinyBenchmark(count=count), RunStore(tmp_path)
    samples = list(bench.samples())
    asyncio.run(
        execute(backend, bench, samples, store, RunSettings(**settings), show_progress=False)
    )
    return read_records(store.records_path).latest_by_sample()


@pytest.mark.parametrize("ahead", [0, 1, 3, 20])
def test_samples_are_prepared_ahead_of_the_backend_and_no_further(tmp_path, ahead):
    count = 8
    backend = Preparing(wanted=lambda answered: min(answered + 1 + ahead, count))
    written = run_tiny(backend, tmp_path, count, concurrency=1, decode_ahead=ahead)
    assert all(r.ok for r in written.values())
    # Answering the i-th sample, the i-th and the `ahead` after it have been ready,
    # and not one more: with `ahead` 0, each sample is ready when its turn comes.
    assert backend.seen == [min(i + 1 + ahead, count) for i in range(count)]
    assert backend.ready == [f"/videos/{i // 2}.mp4" for i in range(count)]
    for record in written.values():
        assert record.timings["prepare_wait"] >= 0 and record.timings["prepare"] >= 0


def test_a_failed_preparation_leaves_the_sample_to_the_backend(tmp_path):
    """The backend's `prepare` is a head start: its answer decides the sample."""
    backend = Preparing(prepare_fails="/videos/1.mp4", fail="tiny/003")
    written = run_tiny(backend, tmp_path, 6, decode_ahead=2)
    assert sorted(backend.ready) == sorted(f"/videos/{i // 2}.mp4" for i in range(6))
    assert written["tiny/002"].ok
    assert written["tiny/003"].error.kind == "validation_error"  # what answer() said
    assert sum(r.ok for r in written.values()) == 5


def test_a_cancelled_run_drops_the_preparations_it_started(tmp_path):
    started, release = threading.Event(), threading.Event()

    class Slow(Preparing):
        def prepare(self, video: str) -> None:
            super().prepare(video)
            started.set()
            release.wait(5)

    backend = Slow()
    bench, store = TinyBenchmark(count=40), RunStore(tmp_path)

    async def cancel_while_preparing() -> None:
        run = asyncio.create_task(
            execute(
                backend,
                bench,
                list(bench.samples()),
                store,
                RunSettings(concurrency=1, decode_ahead=10, decode_workers=1),
                show_progress=False,
            )
        )
        await asyncio.to_thread(started.wait, 5)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(cancel_while_preparing())
    release.set()
    time.sleep(0.1)
    assert backend.ready == ["/videos/0.mp4"]  # the queued ones were dropped
    assert read_records(store.records_path).records == []
