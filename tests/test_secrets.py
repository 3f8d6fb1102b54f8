"""No key reaches a file, the output or a log: canary keys through record, replay and report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fal_emulator import FalEmulator
from key_scan import FAL_CANARY, JUDGE_CANARY, leaks, scan_files
from openai_emulator import OpenAIEmulator
from videos import write_video

from harness.cli import main

RUN_FILES = ("manifest.json", "records.jsonl", "summary.json", "report.md")


def questions(folder: Path) -> Path:
    """Open-ended questions on a local video (uploaded to fal's storage) and a URL."""
    write_video(folder / "clip.mp4", 3, fps=10)  # probed before upload: a real video
    rows = [
        {"id": "q1", "video": "clip.mp4", "question": "Who is there?", "answer": "a man"},
        {"id": "q2", "video": "clip.mp4", "question": "What runs?", "answer": "a dog"},
        {"id": "q3", "video": "https://example.com/c.mp4", "question": "Where?", "answer": "park"},
    ]
    path = folder / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def spy_on_auth(emulator: FalEmulator) -> list[str | None]:
    """The Authorization header of every request the fal emulator receives."""
    seen: list[str | None] = []
    handler = emulator.transport.handler

    def spy(request):
        seen.append(request.headers.get("authorization"))
        return handler(request)

    emulator.transport.handler = spy
    return seen


def test_canary_keys_reach_no_file_no_output_and_no_log(tmp_path, monkeypatch, capsys, caplog):
    """Record (fal and an LLM judge), replay and report with canary keys planted and every
    log at DEBUG (fal_client, httpx, vcr); then scan every file written and everything
    printed or logged for the canaries and anything key-like."""
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    monkeypatch.setenv("JUDGE_API_KEY", JUDGE_CANARY)
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("fal_client.client._get_retry_delay", lambda *args, **kwargs: 0.0)
    caplog.set_level(logging.DEBUG)  # every logger: fal_client, httpx, vcr, the harness
    benchmark = f"manifest:{questions(tmp_path)}"
    runs, cassettes = tmp_path / "runs", tmp_path / "cassettes"
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.001", "--benchmark", benchmark]
    args += ["--judge-model", "judge-2024-07-18", "--out", str(runs), "--no-progress"]
    fal = FalEmulator(reply="A man.")
    fal.inject("rate_limit", on="submit")  # so fal-client logs a retry
    sent_to_fal = spy_on_auth(fal)
    judge = OpenAIEmulator(api_key=JUDGE_CANARY)  # answers only to the canary

    with fal.installed(), judge.installed():
        assert main([*args, "--record", str(cassettes), "--run-id", "recorded"]) == 0
    assert main([*args, "--replay", str(cassettes), "--run-id", "replayed"]) == 0
    assert main(["report", str(runs / "replayed")]) == 0

    assert f"Key {FAL_CANARY}" in sent_to_fal and len(judge.received) == 3  # keys were used
    assert len(fal.uploads) == 1
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    expected = {f"runs/{run}/{name}" for run in ("recorded", "replayed") for name in RUN_FILES}
    assert expected | {"cassettes/http.yaml"} <= written
    assert scan_files(tmp_path) == {}
    output = capsys.readouterr()
    assert leaks(output.out + output.err) == []
    logged = {record.name.split(".")[0] for record in caplog.records}
    assert {"fal_client", "httpx", "vcr"} <= logged
    assert any(r.getMessage().startswith("Retrying request") for r in caplog.records)
    assert leaks(caplog.text) == []
