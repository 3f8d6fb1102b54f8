"""The prompts benchmarks share: a multiple-choice question with lettered options."""

from __future__ import annotations

from collections.abc import Sequence

from harness.scoring.choice import option_letters
from harness.types import Sample

MULTIPLE_CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def multiple_choice_prompt(sample: Sample) -> str:
    """The question, its lettered options, and the field's usual instruction."""
    return "\n".join([sample.question, *lettered(sample.options), MULTIPLE_CHOICE_INSTRUCTION])


def lettered(options: Sequence[str], form: str = "{letter}. {text}") -> list[str]:
    """One line per option, lettered A, B, C... by position: "A. red" (or another `form`)."""
    pairs = zip(option_letters(len(options)), options, strict=True)
    return [form.format(letter=letter, text=text) for letter, text in pairs]
