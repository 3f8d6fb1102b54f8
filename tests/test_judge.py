"""The LLM judge: its HTTP replayed from per-test cassettes (record mode `none`), its
verdict parser, retries, and scoring open-ended answers with it.

There is no real endpoint or key here: `nox -s record` (tests/record_fal.py) re-records
the cassettes with `--record-mode=rewrite` against the emulator in `openai_emulator.py`,
and each cassette's metadata `source` says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import yaml
from openai_emulator import OpenAIEmulator

from harness.scoring.judge import (
    PROMPT_VERSION,
    Judge,
    JudgeError,
    VerdictError,
    parse_verdict,
    retry_delay,
)
from harness.scoring.rules import apply_judge, score_open_ended
from harness.types import Sample

CASSETTES = Path(__file__).resolve().parent / "cassettes" / "test_judge"
EMULATOR_SOURCE = (
    "emulator (tests/openai_emulator.py): an OpenAI-compatible chat-completions stand-in; "
    "verdicts are scripted, not a model's"
)
BASE_URL = "https://api.openai.com/v1"
MODEL = "gpt-4o-2024-08-06"
KEY_ENV = "JUDGE_API_KEY"
CANARY = "sk-proj-c4n4ry0123456789abcdefCANARYKEYxyz"
WRONG_KEY = "sk-proj-wr0ngk3y9876543210fedcbaWRONGKEYabc"
SAMPLE = Sample(
    id="q1",
    video="clip.mp4",
    question="What is the man doing?",
    answer="playing guitar",
    meta={"references": ["playing the guitar"]},
)
VERDICT_KEYS = {"model", "prompt_version", "raw", "correct", "score"}
ERROR_KEYS = {"model", "prompt_version", "raw", "error"}


@pytest.fixture
def endpoint(vcr, monkeypatch) -> Iterator[OpenAIEmulator]:
    """The emulator, installed only when recording: a replay is answered by the cassette
    alone. The canary key is in the environment either way."""
    monkeypatch.setenv(KEY_ENV, CANARY)
    emulator = OpenAIEmulator(api_key=CANARY, base_url=BASE_URL)
    assert vcr.get_metadata("source", EMULATOR_SOURCE) == EMULATOR_SOURCE
    if vcr.write_protected:
        yield emulator
        return
    with emulator.installed():
        yield emulator


@pytest.fixture
def delays(monkeypatch) -> list[float]:
    """The judge's waits between retries, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr("harness.scoring.judge.time.sleep", waits.append)
    return waits


def judge(**options) -> Judge:
    return Judge(BASE_URL, MODEL, **options)


def judged(text: str, grader: Judge):
    """SAMPLE's open-ended score of `text` with `grader`'s verdict, as the runner applies it."""
    return apply_judge(score_open_ended(SAMPLE, text), SAMPLE, text, grader)


def statuses(cassette) -> list[int]:
    return [response["status"]["code"] for response in cassette.responses]


def keyless(result: dict) -> dict:
    """`result`, after checking that no part of either key is in it."""
    text = json.dumps(result)
    for key in (CANARY, WRONG_KEY):
        assert key not in text and key[8:20] not in text and key[-4:] not in text
    return result


# -- HTTP, replayed from cassettes ------------------------------------------------------


@pytest.mark.vcr
def test_a_yes_verdict_is_kept_beside_the_primary_score(vcr, endpoint, delays):
    endpoint.reply = "{'pred': 'yes', 'score': 5}"
    score = judged("The man is strumming a guitar.", judge())
    # The benchmark's own score (exact match) stays primary: the judge never overwrites it.
    assert not score.correct and score.rule == "exact_match" and score.reason is None
    assert score.metrics["exact_match"] == 0.0
    assert keyless(score.judge) == {
        "model": MODEL,
        "prompt_version": PROMPT_VERSION,
        "raw": "{'pred': 'yes', 'score': 5}",
        "correct": True,
        "score": 5.0,
    }
    (request,) = vcr.requests
    assert request.method == "POST" and request.uri == f"{BASE_URL}/chat/completions"
    body = json.loads(request.body)
    assert body["model"] == MODEL and body["temperature"] == 0 and body["max_tokens"] == 64
    system, user = body["messages"]
    assert system["role"] == "system" and "correctness of generative outputs" in system["content"]
    assert "Question: What is the man doing?\n" in user["content"]
    assert "Correct Answer: playing guitar OR playing the guitar\n" in user["content"]
    assert "Predicted Answer: The man is strumming a guitar.\n" in user["content"]
    assert delays == []


