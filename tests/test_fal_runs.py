"""Whole fal runs recorded and replayed; the committed replay set; no secret in any cassette."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fal_client.client
import pytest
from fal_emulator import FalEmulator
from key_scan import FAL_CANARY, JUDGE_CANARY, key_like
from record_fal import EMULATOR_SOURCE, REPLAY_SET, guessing_reply

from harness.bench import run_bench
from harness.cli import main
from harness.plugins import benchmarks
from harness.run.recording import http_recording
from harness.run.store import read_records

ROOT = Path(__file__).resolve().parents[1]


def no_fal_credentials(monkeypatch) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")


def test_record_then_replay_a_run_with_no_network_and_no_key(
    tmp_path, monkeypatch, synthetic_cache
):
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    common = [
        "-B",
        "poll_interval=0.001",
        "-S",
        f"cache_dir={synthetic_cache}",
        "--limit",
        "6",
        "--out",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    with FalEmulator(reply=guessing_reply).installed():
        assert (
            main(
                [
                    "run",
                    "--backend",
                    "fal",
                    "--record",
                    str(tmp_path / "rec"),
                    "--run-id",
                    "live",
                    *common,
                ]
            )
            == 0
        )
    cassette = (tmp_path / "rec" / "http.yaml").read_text()
    assert FAL_CANARY not in cassette and key_like(cassette) == []

    no_fal_credentials(monkeypatch)
    assert (
        main(
            [
                "run",
                "--backend",
                "fal",
                "--replay",
                str(tmp_path / "rec"),
                "--run-id",
                "replayed",
                *common,
            ]
        )
        == 0
    )
    live = {r.sample_id: r for r in read_records(tmp_path / "runs/live/records.jsonl").records}
    replayed = read_records(tmp_path / "runs/replayed/records.jsonl").records
    assert len(replayed) == 6 and all(r.ok for r in replayed)
    for record in replayed:
        assert record.response == live[record.sample_id].response
        assert record.meta["request_id"] == live[record.sample_id].meta["request_id"]
    manifest = json.loads((tmp_path / "runs/replayed/manifest.json").read_text())
    assert manifest["mode"] == "replay"
    assert manifest["http"]["source"] == "live"
    assert manifest["http"]["cassette"].endswith("rec/http.yaml")
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert FAL_CANARY not in path.read_text(errors="replace"), path


def test_a_run_through_injected_faults_ends_every_sample_once(
    tmp_path, monkeypatch, synthetic_cache
):
    """Retryable faults are retried, the rest fail their own sample with fal's error;
    a request that never completes fails at the deadline and is cancelled."""
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("rate_limit", on="submit", times=3)
    emulator.inject("drop", on="status", times=2)
    emulator.inject("server_error", on="submit")
    errored: list[dict] = []  # the input that completed with an error, whose error body
    # is fetched: the malformed result goes to another sample's answer

    def first_error(arguments: dict) -> bool:
        errored.append(arguments)
        return True

    emulator.inject("completed_error", on="status", when=first_error)
    emulator.inject("never_complete", on="status")
    emulator.inject("malformed_json", on="result", when=lambda arguments: arguments not in errored)
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01", "--deadline", "2"]
    args += ["-S", f"cache_dir={synthetic_cache}", "--limit", "12", "--concurrency", "4"]
    started = time.monotonic()
    with emulator.installed():
        code = main([*args, "--out", str(tmp_path), "--run-id", "faults", "--no-progress"])
    assert code == 0
    assert time.monotonic() - started < 2 * 2  # the stuck sample did not hold the run
    records = read_records(tmp_path / "faults/records.jsonl").records
    assert sorted(r.sample_id for r in records) == sorted({r.sample_id for r in records})
    assert len(records) == 12
    errors = sorted(r.error.kind for r in records if not r.ok)
    assert errors == ["deadline", "internal_error", "invalid_response", "runner_disconnected"]
    assert all(r.response for r in records if r.ok)
    assert len(emulator.cancelled) == 1
    stuck = next(r for r in records if not r.ok and r.error.kind == "deadline")
    assert stuck.meta.get("request_id") in (None, *emulator.cancelled)


def test_without_a_key_a_live_fal_run_fails_once_before_any_work(tmp_path, monkeypatch, capsys):
    no_fal_credentials(monkeypatch)
    code = main(["run", "--backend", "fal", "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "vqa-harness: error: backend 'fal' cannot run here: "
        "no fal credentials: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_replay_of_a_missing_recording_is_a_clear_error(tmp_path, capsys):
    code = main(["run", "--backend", "fal", "--replay", str(tmp_path / "none"), "--no-progress"])
    assert code == 2
    assert "holds no recorded run (http.yaml is missing)" in capsys.readouterr().err


def test_bench_replays_the_committed_set_without_a_key_and_says_so(
    tmp_path, monkeypatch, synthetic_cache
):
    no_fal_credentials(monkeypatch)
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(synthetic_cache.parent))
    monkeypatch.chdir(tmp_path)  # the committed recording is package data: any directory will do
    markdown = run_bench(["fal", "local"], "synthetic", tmp_path / "bench", limit=8)
    assert "**Not live:**" in markdown.split("| backend |")[0]
    assert "; replayed from the committed recording backends/recordings/fal-synthetic" in markdown
    assert f"(recorded against: {EMULATOR_SOURCE})" in markdown
    assert "`local`: CUDA is not available" in markdown  # and no demo model was given
    (row,) = [line for line in markdown.splitlines() if line.startswith("| fal |")]
    assert "| replay |" in row and "| 0 |" in row  # no failed samples


def test_committed_replay_set_exists_and_says_where_it_came_from():
    cassette = (REPLAY_SET / "http.yaml").read_text()
    assert "source: " in cassette
    assert cassette.count("/files/upload") >= 1


def test_the_committed_replay_set_says_which_samples_it_holds(synthetic_cache):
    """As `tests/record_fal.py` would record it now: the whole synthetic suite, seed 0."""
    with http_recording("replay", REPLAY_SET) as recording:
        pass
    suite = benchmarks.create("synthetic", cache_dir=synthetic_cache)
    assert recording.samples == tuple(sample.id for sample in suite.samples())
    assert (recording.benchmark, recording.command) == ("synthetic (seed=0)", "tests/record_fal.py")


def test_a_replay_over_samples_it_lacks_says_so_once_and_stops(tmp_path):
    """Another seed, other videos: no upload is in the recording. Each sample fails
    `not_recorded`, the run stops after the first five, and vcrpy's advice never shows."""
    args = ["run", "--backend", "fal", "--replay", str(REPLAY_SET), "--concurrency", "2"]
    args += ["-S", "seed=1", "-S", f"cache_dir={tmp_path / 'videos'}", "--no-progress"]
    out = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "run_cli.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FAL_KEY": "", "HOME": "/nonexistent"},
    )
    assert done.returncode == 2, done.stderr
    (run_dir,) = out.iterdir()
    records = read_records(run_dir / "records.jsonl").records
    assert 5 <= len(records) <= 6 and {r.error.kind for r in records} == {"not_recorded"}
    first = records[0]
    assert first.error.message.startswith(f"sample {first.sample_id}: POST https://")
    assert f"is not in the recording {REPLAY_SET}: nothing was recorded to that URL" in (
        first.error.message
    )
    assert done.stderr.splitlines() == [
        f"run directory: {run_dir}",
        f"replay: {len(records)} sample(s) asked for HTTP that {REPLAY_SET} does not hold "
        "(error kind not_recorded); it holds 63 samples of synthetic (seed=0): "
        "color_order/00/last … shape_order/05/before, recorded by `tests/record_fal.py`; "
        "to run them, record them with the backend's key: the same command with "
        f"--record NEW_DIR in place of --replay {REPLAY_SET}",
        "vqa-harness: stopped: the first 5 samples all failed with not_recorded: "
        + records[0].error.message,
    ]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "stopped"


