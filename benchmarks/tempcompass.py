"""TempCompass (`lmms-eval/TempCompass`; Liu et al., ACL 2024 Findings): temporal perception.

Short videos built in conflicting pairs and triplets (same content, different
speed, direction, order...), asked about one temporal dimension each: `action`,
`speed`, `direction`, `order` or `attribute_change` (the category here). The
repo has a config per task format, each `<config>/test-*.parquet` with
`video_id`, `question`, `answer` and `dim`; this adapter runs `multi-choice`
(the question lists its options as "A. ..." lines, the answer is "B. <text>")
or `yes_no` (the answer is "yes" or "no"). `caption_matching` (options labelled
"Sentence A", "Option 1", ...) and `captioning` (graded by an LLM) are not here.

Every video is `videos/<video_id>.mp4` in one 418 MB `tempcompass_videos.zip`;
a selected sample reads its own member by range requests, never the whole zip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from benchmarks.hub import HubBenchmark, block_size_option, repo_option, revision_option
from benchmarks.rows import BadField, invalid_sample, text_field
from harness.scoring.choice import option_letters, option_span
from harness.scoring.official import tempcompass as official
from harness.scoring.prompts import lettered
from harness.scoring.rules import score_multiple_choice
from harness.types import OfficialScore, Sample, Score

REPO_ID = "lmms-eval/TempCompass"
VIDEO_ZIP = "tempcompass_videos.zip"
SPLIT = "test"
YES_NO = ("yes", "no")

# lmms-eval, lmms_eval/tasks/tempcompass (utils.py `tempcompass_doc_to_text_*` and
# _default_template_yaml): the dataset's question, then the post_prompt of its format;
# these are also the TempCompass authors' `answer_prompt`s (llyx97/TempCompass).
INSTRUCTIONS = {
    "multi-choice": "Please directly give the best option:",
    "yes_no": "Please answer yes or no:",
}

_OPTION = re.compile(r"(?P<letter>[A-Z])\.\s*(?P<text>\S.*)")


@dataclass
class TempCompass(HubBenchmark):
    """TempCompass: multiple-choice or yes/no questions on temporal aspects of short videos."""

    name: ClassVar[str] = "tempcompass"
    version: ClassVar[str] = "1"

    config: Literal["multi-choice", "yes_no"] = field(
        default="multi-choice", metadata={"help": "task format: multi-choice or yes_no"}
    )
    repo: str = repo_option(REPO_ID)
    revision: str | None = revision_option("revision of the dataset repo (default: main)")
    block_size_kb: int = block_size_option(f"KiB per range request when reading {VIDEO_ZIP}")

    def samples(self) -> Iterator[Sample]:
        for index, row in enumerate(self._hub.annotations(self.config, split=SPLIT)):
            yield self._sample(index, row)

    def prompt(self, sample: Sample) -> str:
        options = lettered(sample.options) if self.config == "multi-choice" else []
        return "\n".join([sample.question, *options, INSTRUCTIONS[self.config]])

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)

    def official_score(self, sample: Sample, text: str) -> OfficialScore:
        if self.config == "multi-choice":
            return official.score_choice(text, sample.meta["answer_text"])
        return official.score_yes_no(text, sample.answer)

    def _sample(self, index: int, row: Mapping[str, Any]) -> Sample:
        sample_id = f"tempcompass/{self.config}/{index}"
        try:
            video_id = text_field(row, "video_id")
            dim = text_field(row, "dim")
            question = text_field(row, "question")
            answer = text_field(row, "answer")
            if self.config == "multi-choice":
                question, options = _split_options(question)
                letter = _option_letter(answer, options)
            else:
                options = YES_NO
                if answer.lower() not in YES_NO:
                    raise BadField("answer", f"{answer!r} is not yes or no")
                letter = option_letters(2)[YES_NO.index(answer.lower())]
        except BadField as bad:
            return invalid_sample(sample_id, "", f"row {index}", bad)
        return Sample(
            id=sample_id,
            video=f"{VIDEO_ZIP}:videos/{video_id}.mp4",
            question=question,
            answer=letter,
            options=options,
            category=dim,
            meta={"task": dim, "format": self.config, "video_id": video_id, "answer_text": answer},
        )


def _split_options(question: str) -> tuple[str, tuple[str, ...]]:
    """The question's first line, and the texts of the "A. ..." lines after it."""
    stem, *lines = question.split("\n")
    if not 2 <= len(lines) <= 26:
        raise BadField("question", f"expected 2 to 26 option lines, got {question!r}")
    texts = []
    for letter, line in zip(option_letters(len(lines)), lines, strict=True):
        match = _OPTION.fullmatch(line.strip())
        if match is None or match["letter"] != letter:
            raise BadField("question", f"line {line!r} is not option {letter}")
        texts.append(match["text"].strip())
    return stem.strip(), tuple(texts)


def _option_letter(answer: str, options: tuple[str, ...]) -> str:
    """The letter of an answer written "B. <option text>"."""
    match = _OPTION.fullmatch(answer)
    letters = option_letters(len(options))
    if match is None or match["letter"] not in letters:
        raise BadField(
            "answer", f"{answer!r} is not one of the options {option_span(len(letters))}"
        )
    letter = match["letter"]
    option = options[letters.index(letter)]
    if match["text"].strip() != option:
        raise BadField("answer", f"{answer!r} does not match option {letter}, {option!r}")
    return letter
