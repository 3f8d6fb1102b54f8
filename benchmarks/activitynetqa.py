"""ActivityNet-QA (Yu et al., AAAI 2019): open-ended questions on long web videos,
the 8,000-question test split from the Hub mirror `lmms-eval/ActivityNetQA`.

Annotations are `data/test-*.parquet` (config `default`): `video_name`,
`question_id`, `question`, `answer`, `type`. The videos, `v_<video_name>` with
an .mp4, .webm or .mkv extension, are spread over the repo's
`videos_chunked_NN.zip` files (about 5.3 GB each), and nothing says which zip
holds which video. A selected sample's video is found in the zips' central
directories (read once by range requests and kept, see `benchmarks.zipindex`),
and then only that member is read.

`type` is the dataset's code (MILVLG/activitynet-qa, dataset/README.md): 0-2
are question types (motion, spatial relation, temporal relation), 3-8 the answer
type of the remaining "free" questions (yes/no, color, object, location,
number, other). The category is its name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from benchmarks.hub import HubBenchmark, repo_option, revision_option
from benchmarks.rows import BadField, invalid_sample, text_field
from benchmarks.zipindex import ZipIndex
from harness.scoring.official import activitynetqa as official
from harness.scoring.rules import score_open_ended
from harness.scoring.text import normalize
from harness.types import OfficialScore, Sample, Score

REPO_ID = "lmms-eval/ActivityNetQA"
VIDEO_ZIPS = "videos_chunked_*.zip"

# lmms-eval, lmms_eval/tasks/activitynetqa/_default_template_yaml: the post_prompt
# that `activitynetqa_doc_to_text` appends to the question and its "?".
INSTRUCTION = "Answer the question using a single word or phrase."

TYPES = {
    "0": "motion",
    "1": "spatial relation",
    "2": "temporal relation",
    "3": "yes/no",
    "4": "color",
    "5": "object",
    "6": "location",
    "7": "number",
    "8": "other",
}
YES_NO = "3"
QUESTION_TYPES = ("0", "1", "2")
"""Codes that are question types; the other questions are "free", typed by their answer."""


@dataclass
class ActivityNetQA(HubBenchmark):
    """ActivityNet-QA test split: open-ended answers, by question/answer type."""

    name: ClassVar[str] = "activitynetqa"
    version: ClassVar[str] = "1"

    repo: str = repo_option(REPO_ID)
    revision: str | None = revision_option("revision of the dataset repo (default: main)")
    _videos: ZipIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._videos = ZipIndex(self._hub, VIDEO_ZIPS)

    def samples(self) -> Iterator[Sample]:
        for index, row in enumerate(self._hub.annotations(split="test")):
            key = str(row.get("question_id") or "").strip() or f"row{index}"
            try:
                yield _sample(key, row)
            except BadField as bad:
                yield invalid_sample(f"activitynetqa/{key}", "", key, bad)

    def prompt(self, sample: Sample) -> str:
        # lmms-eval, lmms_eval/tasks/activitynetqa/utils.py `activitynetqa_doc_to_text`:
        # f"{pre_prompt}{question}?{post_prompt}", pre_prompt empty.
        question = sample.question.rstrip("?")
        return f"{question}? {INSTRUCTION}"

    def score(self, sample: Sample, text: str) -> Score:
        return score_open_ended(sample, text)

    def official_score(self, sample: Sample, text: str) -> OfficialScore:
        # The reference as the dataset writes it: the official rule compares it verbatim.
        return official.score(text, sample.meta.get("answer_text", sample.answer))

    def fetch_video(self, sample: Sample) -> str:
        """Find the sample's video in the zips' directories and read only that member."""
        return str(self._videos.fetch(sample.meta["video_file"]))


def _sample(key: str, row: Mapping[str, Any]) -> Sample:
    video_name = text_field(row, "video_name")
    code = str(row.get("type")).strip()  # text on the Hub, an integer in MILVLG's json
    if code not in TYPES:
        raise BadField("type", f"{row.get('type')!r} is not a type code 0-8")
    answer = text_field(row, "answer")
    if code == YES_NO:
        answer = normalize(answer)
        if answer not in ("yes", "no"):
            raise BadField("answer", f"{row['answer']!r} answers a yes/no question")
    video_file = f"v_{video_name}"
    return Sample(
        id=f"activitynetqa/{key}",
        video=f"{VIDEO_ZIPS}:{video_file}",
        question=text_field(row, "question"),
        answer=answer,
        category=TYPES[code],
        meta={
            "type": code,
            "question_type": TYPES[code] if code in QUESTION_TYPES else "free",
            "video_name": video_name,
            "video_file": video_file,
            "answer_text": text_field(row, "answer"),
        },
    )
