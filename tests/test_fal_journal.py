"""Resume without paying twice: each fal request is journaled in the run directory before
it is waited on, and `--resume` re-attaches to the ones an interrupted session left open;
fal's logs are kept in full in the run directory, each line once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fal_client
import fal_client.client
import pytest
from fal_emulator import FalEmulator
from record_fal import guessing_reply

from backends.fal import _Life, _log_line
from backends.fal_journal import LOGS, REQUESTS, RunFiles, fingerprint
from harness.analysis.summary import summarize
from harness.cli import EXIT_INTERRUPTED, main
from harness.run.manifest import Manifest
from harness.run.store import RecordLog, read_records
from harness.types import PARTIAL_TIMINGS, Record, Score

APP = "fal-ai/mini-cpm/video"
KEY = "test-key-id:test-key-secret"
NEVER = 10**6  # polls IN_PROGRESS: a request that runs until a test lets it finish


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def run_args(out: Path, cache: Path, *extra: str, limit: int = 2) -> list[str]:
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01", "-B", "poll_max_interval=0.05"]
    args += ["-S", f"cache_dir={cache}", "--limit", str(limit), "--deadline", "60"]
    return [*args, *extra, "--no-progress", "--out", str(out)]


def resume(emulator: FalEmulator, run_dir: Path, *extra: str) -> dict[str, Record]:
    with emulator.installed():
        assert main(["run", "--resume", str(run_dir), "--no-progress", *extra]) == 0
    return read_records(run_dir / "records.jsonl").latest_by_sample()


def lines(path: Path) -> list[dict]:
    """The JSON lines of a run file, a torn one left out."""
    parsed = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            parsed.append(json.loads(line))
    return parsed


def journal(run_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The journal's submitted requests ({request id: sample id}) and ended ones (outcomes)."""
    entries = lines(run_dir / REQUESTS)
    submitted = {e["request_id"]: e["sample_id"] for e in entries if e["event"] == "submitted"}
    ended = {e["request_id"]: e["outcome"] for e in entries if e["event"] == "ended"}
    return submitted, ended


@contextlib.contextmanager
def sigterm_when(ready: Callable[[], bool]) -> Iterator[None]:
    """Send this process SIGTERM, as `kill` would, once `ready()` holds; the run in the
    block (which must not end before) takes it as an interrupt."""
    stop = threading.Event()

    def watch() -> None:
        end = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < end:
            if ready():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def interrupted_run(
    emulator: FalEmulator, tmp_path: Path, cache: Path, *, limit: int = 2, cancels: bool = False
) -> tuple[Path, dict[str, str]]:
    """A run interrupted (SIGTERM) while each of its `limit` requests runs at fal, polled
    twice or more; the run directory and its journaled requests by sample. Unless
    `cancels`, the app runs on after the cancel the interrupt sends (fal only signals a
    running app, which may finish and bill)."""
    emulator.progress_polls = NEVER
    emulator.app_honours_cancel = cancels
    run_dir = tmp_path / "r"

    def waiting() -> bool:
        submitted = journal(run_dir)[0] if (run_dir / REQUESTS).exists() else {}
        return len(submitted) == limit and all(emulator.polls.get(r, 0) >= 2 for r in submitted)

    with emulator.installed(), sigterm_when(waiting):
        assert main([*run_args(tmp_path, cache, limit=limit), "--run-id", "r"]) == EXIT_INTERRUPTED
    submitted, ended = journal(run_dir)
    assert len(submitted) == limit and ended == {}  # an interrupt leaves every entry open
    assert read_records(run_dir / "records.jsonl").records == []
    return run_dir, {sample: request for request, sample in submitted.items()}


def fal_status(emulator: FalEmulator, request_id: str, *, until_completed: bool = False):
    async def poll():
        client = fal_client.AsyncClient(key=KEY)
        while True:
            status = await client.status(APP, request_id, with_logs=True)
            if not until_completed or isinstance(status, fal_client.Completed):
                return status

    with emulator.installed():
        return asyncio.run(poll())


