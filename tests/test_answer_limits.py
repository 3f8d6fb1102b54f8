"""Answers a run cannot keep fail their sample: text over the cap, numbers that are not finite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fal_emulator import FalEmulator

from harness.cli import main
from harness.run.store import read_records
from harness.types import (
    ANSWER_TOO_LARGE,
    INVALID_RESPONSE,
    MAX_ANSWER_CHARS,
    Answer,
    BackendError,
    Record,
    check_answer,
)

SAMPLES = ("q0", "q1", "q2")


def fal_run(tmp_path: Path, monkeypatch, fal: FalEmulator) -> dict[str, Record]:
    """A question per sample id (the id is the question) through fal, reported; the run's
    records by sample id."""
    monkeypatch.setenv("FAL_KEY", "test-key-0123456789")
    rows = [
        {"id": i, "video": "https://example.com/a.mp4", "question": i, "answer": "x"}
        for i in SAMPLES
    ]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.001", "--no-progress"]
    args += ["--benchmark", f"manifest:{path}", "--out", str(tmp_path), "--run-id", "r"]
    with fal.installed():
        assert main(args) == 0
    return {r.sample_id: r for r in read_records(tmp_path / "r" / "records.jsonl").records}


def refuse_constant(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


@pytest.mark.parametrize("inference_time", [-math.inf, math.nan])
def test_a_non_finite_number_from_fal_fails_its_sample(tmp_path, monkeypatch, inference_time):
    """fal's `inference_time: -Infinity` once reached records.jsonl and summary.json."""
    records = fal_run(tmp_path, monkeypatch, FalEmulator(inference_time=inference_time))
    assert set(records) == set(SAMPLES)
    for record in records.values():
        assert record.error is not None and record.error.kind == INVALID_RESPONSE
        assert record.error.message.startswith("the answer's timings.inference = ")
    for line in (tmp_path / "r" / "records.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse_constant)
    json.loads((tmp_path / "r" / "summary.json").read_text(), parse_constant=refuse_constant)


def test_an_answer_over_the_cap_fails_its_sample_and_one_at_the_cap_does_not(tmp_path, monkeypatch):
    """A 50 MB answer once took seconds to score and bloated every file holding it."""
    sizes = {"q0": MAX_ANSWER_CHARS, "q1": MAX_ANSWER_CHARS + 1, "q2": 50 * 2**20}
    fal = FalEmulator(reply=lambda body: "x" * sizes[body["prompt"].split("\n")[0]])
    records = fal_run(tmp_path, monkeypatch, fal)
    assert records["q0"].ok and len(records["q0"].response or "") == MAX_ANSWER_CHARS
    for sample in ("q1", "q2"):
        error = records[sample].error
        assert error is not None and error.kind == ANSWER_TOO_LARGE
        assert f"{MAX_ANSWER_CHARS:,}" in error.message and records[sample].response is None
    assert (tmp_path / "r" / "records.jsonl").stat().st_size < 3 * MAX_ANSWER_CHARS  # not 50 MB


@pytest.mark.parametrize(
    "answer",
    [
        Answer("ok", timings={"inference": math.inf}),
        Answer("ok", usage={"output_tokens": math.nan}),  # type: ignore[dict-item]
        Answer("ok", meta={"server": {"load": [0.5, -math.inf]}}),
    ],
)
def test_check_answer_finds_a_non_finite_number_anywhere_in_an_answer(answer):
    with pytest.raises(BackendError) as refused:
        check_answer(answer)
    assert refused.value.kind == INVALID_RESPONSE
    assert "not a finite number" in refused.value.message


def test_check_answer_keeps_an_ordinary_answer():
    answer = Answer("A", timings={"inference": 0.4}, usage={"output_tokens": 3}, meta={"id": 1})
    assert check_answer(answer) is answer