def test_a_replay_that_lacks_some_samples_fails_only_those(
    tmp_path, monkeypatch, capsys, synthetic_cache
):
    """Recorded over 3 samples, replayed over 8: 5 fail `not_recorded`, the run goes on
    (its first samples were answered), and says once what the recording holds."""
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    common = ["-S", f"cache_dir={synthetic_cache}", "-B", "poll_interval=0.001"]
    common += ["--concurrency", "1", "--no-progress"]
    with FalEmulator(reply=guessing_reply).installed():
        args = ["run", "--backend", "fal", "--limit", "3", "--record", str(tmp_path / "rec")]
        assert main([*args, *common, "--out", str(tmp_path / "runs")]) == 0
    held = ("color_order/00/last", "color_order/00/after", "color_order/00/before")
    with http_recording("replay", tmp_path / "rec") as recording:
        assert recording.samples == held
        assert recording.benchmark == f"synthetic (seed=0, cache_dir={synthetic_cache})"
        assert recording.command  # the command line that recorded it
    no_fal_credentials(monkeypatch)
    capsys.readouterr()
    args = ["run", "--backend", "fal", "--replay", str(tmp_path / "rec"), "--limit", "8"]
    assert main([*args, *common, "--run-id", "replayed", "--out", str(tmp_path / "runs")]) == 0
    records = read_records(tmp_path / "runs/replayed/records.jsonl").records
    assert tuple(r.sample_id for r in records if r.ok) == held
    assert [r.error.kind for r in records if not r.ok] == ["not_recorded"] * 5
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("replay:")]
    assert line.startswith(f"replay: 5 sample(s) asked for HTTP that {tmp_path / 'rec'} does not")
    assert f"it holds 3 samples of synthetic (seed=0, cache_dir={synthetic_cache}): " in line
    assert "color_order/00/last … color_order/00/before, recorded by `" in line


def test_no_committed_cassette_holds_anything_key_like():
    cassettes = [REPLAY_SET / "http.yaml", *sorted((ROOT / "tests" / "cassettes").rglob("*.yaml"))]
    assert len(cassettes) >= 3  # the replay set and the per-test cassettes
    offenders = {str(p.relative_to(ROOT)): key_like(p.read_text()) for p in cassettes}
    assert {p: hits for p, hits in offenders.items() if hits} == {}


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Key abc123",
        "- Bearer eyJhbGciOi",
        FAL_CANARY,
        '{"token": "cdn-secret"}',
        f"Authorization: Bearer {JUDGE_CANARY}",
        JUDGE_CANARY,
    ],
)
def test_the_key_scan_catches_secrets(text):
    assert key_like(text)


def test_bench_prices_the_fal_replay_by_what_its_records_say_fal_billed(
    tmp_path, monkeypatch, synthetic_cache
):
    """No `--price` in `bench`: a run whose records carry fal's billed units and unit price
    prices itself in the comparison."""
    no_fal_credentials(monkeypatch)
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(synthetic_cache.parent))
    monkeypatch.chdir(tmp_path)
    markdown = run_bench(["fal", "scripted"], "synthetic", tmp_path / "bench", limit=4)
    cost = markdown.split("Cost per 1,000 samples")[1]
    (row,) = [line for line in cost.splitlines() if "| fal |" in line]
    assert "fal's billed units (x-fal-billable-units) times the unit price" in row
