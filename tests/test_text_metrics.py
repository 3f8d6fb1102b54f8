"""Open-ended metrics checked against values computed by hand."""

from __future__ import annotations

import pytest

from harness.scoring.open_ended import open_ended_metrics
from harness.scoring.rules import score_open_ended
from harness.scoring.text import normalize
from harness.types import Sample


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Cat, sleeping!", "cat sleeping"),
        ("  An apple  a day ", "apple day"),
        ("Three dogs", "3 dogs"),
        (
            "\u201cCaf\u00e9\u201d \u2013 the one\u2026",
            "caf\u00e9 1",
        ),  # any script, any punctuation
        ("", ""),
    ],
)
def test_normalize(text, normalized):
    assert normalize(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        # identical after normalisation
        ("The dog.", ["dog"], {"exact_match": 1.0, "token_f1": 1.0, "wer": 0.0, "cer": 0.0}),
        # "cat is sleeping" vs "cat sleeping": overlap 2, P=2/3, R=1 -> F1=0.8;
        # WER: one insertion over 2 reference words = 0.5; CER: 3 inserted chars / 12 = 0.25
        (
            "The cat is sleeping.",
            ["a cat sleeping"],
            {"exact_match": 0.0, "token_f1": 0.8, "wer": 0.5, "cer": 0.25},
        ),
        # best over references: the second one matches exactly
        ("three", ["four", "3"], {"exact_match": 1.0, "token_f1": 1.0, "wer": 0.0, "cer": 0.0}),
        # nothing in common: 1 substitution of 1 word; 3 of 3 characters
        ("no", ["yes"], {"exact_match": 0.0, "token_f1": 0.0, "wer": 1.0, "cer": 1.0}),
        ("", ["yes"], {"exact_match": 0.0, "token_f1": 0.0, "wer": 1.0, "cer": 1.0}),
    ],
)
def test_open_ended_metrics_by_hand(prediction, references, expected):
    assert open_ended_metrics(prediction, references) == pytest.approx(expected)


def test_open_ended_scoring_uses_all_references_and_needs_one():
    sample = Sample("s", "v.mp4", "What?", "kitten", meta={"references": ["cat"]})
    score = score_open_ended(sample, "A cat.")
    assert score.correct and score.rule == "exact_match" and score.metrics["token_f1"] == 1.0
    with pytest.raises(ValueError, match="at least one reference"):
        open_ended_metrics("x", [])
