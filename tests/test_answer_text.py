"""Scoring reads answers without special-token markup, and says so; records keep it."""

from __future__ import annotations

import pytest

from harness.run.runner import _score
from harness.scoring.answer_text import readable
from harness.scoring.rules import score_multiple_choice, score_open_ended
from harness.types import Sample


@pytest.mark.parametrize(
    ("text", "expected", "removed"),
    [
        ("A red ball.", "A red ball.", ()),
        ("<ref>a red ball</ref>", "a red ball", ("<ref>", "</ref>")),
        ("<ref>cat</ref>dog", "cat dog", ("<ref>", "</ref>")),
        ("B<|im_end|>", "B", ("<|im_end|>",)),
        (
            "<box>12 34 56 78</box> <|reserved_special_token_3|>three",
            "12 34 56 78 three",
            ("<box>", "</box>", "<|reserved_special_token_3|>"),
        ),
        ("a < b and c > d", "a < b and c > d", ()),  # no markup: nothing removed
        ("x <reference> y", "x <reference> y", ()),
    ],
)
def test_special_token_text_is_removed_and_listed(text, expected, removed):
    answer = readable(text)
    assert (answer.text, answer.removed) == (expected, removed)


OPEN = Sample("s1", "v.mp4", "What rolls?", "red ball")
CHOICE = Sample("s2", "v.mp4", "Which?", "B", ("cat", "dog"))


class OpenEnded:
    def score(self, sample, text):
        return score_open_ended(sample, text)


class Choice:
    def score(self, sample, text):
        return score_multiple_choice(sample, text)


def test_grounding_markup_never_counts_as_words_in_open_ended_metrics():
    marked = _score(OpenEnded(), OPEN, "<ref>red ball</ref><|im_end|>", judge=None)
    plain = _score(OpenEnded(), OPEN, "red ball", judge=None)
    assert marked.metrics == plain.metrics and marked.correct
    assert marked.prediction == "red ball"
    assert (
        marked.rule
        == "exact_match (read with special-token text removed: <ref>, </ref>, <|im_end|>)"
    )
    assert plain.rule == "exact_match"


def test_an_unreadable_answer_says_how_it_was_read():
    score = _score(Choice(), CHOICE, "<ref></ref>", judge=None)
    assert score.prediction is None and not score.correct
    assert score.reason.endswith("(read with special-token text removed: <ref>, </ref>)")