@pytest.mark.vcr
def test_a_no_verdict_is_kept_beside_the_primary_score(vcr, endpoint):
    endpoint.reply = "{'pred': 'no', 'score': 1}"
    score = judged("He is singing.", judge())
    assert not score.correct and score.rule == "exact_match"
    assert keyless(score.judge)["correct"] is False and score.judge["score"] == 1.0
    assert set(score.judge) == VERDICT_KEYS
    assert statuses(vcr) == [200]


@pytest.mark.vcr
def test_a_garbage_answer_is_a_judge_failure_not_a_zero(vcr, endpoint):
    endpoint.reply = "The predicted answer matches the correct answer quite well."
    score = judged("Playing guitar.", judge())
    assert set(keyless(score.judge)) == ERROR_KEYS
    assert score.judge["raw"] == "The predicted answer matches the correct answer quite well."
    assert score.judge["error"].startswith("unparseable: no {'pred'")
    # No verdict: correct stays exact match, and the reason says the judge failed.
    assert score.correct and score.rule == "exact_match"
    assert score.reason == f"judge_failed: {score.judge['error']}"


@pytest.mark.vcr
def test_a_server_error_is_retried(vcr, endpoint, delays):
    endpoint.inject("server_error", status=500)
    result = keyless(judge().grade(SAMPLE.question, [SAMPLE.answer], "playing a guitar"))
    assert result["correct"] is True and result["score"] == 5.0
    assert statuses(vcr) == [500, 200]
    assert len(delays) == 1 and 0 < delays[0] <= 1


@pytest.mark.vcr
def test_a_rate_limit_is_retried_after_what_retry_after_says(vcr, endpoint, delays):
    endpoint.inject("rate_limit", retry_after=7)
    result = keyless(judge().grade(SAMPLE.question, [SAMPLE.answer], "playing a guitar"))
    assert result["correct"] is True
    assert statuses(vcr) == [429, 200]
    assert delays == [7.0]


@pytest.mark.vcr
def test_server_errors_past_the_retries_are_a_judge_failure(vcr, endpoint, delays):
    endpoint.inject("server_error", status=503, times=3)
    result = keyless(judge(max_retries=2).grade(SAMPLE.question, [SAMPLE.answer], "guitar"))
    assert set(result) == ERROR_KEYS and result["raw"] is None
    assert result["error"] == (
        "http_error: 503 Service Unavailable: "
        "The server had an error while processing your request. Sorry about that!"
    )
    assert statuses(vcr) == [503, 503, 503] and len(delays) == 2


