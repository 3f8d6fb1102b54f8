"""No key reaches a file, the output or a log: canary keys through record, replay and report,
through error messages that quote them in every form, and keys with stray whitespace refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from fal_emulator import FalEmulator
from key_scan import (
    CANARIES,
    FAL_CANARY,
    JUDGE_CANARY,
    OPENAI_CANARY,
    leaks,
    quoted_forms,
    scan_files,
)
from openai_emulator import OpenAIEmulator
from videos import write_video
from vllm_emulator import VLLMEmulator

from harness import secrets
from harness.cli import main
from harness.errors import HarnessError
from harness.run.cassettes import redact_response
from harness.run.store import read_records

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


def test_every_form_an_error_can_quote_a_key_in_is_scrubbed():
    for key in CANARIES:
        secrets.register(key)
    for key in CANARIES:
        for form in quoted_forms(key):
            assert leaks(secrets.scrub(f"error: {form} (end)")) == [], form
    fal_secret = FAL_CANARY.split(":")[1]
    assert secrets.scrub(f"secret {fal_secret}.") == "secret REDACTED."
    masked = f"{JUDGE_CANARY[:8]}{'*' * 24}{JUDGE_CANARY[-4:]}"  # as OpenAI's 401 echoes it
    assert secrets.scrub(f"Incorrect key: {masked}.") == "Incorrect key: REDACTED."
    assert secrets.scrub("rated **** and k3y") == "rated **** and k3y"
    secrets.register("k3y")  # too short to scrub without blanking ordinary text
    assert secrets.scrub("a k3y") == "a k3y"


def test_a_recorded_response_keeps_no_registered_key_in_its_body_or_headers():
    secrets.register(FAL_CANARY)
    body = json.dumps({"detail": f"bad key {FAL_CANARY}"}).encode() + b"\xff"  # not UTF-8
    response = {
        "status": {"code": 401, "message": "Unauthorized"},
        "headers": {"x-echo": [f"Key {FAL_CANARY}"], "content-type": ["application/json"]},
        "body": {"string": body},
    }
    recorded = redact_response(response)
    assert recorded["body"]["string"].endswith(b'REDACTED"}\xff')
    assert recorded["headers"] == {"x-echo": ["Key REDACTED"], "content-type": ["application/json"]}


def test_a_log_record_that_quotes_a_key_is_written_scrubbed_by_any_handler(caplog):
    """A library logging what it sent (or an exception quoting it) logs no key."""
    secrets.register(FAL_CANARY)
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("some.http.library")
    log.debug("sent headers %r", {"authorization": f"Key {FAL_CANARY}"})
    try:
        raise ValueError(f"Illegal header value {f'Key {FAL_CANARY}'.encode()!r}")
    except ValueError:
        log.exception("request failed")
    log.info("sent %d requests", 3)
    assert "sent headers {'authorization': 'Key REDACTED'}" in caplog.text
    assert "Illegal header value b'Key REDACTED'" in caplog.text
    assert caplog.records[-1].args == (3,)  # a record without a key is left as it is
    assert leaks(caplog.text) == []


ECHOES = {  # how each sample's 401 quotes the key it was sent
    "header": "Unauthorized; request headers: {{'Authorization': 'Key {key}'}}",
    "bytes": "Illegal header value {header!r}",
    "url": "cannot open https://queue.fal.run/app?fal_key={url}",
    "half": "unknown key secret {half}",
}


def echo(template: str, key: str) -> str:
    header = f"Key {key}\r".encode()
    return template.format(key=key, header=header, url=quote(key, safe=""), half=key[-32:])


def test_keys_echoed_by_fal_and_the_judge_reach_no_file_output_or_log(
    tmp_path, monkeypatch, capsys, caplog
):
    """Recorded: fal's 401s echo the key in each form, the judge's 401 echoes its key;
    records, summary, report, manifest, cassette, output and logs hold none of them."""
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    monkeypatch.setenv("JUDGE_API_KEY", JUDGE_CANARY)
    caplog.set_level(logging.DEBUG)
    rows = [{"id": "answered", "video": "https://example.com/a.mp4", "question": "Who?"}]
    rows += [{"id": n, "video": "https://example.com/b.mp4", "question": n} for n in ECHOES]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({**row, "answer": "a man"}) + "\n" for row in rows))
    fal = FalEmulator(reply="A man.")
    for name, template in ECHOES.items():
        fal.inject(
            "server_error",
            status=401,
            error_type="unauthorized",
            message=echo(template, FAL_CANARY),
            when=lambda body, name=name: body["prompt"].startswith(f"{name}\n"),
        )
    judge = OpenAIEmulator(api_key=JUDGE_CANARY)
    judge.inject("server_error", status=401, message=echo(ECHOES["bytes"], JUDGE_CANARY))
    args = [
        "run",
        "--backend",
        "fal",
        "-B",
        "poll_interval=0.001",
        "--benchmark",
        f"manifest:{path}",
    ]
    args += ["--judge-model", "judge-2024-07-18", "--out", str(tmp_path / "runs"), "--no-progress"]

    with fal.installed(), judge.installed():
        assert main([*args, "--record", str(tmp_path / "rec"), "--run-id", "echoed"]) == 0

    records = {r.sample_id: r for r in read_records(tmp_path / "runs/echoed/records.jsonl").records}
    assert all(records[n].error.message.count("REDACTED") == 1 for n in ECHOES)  # echoed
    assert "REDACTED" in records["answered"].score.judge["error"]
    assert scan_files(tmp_path) == {}
    output = capsys.readouterr()
    assert leaks(output.out + output.err) == []
    assert leaks(caplog.text) == []


def test_the_openai_backends_key_echoed_by_its_server_reaches_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_VLLM_KEY", OPENAI_CANARY)
    path = tmp_path / "questions.jsonl"
    row = {"id": "q", "video": "https://example.com/a.mp4", "question": "Who?", "answer": "a man"}
    path.write_text(json.dumps(row) + "\n")
    args = ["run", "--backend", "openai", "-B", "api_key_env=MY_VLLM_KEY", "-B", "frames=server"]
    args += ["--benchmark", f"manifest:{path}", "--out", str(tmp_path / "runs"), "--no-progress"]
    key = OPENAI_CANARY
    message = (
        f"bad key {key!r}, {json.dumps(key)}, {quote(key, safe='')}; Authorization: Bearer {key}"
    )
    with VLLMEmulator(api_key=OPENAI_CANARY).installed() as server:
        server.inject("server_error", status=401, message=message)
        assert main([*args, "--record", str(tmp_path / "rec"), "--run-id", "echoed"]) == 0
    (record,) = read_records(tmp_path / "runs/echoed/records.jsonl").records
    assert record.error is not None and record.error.message.count("REDACTED") == 4
    assert scan_files(tmp_path) == {}


def fal_run(tmp_path: Path) -> list[str]:
    return ["run", "--backend", "fal", "--out", str(tmp_path / "runs"), "--no-progress"]


@pytest.mark.parametrize(
    ("variables", "command"),
    [
        ({"FAL_KEY": f"{FAL_CANARY}\r"}, fal_run),  # a CRLF .env file
        ({"FAL_KEY_ID": FAL_CANARY[:36], "FAL_KEY_SECRET": f" {FAL_CANARY[37:]}"}, fal_run),
        (
            {"MY_VLLM_KEY": f"{OPENAI_CANARY}\r"},
            lambda tmp_path: [*fal_run(tmp_path)[:2], "openai", "-B", "api_key_env=MY_VLLM_KEY"],
        ),
        (
            {"FAL_KEY": FAL_CANARY, "JUDGE_API_KEY": f"{JUDGE_CANARY}\r"},
            lambda tmp_path: [*fal_run(tmp_path), "--judge-model", "judge-2024-07-18"],
        ),
    ],
    ids=["fal-key", "fal-key-secret", "openai-api-key-env", "judge-key"],
)
def test_a_key_with_stray_whitespace_is_refused_at_start_in_one_line(
    tmp_path, monkeypatch, capsys, variables, command
):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    (stray,) = [name for name, value in variables.items() if value != value.strip()]
    with FalEmulator().installed() as service:  # whatever the backend, nothing leaves
        assert main(command(tmp_path)) == 2
    assert service.requests == []
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"vqa-harness: error: ${stray} has ") and "remove it" in line
    assert leaks(line) == []
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("error", "status"), [(HarnessError, 2), (RuntimeError, 1)])
def test_an_error_line_or_a_bugs_traceback_that_quotes_a_key_is_scrubbed(
    tmp_path, monkeypatch, capsys, error, status
):
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    path = tmp_path / "questions.jsonl"
    row = {"id": "q", "video": "https://example.com/a.mp4", "question": "Who?", "answer": "a"}
    path.write_text(json.dumps(row) + "\n")

    def refuse(spec, mode):
        raise error(f"login refused for {FAL_CANARY!r}")

    monkeypatch.setattr("harness.run.session._backend", refuse)
    assert main([*fal_run(tmp_path), "--benchmark", f"manifest:{path}"]) == status
    err = capsys.readouterr().err
    assert "login refused for 'REDACTED'" in err and leaks(err) == []
