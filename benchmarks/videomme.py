"""Video-MME (`lmms-eval/Video-MME`): 2,700 four-way multiple-choice questions, 3 per video.

The 900 YouTube videos (11 s to 1 h) are bucketed by `duration` (short,
medium, long) and `domain` (Knowledge, Film & Television, ...; the category
here), with a `sub_category` per video and a `task_type` per question.

The repo holds the annotations (`videomme/test-*.parquet`, config `videomme`),
the videos as `data/<videoID>.mp4` members spread over twenty multi-GB
`videos_chunked_NN.zip`, and the subtitles as `subtitle/<videoID>.srt` in
`subtitle.zip` (not every video has them). `samples()` reads the annotations
only (and, with subtitles, `subtitle.zip`'s directory). The first
`fetch_video` lists the video zips' central directories (cached on disk) to
find which zip holds which video; each fetch then reads just that member.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar, TypeGuard

from benchmarks.hub import HubBenchmark, block_size_option, repo_option, revision_option
from benchmarks.rows import BadField, invalid_sample, text_field
from benchmarks.zipindex import ZipIndex
from harness.scoring.choice import option_letters
from harness.scoring.prompts import lettered
from harness.scoring.rules import score_multiple_choice
from harness.types import Sample, Score

REPO_ID = "lmms-eval/Video-MME"
CONFIG = "videomme"
SUBTITLE_ZIP = "subtitle.zip"
VIDEO_ZIPS = "videos_chunked_*.zip"
LETTERS = option_letters(4)

# The prompts are the Video-MME authors' (github.com/BradyFU/Video-MME, README,
# "Evaluation Pipeline"), as lmms-eval writes them out
# (lmms_eval/tasks/videomme/utils.py). Without subtitles: the authors' wording
# (lmms-eval's `videomme_doc_to_text` says "based on the video and the subtitles"
# even then). With subtitles: lmms-eval's `videomme_doc_to_text_subtitle`, header
# and instruction word for word.
INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video."
    " Respond with only the letter (A, B, C, or D) of the correct option."
)
SUBTITLE_HEADER = "This video's subtitles are listed below: "
SUBTITLE_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video"
    " and the subtitles. Respond with only the letter (A, B, C, or D) of the correct option."
)
ANSWER_CUE = "The best answer is:"
NO_SUBTITLES = "no subtitles for this video in subtitle.zip: asked without them"

_REQUIRED = ("question_id", "videoID", "question", "answer", "duration", "domain", "task_type")
_OPTIONAL = ("video_id", "sub_category", "url")
_LETTERED = re.compile(r"(?P<letter>[A-Z])\.\s*(?P<text>.*)", re.S)
_MARKUP = re.compile(r"<[^>]*>")


@dataclass
class VideoMME(HubBenchmark):
    """Video-MME: 4-way multiple choice on short, medium and long YouTube videos."""

    name: ClassVar[str] = "videomme"
    version: ClassVar[str] = "1"

    subtitles: bool = field(
        default=False,
        metadata={"help": "put each video's subtitles (from subtitle.zip) in the prompt"},
    )
    repo: str = repo_option(REPO_ID)
    revision: str | None = revision_option("revision of the dataset repo (default: main)")
    block_size_kb: int = block_size_option("KiB per range request when reading the repo's zips")
    _videos: ZipIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._videos = ZipIndex(self._hub, VIDEO_ZIPS)

    def samples(self) -> Iterator[Sample]:
        rows = self._hub.annotations(CONFIG, split="test")
        subtitles = self._subtitle_members() if self.subtitles else None
        for index, row in enumerate(rows):
            yield self._sample(index, row, subtitles)

    def fetch_video(self, sample: Sample) -> str:
        """Download this sample's video only: one member of one video zip."""
        return str(self._videos.fetch(sample.meta["videoID"]))

    def prompt(self, sample: Sample) -> str:
        body = "\n".join([sample.question, *lettered(sample.options), ANSWER_CUE])
        member = sample.meta.get("subtitle")
        if member:
            srt = self._hub.zip_member(SUBTITLE_ZIP, member).read_bytes()
            text = subtitle_text(srt.decode("utf-8-sig", errors="replace"))
            if text:
                return f"{SUBTITLE_HEADER}\n{text}\n{SUBTITLE_INSTRUCTION}\n{body}"
        return f"{INSTRUCTION}\n{body}"

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)

    def _sample(
        self, index: int, row: Mapping[str, Any], subtitles: Mapping[str, str] | None
    ) -> Sample:
        question_id = row.get("question_id")
        row_id = f"question {question_id}" if _is_text(question_id) else f"row {index}"
        sample_id = f"videomme/{question_id if _is_text(question_id) else f'row-{index}'}"
        video_id = row.get("videoID")
        video = _locator(video_id) if _is_text(video_id) else ""
        try:
            values = {name: text_field(row, name) for name in _REQUIRED}
            options = _options(row.get("options"))
            answer = values["answer"]
            if answer not in LETTERS:
                raise BadField("answer", f"{answer!r} is not one of {', '.join(LETTERS)}")
        except BadField as bad:
            return invalid_sample(sample_id, video, row_id, bad)
        meta: dict[str, Any] = {
            "task": values["task_type"],
            "duration": values["duration"],
            **{name: row.get(name) for name in _OPTIONAL if row.get(name) is not None},
            "videoID": values["videoID"],
            "question_id": values["question_id"],
        }
        if subtitles is not None:
            meta["subtitle"] = subtitles.get(values["videoID"])
            if meta["subtitle"] is None:
                meta["note"] = NO_SUBTITLES
        return Sample(
            id=sample_id,
            video=video,
            question=values["question"],
            answer=answer,
            options=options,
            category=values["domain"],
            meta=meta,
        )

    def _subtitle_members(self) -> dict[str, str]:
        """videoID -> its .srt member in subtitle.zip (the zip's directory only)."""
        members = self._hub.zip_members(SUBTITLE_ZIP)
        return {PurePosixPath(m).stem: m for m in members if m.lower().endswith(".srt")}


