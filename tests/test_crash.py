"""A run killed with SIGKILL mid-way and resumed ends with exactly one OK record per sample;
a torn last line in records.jsonl is reported and ignored, never fatal."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.run.directory import Run
from harness.run.store import read_records

TESTS = Path(__file__).parent
SAMPLES = 40


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TESTS / "run_cli.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def tiny_run(out: Path, count: int, *options: str, run_id: str = "run") -> list[str]:
    """`run` arguments: the scripted backend over `count` tiny samples, into `out/run_id`."""
    backend = ["--backend", "scripted", "--benchmark", "tiny", "-S", f"count={count}"]
    return ["run", *backend, *options, "--out", str(out), "--run-id", run_id, "--no-progress"]


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_after(
    process: subprocess.Popen, records: Path, at_least: int, timeout: float = 60
) -> None:
    """SIGKILL the process once `records` holds `at_least` lines (or it exits first)."""
    deadline = time.monotonic() + timeout
    while lines_in(records) < at_least and process.poll() is None:
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_resume_gives_one_ok_record_per_sample(tmp_path, seed):
    rng = random.Random(seed)
    run_dir = tmp_path / "run"
    records = run_dir / "records.jsonl"
    process = start(*tiny_run(tmp_path, SAMPLES, "-B", "delay=0.01", "--concurrency", "4"))
    kill_after(process, records, at_least=rng.randint(1, SAMPLES // 2))
    # Kill a resumed run too, at a random point, before letting one finish.
    process = start("run", "--resume", str(run_dir), "--no-progress")
    kill_after(process, records, at_least=lines_in(records) + rng.randint(1, 8))

    finish = start("run", "--resume", str(run_dir), "--no-progress")
    _, stderr = finish.communicate(timeout=120)
    assert finish.returncode == 0, stderr.decode()

    log = read_records(records)
    ok = Counter(r.sample_id for r in log.records if r.ok)
    assert ok == {f"tiny/{i:03d}": 1 for i in range(SAMPLES)}
    assert all(r.ok for r in log.records)


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    process = start(*tiny_run(tmp_path, SAMPLES, "-B", "delay=0.05", "--concurrency", "2"))
    deadline = time.monotonic() + 60
    while lines_in(run_dir / "records.jsonl") < 3:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert f"resume with: vqa-harness run --resume {run_dir}" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    log = read_records(run_dir / "records.jsonl")
    assert log.skipped == [] and 3 <= len(log.records) < SAMPLES
    assert Run.open(run_dir).manifest.status == "interrupted"


def sessions_in(run_dir: Path) -> int:
    """Sessions the manifest holds (0 before it exists); it is replaced atomically."""
    path = run_dir / "manifest.json"
    return len(Run.open(run_dir).manifest.sessions) if path.exists() else 0


def ok_records(records: Path) -> int:
    return sum(r.ok for r in read_records(records).records)


@pytest.mark.slow
def test_sigkill_at_twenty_random_points_then_resume_gives_one_ok_record_per_sample(tmp_path):
    """Each kill comes a seeded random delay after start-up began (a quarter of them) or
    after the session began; every launch resumes the run, or starts it when no manifest
    landed. Finished, there is one OK record per sample and no other."""
    rng = random.Random(20)
    kills, samples = 20, 200
    run_dir, records = tmp_path / "run", tmp_path / "run" / "records.jsonl"
    new_run = tiny_run(tmp_path, samples, "-B", "delay=0.05", "--concurrency", "2")
    resume = ["run", "--resume", str(run_dir), "--no-progress"]
    interrupted = 0  # kills that landed while samples were being written
    for _ in range(kills):
        before, done = sessions_in(run_dir), ok_records(records)
        process = start(*(resume if before else new_run))
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0, 3))  # anywhere from start-up on
        else:
            deadline = time.monotonic() + 60
            while sessions_in(run_dir) == before and process.poll() is None:
                assert time.monotonic() < deadline, "run never started"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.3))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        interrupted += done < ok_records(records) < samples
    assert interrupted >= kills // 3  # the loop did kill runs mid-way

    finish = start(*(resume if sessions_in(run_dir) else new_run))
    _, stderr = finish.communicate(timeout=120)
    assert finish.returncode == 0, stderr.decode()
    log = read_records(records)
    assert Counter(r.sample_id for r in log.records) == {f"tiny/{i:03d}": 1 for i in range(samples)}
    assert all(r.ok for r in log.records)
    assert Run.open(run_dir).manifest.status == "completed"


def test_a_torn_last_line_is_reported_ignored_and_never_glued_to_the_next(tmp_path, capsys):
    """As a kill mid-write leaves it: the resume names it on stderr and runs its sample
    again on a fresh line; the report lists it; every other line still reads."""
    assert main(tiny_run(tmp_path, 6)) == 0
    records = tmp_path / "run" / "records.jsonl"
    *kept, last = records.read_bytes().splitlines(keepends=True)
    torn = last[: len(last) // 2]
    records.write_bytes(b"".join(kept) + torn)
    torn_id = json.loads(last)["sample_id"]
    log = read_records(records)
    assert len(log.records) == 5 and torn_id not in {r.sample_id for r in log.records}
    assert len(log.skipped) == 1 and "line 6 (torn last line)" in log.skipped[0]
    capsys.readouterr()

    assert main(["run", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "ignoring records.jsonl line 6 (torn last line)" in capsys.readouterr().err
    lines = records.read_bytes().split(b"\n")
    assert lines[:7] == [*(line.rstrip(b"\n") for line in kept), torn, lines[6]]
    assert json.loads(lines[6])["sample_id"] == torn_id and lines[7:] == [b""]
    log = read_records(records)
    assert Counter(r.sample_id for r in log.records if r.ok) == {
        f"tiny/{i:03d}": 1 for i in range(6)
    }
    assert len(log.skipped) == 1 and log.skipped[0].startswith("records.jsonl line 6: ")

    assert main(["report", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_lines"] == log.skipped
    assert log.skipped[0] in (tmp_path / "run" / "report.md").read_text()


def test_a_run_killed_before_its_manifest_landed_can_be_started_again(tmp_path):
    """The directory holds only the temp file of the manifest being written."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".manifest.json.x1y2.tmp").write_text('{"run_id": ')
    assert main(tiny_run(tmp_path, 2)) == 0
    assert len(read_records(tmp_path / "run" / "records.jsonl").records) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a run")
    assert main(tiny_run(tmp_path, 2, run_id="other")) == 2
