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

`videomme-subtitles` puts in the prompt the cues at the sampled frames' times,
the Video-MME authors' rule: for each frame the model is shown, the cue whose
span holds the frame's time, each cue once, in order. The frames are those of
the frame recipe in the benchmark's options (MiniCPM-V 2.6's, the local
backend's defaults), placed in time by probing the fetched video. With
`subtitle_rule=all` (and in `videomme -S subtitles=true`) every cue goes in.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar, Literal, NamedTuple, TypeGuard

from benchmarks.hub import HubBenchmark, block_size_option, repo_option, revision_option
from benchmarks.rows import BadField, invalid_sample, text_field
from benchmarks.zipindex import ZipIndex
from harness.scoring.choice import option_letters
from harness.scoring.official import videomme as official
from harness.scoring.prompts import lettered
from harness.scoring.rules import score_multiple_choice
from harness.types import OfficialScore, Sample, Score

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
UNPROBED = "the video could not be probed for its frames' times: every cue is in the prompt"

_REQUIRED = ("question_id", "videoID", "question", "answer", "duration", "domain", "task_type")
_OPTIONAL = ("video_id", "sub_category", "url")
_LETTERED = re.compile(r"(?P<letter>[A-Z])\.\s*(?P<text>.*)", re.S)
_MARKUP = re.compile(r"<[^>]*>")
_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?")


class Cue(NamedTuple):
    """One subtitle cue: its span in seconds (NaN when unreadable) and its text."""

    start: float
    end: float
    text: str


@dataclass
class VideoMME(HubBenchmark):
    """Video-MME: 4-way multiple choice on short, medium and long YouTube videos."""

    name: ClassVar[str] = "videomme"
    version: ClassVar[str] = "1"

    subtitles: bool = field(
        default=False,
        metadata={"help": "put each video's subtitles, every cue (subtitle.zip), in the prompt"},
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
            cues = self._chosen(sample, subtitle_cues(srt.decode("utf-8-sig", errors="replace")))
            if cues:
                text = "\n".join(cue.text for cue in cues)
                return f"{SUBTITLE_HEADER}\n{text}\n{SUBTITLE_INSTRUCTION}\n{body}"
        return f"{INSTRUCTION}\n{body}"

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)

    def official_score(self, sample: Sample, text: str) -> OfficialScore:
        return official.score(text, sample.answer)

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

    def _chosen(self, sample: Sample, cues: list[Cue]) -> list[Cue]:
        """The cues that go in the prompt: all of them."""
        return cues

    def _subtitle_members(self) -> dict[str, str]:
        """videoID -> its .srt member in subtitle.zip (the zip's directory only)."""
        members = self._hub.zip_members(SUBTITLE_ZIP)
        return {PurePosixPath(m).stem: m for m in members if m.lower().endswith(".srt")}


@dataclass
class VideoMMESubtitles(VideoMME):
    """Video-MME with each video's subtitles in the prompt (`videomme` with subtitles on)."""

    name: ClassVar[str] = "videomme-subtitles"
    # 2: the cues at the sampled frames' times (the authors' rule), no longer every cue.
    version: ClassVar[str] = "2"

    subtitles: bool = field(
        default=True,
        metadata={"help": "put each video's subtitles (from subtitle.zip) in the prompt"},
    )
    subtitle_rule: Literal["frames", "all"] = field(
        default="frames",
        metadata={
            "help": "frames: the cues at the sampled frames' times (the Video-MME authors'"
            " rule); all: every cue"
        },
    )
    fps: float = field(
        default=1.0,
        metadata={"help": "frames per second of the frame recipe the cues are chosen for"},
    )
    max_frames: int = field(
        default=64, metadata={"help": "most frames of the frame recipe the cues are chosen for"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {self.max_frames}")

    def _chosen(self, sample: Sample, cues: list[Cue]) -> list[Cue]:
        """The cues at the times of the frames the recipe samples from the sample's video.

        The video is fetched already (the runner fetches it before asking for the
        prompt; `fetch_video` then returns the copy on disk) and only probed, not
        decoded. A video that cannot be probed gets every cue, with a note saying so.
        """
        if self.subtitle_rule == "all":
            return cues
        from harness.media.video import VideoError  # lazily: PyAV is for runs, not listing

        try:
            times = _frame_times(self.fetch_video(sample), self.fps, self.max_frames)
        except (VideoError, ValueError) as exc:
            sample.meta["note"] = f"{UNPROBED} ({exc})"
            return cues
        return cues_at(cues, list(times))


@functools.lru_cache(maxsize=64)
def _frame_times(path: str, fps: float, max_frames: int) -> tuple[float, ...]:
    """The times of the frames the recipe samples from the video at `path`: probed once
    per video, not once per question (Video-MME asks three about each)."""
    from harness.media import video

    info = video.probe(path)
    indices = video.sample_indices(info.frame_count, info.fps, fps=fps, max_frames=max_frames)
    return tuple(index / info.fps for index in indices)


def subtitle_cues(srt: str) -> list[Cue]:
    """An SRT file's cues with text, in order, their markup (such as `<font>`) removed."""
    cues = []
    for block in re.split(r"\n[ \t]*\n", srt.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.strip().split("\n")
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        text = " ".join(_MARKUP.sub(" ", " ".join(lines[timing + 1 :])).split())
        if text:
            start, _, end = lines[timing].partition("-->")
            cues.append(Cue(_seconds(start), _seconds(end), text))
    return cues


def cues_at(cues: Sequence[Cue], times: Sequence[float]) -> list[Cue]:
    """The cues whose span [start, end) holds one of `times`, each once, in cue order.

    This is the Video-MME authors' rule as lmms-eval's `videomme_doc_to_text_subtitle`
    applies it (there to 32 uniformly sampled frames; here to the run's frame recipe).
    """
    return [cue for cue in cues if any(cue.start <= time < cue.end for time in times)]


def _seconds(stamp: str) -> float:
    """An SRT timestamp (`HH:MM:SS,mmm`) in seconds; NaN when it is not one."""
    match = _TIME.fullmatch(stamp.strip())
    if match is None:
        return math.nan
    hours, minutes, seconds, millis = match.groups()
    fraction = int((millis or "0").ljust(3, "0")) / 1000
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + fraction


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
