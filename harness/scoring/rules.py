"""How benchmarks score answers: multiple choice by the shared extractor, open-ended by
metrics; and how an LLM judge's verdict changes a score (`apply_judge`, which the runner
calls: the one place a judge is applied)."""

from __future__ import annotations

from dataclasses import replace

from harness.scoring.choice import explain_choice
from harness.scoring.judge import Judge
from harness.scoring.open_ended import open_ended_metrics
from harness.types import Sample, Score


def score_multiple_choice(sample: Sample, text: str) -> Score:
    """Score with the shared ranked extractor; an unreadable answer is wrong, with a reason."""
    extraction = explain_choice(text, sample.options)
    if extraction.letter is None:
        return Score(correct=False, prediction=None, reason=extraction.reason)
    return Score(
        correct=extraction.letter == sample.answer,
        prediction=extraction.letter,
        rule=extraction.rule,
    )


def score_open_ended(sample: Sample, text: str) -> Score:
    """Exact match, token F1, WER and CER against `sample.answer` and any other
    accepted answers in `sample.meta["references"]`; correct means exact match."""
    metrics = open_ended_metrics(text, references(sample))
    return Score(
        correct=metrics["exact_match"] == 1.0,
        prediction=text.strip(),
        rule="exact_match",
        metrics=metrics,
    )


def references(sample: Sample) -> list[str]:
    """An open-ended sample's accepted answers: `answer`, then `meta["references"]`."""
    return [sample.answer, *sample.meta.get("references", ())]


def apply_judge(score: Score, sample: Sample, text: str, judge: Judge) -> Score:
    """`score` with the judge's verdict kept beside it, in `Score.judge`: `correct` stays
    the benchmark's own (primary) score, whatever the judge says; a judge failure is
    noted in `reason` too. Summaries report the judge's accuracy on a line of its own."""
    verdict = judge.grade(sample.question, references(sample), text)
    if "error" in verdict:
        return replace(score, judge=verdict, reason=f"judge_failed: {verdict['error']}")
    return replace(score, judge=verdict)
