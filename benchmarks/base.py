"""The contract every benchmark implements, its registry, and shared multiple-choice pieces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import ClassVar, Protocol, runtime_checkable

from harness.registry import Registry
from harness.scoring.choice import explain_choice, option_letters
from harness.scoring.judge import Judge
from harness.scoring.open_ended import open_ended_metrics
from harness.types import Sample, Score


@runtime_checkable
class Benchmark(Protocol):
    """A set of samples, the prompt each is asked with, and how answers are scored.

    Implementations are dataclasses whose fields are their options. `version`
    changes whenever samples, prompts or scoring change, so runs compare only
    like with like.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def samples(self) -> Iterator[Sample]: ...

    def prompt(self, sample: Sample) -> str: ...

    def score(self, sample: Sample, text: str) -> Score: ...


registry: Registry[Benchmark] = Registry("benchmark", entry_point_group="vqa_harness.benchmarks")

MULTIPLE_CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def multiple_choice_prompt(sample: Sample) -> str:
    """The question, its lettered options, and the field's usual instruction."""
    lines = [sample.question]
    lines += [
        f"{letter}. {text}"
        for letter, text in zip(option_letters(len(sample.options)), sample.options, strict=True)
    ]
    lines.append(MULTIPLE_CHOICE_INSTRUCTION)
    return "\n".join(lines)


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


def score_open_ended(sample: Sample, text: str, judge: Judge | None = None) -> Score:
    """Exact match, token F1, WER and CER against `sample.answer` and any other
    accepted answers in `sample.meta["references"]`; correct means exact match.

    With a `judge`, its verdict goes into `Score.judge` and decides `correct`; when
    the judge fails, `correct` stays exact match and `reason` says `judge_failed: ...`.
    """
    metrics = open_ended_metrics(text, references(sample))
    score = Score(
        correct=metrics["exact_match"] == 1.0,
        prediction=text.strip(),
        rule="exact_match",
        metrics=metrics,
    )
    return score if judge is None else apply_judge(score, sample, text, judge)


def references(sample: Sample) -> list[str]:
    """An open-ended sample's accepted answers: `answer`, then `meta["references"]`."""
    return [sample.answer, *sample.meta.get("references", ())]


def apply_judge(score: Score, sample: Sample, text: str, judge: Judge) -> Score:
    """`score` with the judge's verdict: it decides `correct`; a judge failure is kept
    in `Score.judge` and `reason`, and `correct` stays what the metrics said."""
    verdict = judge.grade(sample.question, references(sample), text)
    if "error" in verdict:
        return replace(score, judge=verdict, reason=f"judge_failed: {verdict['error']}")
    return replace(score, correct=verdict["correct"], rule="judge", judge=verdict)


def local_video(benchmark: Benchmark, sample: Sample) -> str:
    """The sample's video as a local path or URL a backend can read.

    A benchmark whose videos live on the Hub implements `fetch_video(sample)`
    to download only this sample's video; it is called (in a worker thread)
    for selected samples only, shortly before they run (the runner's decode ahead).
    """
    fetch = getattr(benchmark, "fetch_video", None)
    return fetch(sample) if fetch is not None else sample.video
