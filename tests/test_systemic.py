"""A run whose first samples all fail the same way stops, keeps its records, and resumes;
failures that differ, follow an answer, or are the benchmark's own never stop a run."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import ClassVar

import pytest
from fakes import ScriptedBackend, TinyBenchmark

from harness.bench import run_bench
from harness.cli import main
from harness.errors import UsageError
from harness.plugins import backends
from harness.run.directory import Run
from harness.run.runner import SystemicFailure, execute
from harness.run.session import ReadyRun, RunSpec, execute_run, start_run
from harness.run.settings import RunSettings
from harness.run.store import RunStore, read_records
from harness.types import BackendError, Query, Sample


@dataclass
class KeyedBackend(ScriptedBackend):
    """Fails every sample, as a wrong key does, until $SCRIPTED_KEY is `right`."""

    name: ClassVar[str] = "keyed"

    async def answer(self, query: Query):
        if os.environ.get("SCRIPTED_KEY") != "right":
            raise BackendError("unauthorized", "Invalid API key\n(a second line)", status=401)
        return await super().answer(query)


@dataclass
class KindPerSample(ScriptedBackend):
    """Fails every sample, each with a kind of its own."""

    async def answer(self, query: Query):
        raise BackendError(f"kind_{query.sample_id[-1]}", f"rejected {query.sample_id}")


if "keyed" not in backends.names():
    backends.register(KeyedBackend)


def new_run(tmp_path, count: int = 20, **backend_options: str) -> ReadyRun:
    spec = RunSpec("scripted", "tiny", backend_options, {"count": count})
    return start_run(spec, tmp_path, run_id="run")


def every_id(count: int) -> str:
    return ",".join(f"tiny/{i:03d}" for i in range(count))


def run(ready: ReadyRun, **settings) -> None:
    asyncio.run(execute_run(ready, RunSettings(**settings), show_progress=False))


def written(ready: ReadyRun) -> list:
    return read_records(ready.store.records_path).records


def test_the_first_samples_failing_alike_stop_the_run_and_the_manifest_says_why(tmp_path):
    ready = new_run(tmp_path, fail=every_id(20))
    with pytest.raises(SystemicFailure) as stopped:
        run(ready, concurrency=1)
    assert str(stopped.value) == (
        "stopped: the first 5 samples all failed with validation_error: rejected tiny/000"
    )
    assert [r.sample_id for r in written(ready)] == [f"tiny/{i:03d}" for i in range(5)]
    manifest = Run.open(ready.store.path).manifest
    assert manifest.status == "stopped"
    assert manifest.sessions[-1].reason == str(stopped.value)
    assert manifest.sessions[-1].written == 5
    assert ready.backend.closed


def test_samples_in_flight_finish_and_are_recorded_but_none_starts(tmp_path):
    ready = new_run(tmp_path, fail=every_id(20), delay="0.01")
    with pytest.raises(SystemicFailure):
        run(ready, concurrency=3, systemic_failures=4)
    records = written(ready)
    assert 4 <= len(records) <= 4 + 2  # the 4th to fail, and at most two more in flight
    assert len({r.sample_id for r in records}) == len(records)
    assert ready.backend.cancelled == []  # in flight when it stopped: finished, not cancelled


@pytest.mark.parametrize(
    "fail",
    [
        every_id(20).replace("tiny/003,", ""),  # one of the first five is answered
        ",".join(f"tiny/{i:03d}" for i in range(5, 20)),  # the failures come later
    ],
)
def test_failures_after_or_beside_an_answer_never_stop_the_run(tmp_path, fail):
    ready = new_run(tmp_path, fail=fail)
    run(ready, concurrency=1)
    assert len(written(ready)) == 20
    assert Run.open(ready.store.path).manifest.status == "completed"


def test_failures_of_different_kinds_never_stop_the_run(tmp_path):
    backend, bench, store = KindPerSample(), TinyBenchmark(count=12), RunStore(tmp_path)
    settings = RunSettings(concurrency=1)
    asyncio.run(
        execute(backend, bench, list(bench.samples()), store, settings, show_progress=False)
    )
    records = read_records(store.records_path).records
    assert len(records) == 12 and not any(r.ok for r in records)


def test_zero_turns_the_check_off(tmp_path):
    ready = new_run(tmp_path, count=8, fail=every_id(8))
    run(ready, systemic_failures=0)
    assert len(written(ready)) == 8


def test_invalid_samples_neither_count_nor_turn_the_check_off(tmp_path):
    """The benchmark could not read them: that says nothing of the backend."""

    class InvalidFirst(TinyBenchmark):
        def samples(self):
            for index in range(6):
                yield Sample(f"bad/{index}", "", "", "", meta={"invalid": f"row {index}: bad"})
            yield from super().samples()

    def execute_over(backend: ScriptedBackend, store: RunStore) -> list:
        store.path.mkdir()
        bench = InvalidFirst(count=8)
        settings = RunSettings(concurrency=1)
        samples = list(bench.samples())
        asyncio.run(execute(backend, bench, samples, store, settings, show_progress=False))
        return read_records(store.records_path).records

    assert len(execute_over(ScriptedBackend(), RunStore(tmp_path / "answered"))) == 6 + 8
    with pytest.raises(SystemicFailure, match="first 5 samples all failed with validation_"):
        execute_over(ScriptedBackend(fail=every_id(8)), RunStore(tmp_path / "failing"))
    records = read_records(tmp_path / "failing" / "records.jsonl").records
    assert [r.error.kind for r in records] == ["invalid_sample"] * 6 + ["validation_error"] * 5


def test_the_command_line_stops_with_one_line_and_the_resume_line_then_resumes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SCRIPTED_KEY", "wrong")
    args = ["run", "--backend", "keyed", "--benchmark", "tiny", "-S", "count=12"]
    args += ["--concurrency", "1", "--out", str(tmp_path), "--run-id", "r", "--no-progress"]
    assert main(args) == 2
    run_dir = tmp_path / "r"
    assert capsys.readouterr().err.splitlines() == [
        f"run directory: {run_dir}",
        "vqa-harness: stopped: the first 5 samples all failed with unauthorized: Invalid API key",
        f"resume with: vqa-harness run --resume {run_dir} --retry-failed",
    ]
    records = read_records(run_dir / "records.jsonl").records
    assert [r.error.kind for r in records] == ["unauthorized"] * 5
    assert Run.open(run_dir).manifest.status == "stopped"

    monkeypatch.setenv("SCRIPTED_KEY", "right")  # the key is fixed
    assert main(["run", "--resume", str(run_dir), "--retry-failed", "--no-progress"]) == 0
    assert "accuracy 25.0% (3/12), 0 failed" in capsys.readouterr().out
    latest = read_records(run_dir / "records.jsonl").latest_by_sample()
    assert len(latest) == 12 and all(r.ok for r in latest.values())
    assert Run.open(run_dir).manifest.status == "completed"


def test_the_option_is_checked(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["run", "--backend", "scripted", "--systemic-failures", "-1"])
    assert exited.value.code == 2
    assert "--systemic-failures: must be 0 or more, got -1" in capsys.readouterr().err
    with pytest.raises(UsageError, match="systemic_failures must be 0 or more"):
        RunSettings(systemic_failures=-1)


def test_bench_lists_a_stopped_backend_with_why_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTED_KEY", "wrong")
    markdown = run_bench(["keyed", "scripted"], "tiny", tmp_path, concurrency=1)
    assert "- `keyed`: stopped: the first 5 samples all failed with unauthorized" in markdown
    (row,) = [line for line in markdown.splitlines() if line.startswith("| scripted |")]
    assert "| 0 |" in row  # the other backend ran, and none of its samples failed
