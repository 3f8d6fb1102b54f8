"""NExT-QA (Xiao et al., CVPR 2021): causal, temporal and descriptive questions on
everyday videos, from the Hub mirror `lmms-eval/NExTQA`.

The repo has two configs. `MC` (MC/test-*.parquet) is 5-way multiple choice:
`video`, `frame_count`, `width`, `height`, `question`, `answer` (the correct
option's index), `qid`, `type`, and the options `a0`..`a4`. `OE` (OE/test-* and
OE/validation-*.parquet) is open-ended: the same without options, `answer` as
text, and `additional_ref_answer`, a second accepted answer or empty. `qid`
numbers the questions of one video, so a question is `<video>_<qid>`. Every
video is `NExTVideo/<video>.mp4` in the repo's one 6.5 GB `videos.zip` (where
lmms-eval's nextqa task unzips it to); a selected sample reads its own member by
range requests, never the whole zip.

`type` is the question type: its first letter the family (Causal, Temporal,
Descriptive), the second the kind. The category is the family, `meta["task"]`
the type code, so reports show both breakdowns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from benchmarks.hub import HubBenchmark, repo_option, revision_option
from benchmarks.rows import BadField, invalid_sample, text_field
from harness.scoring.choice import option_letters
from harness.scoring.official import nextqa as official
from harness.scoring.prompts import multiple_choice_prompt
from harness.scoring.rules import references, score_multiple_choice, score_open_ended
from harness.types import OfficialScore, Sample, Score

REPO_ID = "lmms-eval/NExTQA"
VIDEOS_ZIP = "videos.zip"
VIDEO_FOLDER = "NExTVideo"
CHOICES = 5
CONFIGS = {"mc": "MC", "oe": "OE"}

# lmms-eval, lmms_eval/tasks/nextqa/nextqa_oe_test.yaml: post_prompt of the OE task.
OPEN_ENDED_INSTRUCTION = "Answer a question using a short phrase or sentence."

FAMILIES = {"C": "causal", "T": "temporal", "D": "descriptive"}
TYPES = {
    "CW": "why",
    "CH": "how",
    "TP": "previous",
    "TC": "present",
    "TN": "next",
    "DB": "yes/no",
    "DC": "count",
    "DL": "location",
    "DO": "other",
}
"""NExT-QA's question type codes and what each asks; the first letter is the family."""


@dataclass
class NExTQA(HubBenchmark):
    """NExT-QA: 5-way multiple choice (`mode=mc`) or open-ended (`mode=oe`)."""

    name: ClassVar[str] = "nextqa"
    version: ClassVar[str] = "1"

    mode: Literal["mc", "oe"] = field(
        default="mc", metadata={"help": "mc: 5-way multiple choice; oe: open-ended answers"}
    )
    split: str = field(
        default="test", metadata={"help": "annotation split: test (mc, oe) or validation (oe)"}
    )
    repo: str = repo_option(REPO_ID)
    revision: str | None = revision_option("revision of the dataset repo (default: main)")

    def samples(self) -> Iterator[Sample]:
        rows = self._hub.annotations(CONFIGS[self.mode], split=self.split)
        for index, row in enumerate(rows):
            key = _question_key(row, index)
            try:
                yield self._sample(key, row)
            except BadField as bad:
                yield invalid_sample(f"nextqa/{self.mode}/{key}", "", key, bad)

    def prompt(self, sample: Sample) -> str:
        if self.mode == "mc":
            # lmms-eval, lmms_eval/tasks/nextqa/utils.py `nextqa_doc_to_text_mc`: the
            # question, then "A. <a0>" .. "E. <a4>" one per line. Its nextqa_mc_test.yaml
            # sets no post_prompt; we end with the harness's letter instruction (the
            # post_prompt of lmms-eval's Video-MME task), as every MC benchmark here does.
            return multiple_choice_prompt(sample)
        # lmms-eval `nextqa_doc_to_text` with the OE task's post_prompt.
        return f"{sample.question}\n{OPEN_ENDED_INSTRUCTION}"

    def score(self, sample: Sample, text: str) -> Score:
        if self.mode == "mc":
            return score_multiple_choice(sample, text)
        return score_open_ended(sample, text)

    def official_score(self, sample: Sample, text: str) -> OfficialScore:
        if self.mode == "mc":
            return official.score_choice(text, sample.options, sample.answer)
        return official.score_open(text, references(sample), sample.meta["task"])

    def _sample(self, key: str, row: Mapping[str, Any]) -> Sample:
        video, qid = text_field(row, "video"), text_field(row, "qid")
        code = text_field(row, "type")
        if code not in TYPES:
            raise BadField("type", f"unknown question type {code!r}")
        meta: dict[str, Any] = {
            "task": code,
            "question_type": f"{FAMILIES[code[0]]} {TYPES[code]}",
            "video_id": video,
            "qid": qid,
            "frame_count": row.get("frame_count"),
            "width": row.get("width"),
            "height": row.get("height"),
        }
        if self.mode == "mc":
            options = tuple(text_field(row, f"a{i}") for i in range(CHOICES))
            answer = option_letters(CHOICES)[_option_index(row.get("answer"))]
        else:
            options = ()
            answer = text_field(row, "answer")
            extra = str(row.get("additional_ref_answer") or "").strip()
            if extra:
                meta["references"] = [extra]
        return Sample(
            id=f"nextqa/{self.mode}/{key}",
            video=f"{VIDEOS_ZIP}:{VIDEO_FOLDER}/{video}.mp4",
            question=text_field(row, "question"),
            answer=answer,
            options=options,
            category=FAMILIES[code[0]],
            meta=meta,
        )


def _question_key(row: Mapping[str, Any], index: int) -> str:
    """`<video>_<qid>`, NExT-QA's question id; the row's position when either is unusable."""
    try:
        return f"{text_field(row, 'video')}_{text_field(row, 'qid')}"
    except BadField:
        return f"row{index}"


def _option_index(value: Any) -> int:
    text = "" if value is None or isinstance(value, bool) else str(value).strip()
    if not text.isdigit() or int(text) >= CHOICES:
        raise BadField("answer", f"{value!r} is not an option index 0-{CHOICES - 1}")
    return int(text)