@pytest.mark.vcr
def test_a_wrong_key_is_a_judge_failure_without_retries_or_the_key(
    vcr, endpoint, delays, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    result = keyless(judge().grade(SAMPLE.question, [SAMPLE.answer], "guitar"))
    assert set(result) == ERROR_KEYS and result["raw"] is None
    assert result["error"] == (
        "http_error: 401 Unauthorized: Incorrect API key provided: REDACTED. "
        "You can find your API key at https://platform.openai.com/account/api-keys."
    )
    assert statuses(vcr) == [401] and delays == []


@pytest.mark.vcr
def test_a_body_that_is_not_json_is_a_judge_failure(vcr, endpoint):
    endpoint.inject("non_json")
    result = keyless(judge().grade(SAMPLE.question, [SAMPLE.answer], "guitar"))
    assert set(result) == ERROR_KEYS and result["raw"] is None
    assert result["error"].startswith("invalid_response: body is not JSON: '<!DOCTYPE html>")


@pytest.mark.vcr
def test_a_body_without_choices_is_a_judge_failure(vcr, endpoint):
    endpoint.inject("missing_choices")
    result = keyless(judge().grade(SAMPLE.question, [SAMPLE.answer], "guitar"))
    assert result["error"] == "invalid_response: no choices[0].message.content in the body"


def test_no_judge_cassette_holds_a_key_or_an_authorization_header():
    cassettes = sorted(CASSETTES.glob("*.yaml"))
    assert len(cassettes) == 9
    for path in cassettes:
        text = path.read_text()
        assert CANARY not in text and WRONG_KEY not in text, path
        assert "Bearer" not in text, path
        cassette = yaml.safe_load(text)
        assert cassette["metadata"]["source"] == EMULATOR_SOURCE
        for interaction in cassette["interactions"]:
            assert "authorization" not in {h.lower() for h in interaction["request"]["headers"]}


# -- without cassettes --------------------------------------------------------------------


def test_the_emulator_wants_the_bearer_key_that_the_judge_sends(monkeypatch):
    monkeypatch.setenv(KEY_ENV, CANARY)
    emulator = OpenAIEmulator(api_key=CANARY, base_url=BASE_URL)
    with emulator.installed():
        assert judge().grade("Q?", ["a"], "a")["correct"] is True
        monkeypatch.delenv(KEY_ENV)
        result = judge().grade("Q?", ["a"], "a")
    assert result["error"].startswith("http_error: 401 Unauthorized: You didn't provide an API key")
    (body,) = emulator.received
    assert body["temperature"] == 0 and body["model"] == MODEL


def test_transport_errors_are_retried_then_a_judge_failure(monkeypatch, delays):
    monkeypatch.setenv(KEY_ENV, CANARY)
    emulator = OpenAIEmulator(api_key=CANARY, base_url=BASE_URL)
    emulator.inject("drop")
    with emulator.installed():
        assert judge().grade("Q?", ["a"], "a")["correct"] is True
        emulator.inject("drop", times=2)
        result = judge(max_retries=1).grade("Q?", ["a"], "a")
    assert result["error"] == "transport_error: ReadError: connection reset by peer"
    assert result["raw"] is None and len(delays) == 2


def test_describe_says_how_the_judge_grades_and_holds_no_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, CANARY)
    described = Judge.from_env(BASE_URL, MODEL, max_tokens=32).describe()
    assert set(described) == {
        "base_url",
        "model",
        "prompt_version",
        "temperature",
        "max_tokens",
        "prompt",
    }
    assert described["temperature"] == 0 and described["max_tokens"] == 32
    assert described["model"] == MODEL and described["prompt_version"] == PROMPT_VERSION
    assert "Python dictionary string" in described["prompt"]["user"]
    assert CANARY not in json.dumps(described) and CANARY not in repr(judge())


