"""The prompts benchmarks share: a multiple-choice question with lettered options."""

from __future__ import annotations

from harness.scoring.choice import option_letters
from harness.types import Sample

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