@dataclass
class VideoMMESubtitles(VideoMME):
    """Video-MME with each video's subtitles in the prompt (`videomme` with subtitles on)."""

    name: ClassVar[str] = "videomme-subtitles"

    subtitles: bool = field(
        default=True,
        metadata={"help": "put each video's subtitles (from subtitle.zip) in the prompt"},
    )


def subtitle_text(srt: str) -> str:
    """The text of an SRT file's cues, one line per cue, with markup such as `<font>` removed.

    Every cue is kept, as lmms-eval's "full subtitle" mode does: its default keeps
    only the cues at 32 frames sampled from the video, and VLMEvalKit those at the
    model's frames, which would tie the prompt to one backend's frame sampling.
    """
    cues = []
    for block in re.split(r"\n[ \t]*\n", srt.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.strip().split("\n")
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        text = " ".join(_MARKUP.sub(" ", " ".join(lines[timing + 1 :])).split())
        if text:
            cues.append(text)
    return "\n".join(cues)


def _is_text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.strip() != ""


def _options(value: Any) -> tuple[str, ...]:
    """The four choices' texts, their "A. " prefixes removed."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(LETTERS):
        raise BadField("options", f"expected a list of {len(LETTERS)} choices, got {value!r}")
    texts = []
    for letter, option in zip(LETTERS, value, strict=True):
        if not _is_text(option):
            raise BadField("options", f"choice {letter} is {option!r}")
        match = _LETTERED.fullmatch(option.strip())
        if match is not None and match["letter"] != letter:
            raise BadField("options", f"choice {letter} is lettered {match['letter']}: {option!r}")
        text = (match["text"] if match else option).strip()
        if not text:
            raise BadField("options", f"choice {letter} is empty")
        texts.append(text)
    return tuple(texts)


def _locator(video_id: str) -> str:
    """Where the video is: a member of one of the video zips (found on fetch)."""
    return f"{VIDEO_ZIPS}:data/{video_id}.mp4"