def test_a_live_judge_without_its_key_fails_up_front(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(
        JudgeError,
        match=r"^no judge API key: set JUDGE_API_KEY to the API key of .*--judge-key-env$",
    ):
        Judge.from_env(BASE_URL, MODEL)
    monkeypatch.setenv("OTHER_KEY", CANARY)
    Judge(BASE_URL, MODEL, api_key_env="OTHER_KEY").check()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": " "}, "model is required"),
        ({"base_url": "api.openai.com/v1"}, "must be an http"),
        ({"prompt_version": "v0"}, "unknown judge prompt_version 'v0'"),
        ({"max_retries": -1}, "max_retries >= 0"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(JudgeError, match=message):
        Judge(**{"base_url": BASE_URL, "model": MODEL, **options})


def test_without_a_judge_open_ended_scoring_is_unchanged():
    score = score_open_ended(SAMPLE, "Playing the guitar!")
    assert score.correct and score.rule == "exact_match" and score.judge is None


# -- the verdict parser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "correct", "score"),
    [
        ("{'pred': 'yes', 'score': 4}", True, 4.0),
        ("{'pred': 'no', 'score': 0}", False, 0.0),
        ('{"pred": "yes", "score": 5}', True, 5.0),
        ("{'pred': 'yes', 'score': 4.8}", True, 4.8),
        ("  {'pred': 'no', 'score': 2}\n", False, 2.0),
        ("```python\n{'pred': 'yes', 'score': 3}\n```", True, 3.0),
        ('```json\n{\n  "pred": "no",\n  "score": 1\n}\n```', False, 1.0),
        ("Here is my evaluation: {'pred': 'yes', 'score': 4}", True, 4.0),
        ("{'pred': 'yes', 'score': 4}\n\nThe prediction conveys the same action.", True, 4.0),
        ("{'pred': 'Yes', 'score': 5}", True, 5.0),
        ("{'pred': 'NO', 'score': 1}", False, 1.0),
        ("{'Pred': 'no', 'Score': 2}", False, 2.0),
        ("{'pred': 'yes', 'score': '4'}", True, 4.0),
        ("{ 'pred' : 'no' , 'score' : 1 , }", False, 1.0),
        ("{\u2018pred\u2019: \u2018yes\u2019, \u2018score\u2019: 5}", True, 5.0),
        ("{\u201cpred\u201d: \u201cno\u201d, \u201cscore\u201d: 0}", False, 0.0),
        ('{"pred": "no", "score": 1, "reason": "It names a different colour."}', False, 1.0),
        ('{"evaluation": {"pred": "yes", "score": 5}}', True, 5.0),
        ("{'pred': 'yes', 'score': 4}\n{'pred': 'yes', 'score': 4}", True, 4.0),
        ("{'pred': 'yes', 'score': 0}", True, 0.0),  # the verdict is 'pred'; score is apart
    ],
)
def test_the_parser_reads_realistic_judge_outputs(text, correct, score):
    verdict = parse_verdict(text)
    assert (verdict.correct, verdict.score) == (correct, score)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no {'pred'"),
        ("yes", "no {'pred'"),
        ("The answer is correct; I would give it a 5.", "no {'pred'"),
        ("pred: yes, score: 4", "no {'pred'"),
        ("{'pred': 'yes', 'score': 4", "no {'pred'"),  # cut off (finish_reason "length")
        ("{'pred': 'yes', 'score': 6}", "between 0 and 5"),
        ("{'pred': 'no', 'score': -1}", "between 0 and 5"),
        ("{'pred': 'yes', 'score': 40}", "between 0 and 5"),
        ('{"pred": "yes", "score": NaN}', "between 0 and 5"),
        ("{'pred': 'maybe', 'score': 3}", "'pred' must be 'yes' or 'no'"),
        ("{'pred': None, 'score': 3}", "'pred' must be 'yes' or 'no'"),
        ("{'pred': 'yes'}", "'score' must be a number"),
        ("{'score': 4}", "'pred' must be"),
        ("{'pred': 'yes', 'score': 'high'}", "'score' must be a number"),
        ("{'pred': 'yes', 'score': True}", "'score' must be a number"),
        ("{'pred': 'yes', 'score': [4]}", "'score' must be a number"),
        ("{'pred': 'yes', 'score': 5} or maybe {'pred': 'no', 'score': 1}", "disagree"),
    ],
)
def test_the_parser_refuses_outputs_without_a_clear_verdict(text, message):
    with pytest.raises(VerdictError, match=message):
        parse_verdict(text)


# -- retry delays -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3600"}, 60.0),  # capped
        ({"retry-after": "-3"}, 0.0),
    ],
)
def test_retry_after_is_honoured(headers, expected):
    assert retry_delay(httpx.Response(429, headers=headers), attempt=0) == expected


def test_retry_after_as_a_date_and_backoff_without_it():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_delay(httpx.Response(503, headers={"retry-after": later}), 0) <= 30
    for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8)]):
        assert low <= retry_delay(httpx.Response(500), attempt) <= high
    assert 0.5 <= retry_delay(httpx.Response(429, headers={"retry-after": "soon"}), 0) <= 1
