"""MVBench (`OpenGVLab/MVBench`; Li et al., CVPR 2024): 20 temporal tasks, multiple choice.

The repo (gated: accept its terms on the Hub and log in) holds two layouts on
two revisions:

- `main`: `json/<task>.json` and the source videos in per-source zips under
  `video/` (`star.zip`, `clevrer.zip`, ...): whole Charades videos that a
  question cuts with its `start`/`end`, TVQA as folders of JPEG frames, and no
  NTU RGB+D videos (`video/nturgbd.zip` was deleted for their licence).
- `video`, a branch: its own `json/<task>.json`, naming this branch's files, and
  every video as a file in a per-source folder (`star/Charades_segment/`,
  `clevrer/video_validation/`, ...): clips of bounded questions already cut to
  their `start`/`end` (the `*_segment` folders), TVQA frames and NTU converted to
  video, Something-Something as MP4.

This adapter reads the `video` layout, as lmms-eval's mvbench task does
(`revision: video`, its `DATA_LIST` maps task to folder): annotations and videos
from one revision, so they match, and a selected sample downloads just its file.
`revision` defaults to `video`, a branch that moves: a run records the commit it was
at, and `-S revision=<commit>` pins one.

The README declares one config per task, `data_files: json/<task>.json` and no
split name (so `train`); they load with `datasets` through
`HubDataset.annotations(task, split="train")`, as in lmms-eval (`dataset_name`,
`test_split: train`). Each row is {video, question, candidates, answer} with
`start`/`end` (seconds) in five tasks; the answer is a candidate's text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeGuard

from benchmarks.hub import HubBenchmark, repo_option, revision_option
from benchmarks.rows import BadField, invalid_sample, text_field, text_value
from harness.scoring.choice import option_letters
from harness.scoring.official import mvbench as official
from harness.scoring.prompts import lettered
from harness.scoring.rules import score_multiple_choice
from harness.types import OfficialScore, Sample, Score

REPO_ID = "OpenGVLab/MVBench"
VIDEO_REVISION = "video"
SPLIT = "train"

TASKS = {
    "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment",
    "action_antonym": "ssv2_video_mp4",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "unexpected_action": "FunQA_test/test",
    "object_existence": "clevrer/video_validation",
    "object_interaction": "star/Charades_segment",
    "object_shuffle": "perception/videos",
    "moving_direction": "clevrer/video_validation",
    "action_localization": "sta/sta_video_segment",
    "scene_transition": "scene_qa/video",
    "action_count": "perception/videos",
    "moving_count": "clevrer/video_validation",
    "moving_attribute": "clevrer/video_validation",
    "state_change": "perception/videos",
    "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "counterfactual_inference": "clevrer/video_validation",
}
"""The 20 tasks (configs), in the authors' order, and each one's video folder on `video`
(lmms-eval, lmms_eval/tasks/mvbench/utils.py `DATA_LIST`)."""

# The authors' prompt (OpenGVLab/Ask-Anything, video_chat2/mvbench.ipynb,
# `infer_mvbench` with `system_llm=True`, as VLMEvalKit's MVBench repeats it): this
# system text, then "Question: ...", "Options:" and "(A) ..." lines, then
# "Only give the best option." The notebook also starts the model's reply with
# "Best option:(", which a backend given one prompt cannot do; it is left out.
SYSTEM = (
    "Carefully watch the video and pay attention to the cause and sequence of events,"
    " the detail and movement of objects, and the action and pose of persons."
    " Based on your observations, select the best option that accurately addresses the question."
)
INSTRUCTION = "Only give the best option."

BOUNDS = (
    "start/end are seconds of the source video; on the `video` revision the file is"
    " the clip already cut to them, and frames are sampled from the whole file"
    " (sampling a sub-range of a file is not supported)"
)


@dataclass
class MVBench(HubBenchmark):
    """MVBench: 4,000 multiple-choice questions, 200 in each of 20 temporal tasks."""

    name: ClassVar[str] = "mvbench"
    version: ClassVar[str] = "1"

    tasks: str = field(
        default="",
        metadata={"help": "comma-separated tasks to run, all 20 when empty: " + ", ".join(TASKS)},
    )
    repo: str = repo_option(REPO_ID)
    revision: str | None = revision_option(
        "revision of the dataset repo with one file per video: the `video` branch"
        " (default) or one of its commits; main keeps its videos in zips, not read here",
        default=VIDEO_REVISION,
    )
    _tasks: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wanted = {task.strip() for task in self.tasks.split(",") if task.strip()}
        unknown = sorted(wanted - TASKS.keys())
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
        self._tasks = tuple(task for task in TASKS if not wanted or task in wanted)
        super().__post_init__()

    def samples(self) -> Iterator[Sample]:
        for task in self._tasks:
            for index, row in enumerate(self._hub.annotations(task, split=SPLIT)):
                yield _sample(task, index, row)

    def fetch_video(self, sample: Sample) -> str:
        """Download only this sample's video file into the HF cache."""
        return str(self._hub.file(sample.video))

    def prompt(self, sample: Sample) -> str:
        options = lettered(sample.options, "({letter}) {text}")
        question = "\n".join([f"Question: {sample.question}", "Options:", *options])
        return f"{SYSTEM}\n{question}\n{INSTRUCTION}"

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)

    def official_score(self, sample: Sample, text: str) -> OfficialScore:
        return official.score(text, sample.options, sample.answer)


def _sample(task: str, index: int, row: Mapping[str, Any]) -> Sample:
    sample_id = f"mvbench/{task}/{index}"
    try:
        video = text_field(row, "video")
        question = text_field(row, "question")
        choices = _choices(row.get("candidates"))
        answer = text_field(row, "answer")
        if choices.count(answer) != 1:
            found = "is not" if answer not in choices else "is more than once"
            raise BadField("answer", f"{answer!r} {found} among the candidates {list(choices)}")
    except BadField as bad:  # still counted in its task
        return replace(invalid_sample(sample_id, "", f"{task} row {index}", bad), category=task)
    meta: dict[str, Any] = {"task": task, "video_name": video, "answer_text": answer}
    start, end = row.get("start"), row.get("end")
    if _is_number(start) and _is_number(end):
        meta.update(start=float(start), end=float(end), bounds=BOUNDS)
    return Sample(
        id=sample_id,
        video=f"{TASKS[task]}/{video}",
        question=question,
        answer=option_letters(len(choices))[choices.index(answer)],
        options=choices,
        category=task,
        meta=meta,
    )


def _choices(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= 26:
        raise BadField("candidates", f"expected a list of 2 to 26 choices, got {value!r}")
    return tuple(text_value("candidates", choice) for choice in value)  # counts may be numbers


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