def test_a_resumed_run_reattaches_to_its_running_and_completed_requests_submitting_nothing(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply=guessing_reply)
    run_dir, requests = interrupted_run(emulator, tmp_path, synthetic_cache)
    done, running = sorted(requests)
    emulator.progress_polls = max(emulator.polls.values()) + 2  # both finish, by and by
    fal_status(emulator, requests[done], until_completed=True)  # while the run was down
    records = resume(emulator, run_dir)

    assert len(emulator.submitted) == 2  # nothing submitted twice
    assert all(record.ok for record in records.values())
    for sample, outcome in ((done, "fetched"), (running, "waited")):
        meta = records[sample].meta
        assert meta["request_id"] == requests[sample]
        assert meta["reattached"]["request_id"] == requests[sample]
        assert meta["reattached"]["outcome"] == outcome
        assert meta[PARTIAL_TIMINGS]  # its `total` is only this session's wait
        assert "queue" not in records[sample].timings
        assert records[sample].timings["inference"] == emulator.inference_time
    assert [s[1] for s in records[done].meta["states"]] == ["COMPLETED"]
    assert [s[1] for s in records[running].meta["states"]][-2:] == ["IN_PROGRESS", "COMPLETED"]
    assert journal(run_dir)[1] == {requests[done]: "result_read", requests[running]: "result_read"}

    # fal's logs, whole: every line fal logged for each request, once, in order, though
    # the first session kept some, and a poll nobody saw while the run was down made more.
    kept = lines(run_dir / LOGS)
    for sample, request_id in requests.items():
        logged = [_log_line(log) for log in fal_status(emulator, request_id).logs]
        mine = [line for line in kept if line["request_id"] == request_id]
        assert [line["n"] for line in mine] == list(range(len(logged)))
        assert [line["line"] for line in mine] == logged
        assert {line["sample_id"] for line in mine} == {sample}
        assert records[sample].meta["logs"] == logged[-5:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "total" not in summary["latency"]  # re-attached: no latency to report


@pytest.mark.parametrize(
    ("fate", "outcome"),
    [("forgotten", "not_found"), ("result gone", "result_expired"), ("cancelled", "no_answer")],
)
def test_a_request_that_cannot_answer_any_more_is_submitted_anew_and_the_record_says_why(
    tmp_path, synthetic_cache, fate, outcome
):
    emulator = FalEmulator(reply=guessing_reply)
    run_dir, requests = interrupted_run(
        emulator, tmp_path, synthetic_cache, limit=1, cancels=fate == "cancelled"
    )
    ((sample, old),) = requests.items()
    emulator.progress_polls = 0
    if fate == "forgotten":
        emulator.forget(old)  # its result's retention passed
    elif fate == "result gone":  # fal still says COMPLETED, but no longer has the result
        emulator.inject("server_error", on="result", status=404, message="Request not found")
    records = resume(emulator, run_dir)

    new = records[sample].meta["request_id"]
    assert records[sample].ok and new != old and set(emulator.submitted) == {old, new}
    reattached = records[sample].meta["reattached"]
    assert reattached["request_id"] == old and reattached["outcome"] == outcome
    assert reattached["error"]  # what fal answered
    assert PARTIAL_TIMINGS not in records[sample].meta and "queue" in records[sample].timings
    submitted, ended = journal(run_dir)
    assert submitted == {old: sample, new: sample}
    assert ended[new] == "result_read" and old in ended


def test_a_torn_journal_line_is_skipped_and_never_merges_with_the_next(tmp_path, synthetic_cache):
    """A kill while the journal was written leaves its last line torn: that request is not
    known to the resume, which submits its sample again; the other is re-attached."""
    emulator = FalEmulator(reply=guessing_reply)
    run_dir, requests = interrupted_run(emulator, tmp_path, synthetic_cache)
    *whole, last = (run_dir / REQUESTS).read_bytes().splitlines(keepends=True)
    (run_dir / REQUESTS).write_bytes(b"".join(whole) + last[: len(last) // 2])
    torn = json.loads(last)["sample_id"]
    emulator.progress_polls = 0
    records = resume(emulator, run_dir)

    assert all(record.ok for record in records.values())
    assert len(emulator.submitted) == 3  # only the torn line's sample was sent again
    assert "reattached" not in records[torn].meta
    (other,) = set(requests) - {torn}
    assert records[other].meta["reattached"]["outcome"] == "fetched"  # done meanwhile
    written = (run_dir / REQUESTS).read_bytes().split(b"\n")
    assert written[len(whole)] == last[: len(last) // 2]  # kept on a line of its own
    assert all(json.loads(line) for line in written[len(whole) + 1 : -1])


def test_a_sample_given_up_at_its_deadline_ends_its_entry_and_is_submitted_anew(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("never_complete", on="status")
    args = run_args(tmp_path, synthetic_cache, "--deadline", "1.5")
    with emulator.installed():
        assert main([*args, "--run-id", "r"]) == 0
    run_dir = tmp_path / "r"
    (failed,) = [r for r in read_records(run_dir / "records.jsonl").records if not r.ok]
    given_up = failed.error.details["request_id"]
    assert given_up in emulator.cancelled
    assert journal(run_dir)[1][given_up] == "given_up"

    records = resume(emulator, run_dir, "--retry-failed")
    retried = records[failed.sample_id]
    assert retried.ok and "reattached" not in retried.meta
    assert retried.meta["request_id"] != given_up and len(emulator.submitted) == 3


def test_a_replay_keeps_fals_logs_but_journals_nothing(tmp_path, synthetic_cache):
    """A replay asks fal nothing (and is never resumed): its HTTP stays the recorded one."""
    with FalEmulator(reply=guessing_reply, progress_polls=3).installed():
        args = run_args(tmp_path, synthetic_cache, "--record", str(tmp_path / "rec"))
        assert main([*args, "--run-id", "recorded"]) == 0
    args = run_args(tmp_path, synthetic_cache, "--replay", str(tmp_path / "rec"))
    assert main([*args, "--run-id", "replayed"]) == 0

    recorded, replayed = tmp_path / "recorded", tmp_path / "replayed"
    submitted, ended = journal(recorded)
    assert len(submitted) == 2 and set(ended.values()) == {"result_read"}
    assert not (replayed / REQUESTS).exists()
    logged = sorted(json.dumps(line) for line in lines(recorded / LOGS))
    assert (
        len(logged) >= 8 and sorted(json.dumps(line) for line in lines(replayed / LOGS)) == logged
    )


def test_logs_sent_whole_or_only_new_are_each_kept_once(tmp_path):
    """fal may send every line so far on each poll, or only the new ones (more than all
    before, at times): the run file and the record hold each line once."""

    def logs(*messages: str) -> fal_client.InProgress:
        return fal_client.InProgress(logs=[{"message": m} for m in messages])

    for request_id, polls in {
        "every line so far": [logs("a"), logs("a", "b", "c"), logs("a", "b", "c", "d")],
        "only new ones": [logs("a"), logs("b", "c"), logs("d")],
        "new ones, more than all before": [logs("a"), logs("b", "c", "d"), logs()],
    }.items():
        files = RunFiles(tmp_path, resuming=False, journal=True)
        files.submitted("s", request_id, APP, fingerprint("v.mp4", "p"))
        life = _Life(time.perf_counter(), request_id)
        for status in polls:
            life.saw(status)
            files.log(request_id, life.logs)
        files.close()
        assert life.logs == ["a", "b", "c", "d"]
        kept = [line for line in lines(tmp_path / LOGS) if line["request_id"] == request_id]
        assert [(line["n"], line["line"]) for line in kept] == list(enumerate("abcd"))


def test_a_key_in_fals_logs_is_scrubbed_from_the_logs_file(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("completed_error", on="status", message=f"auth failed for {KEY}")
    with emulator.installed():
        assert main([*run_args(tmp_path, synthetic_cache, limit=1), "--run-id", "r"]) == 0
    text = (tmp_path / "r" / LOGS).read_text()
    assert "ERROR Error: auth failed for REDACTED" in text
    assert KEY not in text and KEY.split(":")[1] not in text


def test_merge_carries_each_shards_journal_and_logs(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply)
    with emulator.installed():
        for index in range(2):
            args = run_args(tmp_path / "shards", synthetic_cache, "--shard", f"{index}/2", limit=4)
            assert main([*args, "--run-id", "exp"]) == 0
    shards = sorted((tmp_path / "shards").iterdir())
    assert len(shards) == 2
    with (shards[1] / LOGS).open("ab") as handle:
        handle.write(b'{"sample_id": "torn')  # a shard killed while it wrote
    assert main(["merge", *map(str, shards), "--out", str(tmp_path), "--run-id", "merged"]) == 0

    merged = tmp_path / "merged"
    for name in (REQUESTS, LOGS):
        assert lines(merged / name) == lines(shards[0] / name) + lines(shards[1] / name)
        assert (merged / name).read_bytes().endswith(b"}\n")  # the torn line left out
    assert len(journal(merged)[0]) == len(emulator.submitted)


def test_latency_statistics_leave_out_answers_with_partial_timings():
    def answered(sample_id: str, total: float, **meta: str) -> Record:
        score = Score(correct=True, prediction="A")
        timings = {"total": total}
        return Record(sample_id, "ok", "c", "v", "p", "A", "A", score, timings=timings, meta=meta)

    manifest = Manifest.from_dict(
        {
            "run_id": "r",
            "spec": {"backend": "fal", "benchmark": "tiny"},
            "mode": "live",
            "backend": {"name": "fal"},
            "benchmark": {"name": "tiny", "version": "1"},
        }
    )
    partial = answered("c", 0.1, **{PARTIAL_TIMINGS: "re-attached"})
    log = RecordLog(records=[answered("a", 2.0), answered("b", 4.0), partial])
    latency = summarize(log, manifest).latency
    assert latency["total"]["n"] == 2 and latency["total"]["mean"] == 3.0


def test_the_emulator_forgets_a_request_as_fal_does_once_its_result_is_no_longer_kept():
    async def forgotten() -> list[int]:
        client = fal_client.AsyncClient(key=KEY)
        handle = await client.submit(APP, {"video_url": "https://x/v.mp4", "prompt": "p"})
        await handle.status()
        emulator.forget(handle.request_id)
        codes = []
        for call in (handle.status, handle.get, handle.cancel):
            with pytest.raises(fal_client.FalClientHTTPError) as error:
                await call()
            codes.append(error.value.status_code)
        return codes

    emulator = FalEmulator()
    with emulator.installed():
        assert asyncio.run(forgotten()) == [404, 404, 404]


def test_an_answer_read_but_not_recorded_is_fetched_again_not_submitted(tmp_path, synthetic_cache):
    """The run stopped after the result was read, before the record was written (while
    a judge scored it): the resume reads the result again, which fal still keeps."""
    emulator = FalEmulator(reply=guessing_reply)
    with emulator.installed():
        assert main([*run_args(tmp_path, synthetic_cache), "--run-id", "r"]) == 0
    records = tmp_path / "r" / "records.jsonl"
    first, lost = records.read_bytes().splitlines(keepends=True)
    records.write_bytes(first)
    lost_id = json.loads(lost)["sample_id"]
    assert set(journal(tmp_path / "r")[1].values()) == {"result_read"}

    resumed = resume(emulator, tmp_path / "r")
    assert len(emulator.submitted) == 2 and resumed[lost_id].ok
    assert resumed[lost_id].meta["reattached"]["outcome"] == "fetched"
    assert resumed[lost_id].response == json.loads(lost)["response"]
