"""TempCompass against a fixture repo in the real layout, served by the Hub emulator.

The repo mirrors `lmms-eval/TempCompass`: its dataset card (one config per task
format), `multi-choice/` and `yes_no/test-00000-of-00001.parquet` with the real
columns (`video_id`, `question`, `answer`, `dim`), and `tempcompass_videos.zip`
holding `videos/<video_id>.mp4`. Malformed rows follow the good ones.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_emulator import loaded, serving
from official_runs import run_with_reply
from videos import write_video

from harness.run.store import read_records

REPO = "lmms-eval/TempCompass"
ZIP = "tempcompass_videos.zip"
VIDEO_IDS = [str(1000 + i) for i in range(12)]

CARD = """---
dataset_info:
- config_name: multi-choice
  features:
  - name: video_id
    dtype: string
  - name: question
    dtype: string
  - name: answer
    dtype: string
  - name: dim
    dtype: string
  splits:
  - name: test
    num_examples: 7
- config_name: yes_no
  features:
  - name: video_id
    dtype: string
  - name: question
    dtype: string
  - name: answer
    dtype: string
  - name: dim
    dtype: string
  splits:
  - name: test
    num_examples: 3
configs:
- config_name: multi-choice
  data_files:
  - split: test
    path: multi-choice/test-*
- config_name: yes_no
  data_files:
  - split: test
    path: yes_no/test-*
---
"""

MULTI_CHOICE = [  # (video_id, question, answer, dim)
    (
        "1000",
        "What is the man doing in the video?\nA. dunking a basketball\nB. dribbling a basketball"
        "\nC. passing a basketball\nD. shooting a basketball",
        "A. dunking a basketball",
        "action",
    ),
    (
        "1001",
        "How fast is the car moving?\nA. slowly\nB. at normal speed\nC. fast",
        "C. fast",
        "speed",
    ),
    (
        "1002",
        "In which direction is the bird flying?\nA. left\nB. right\nC. up\nD. down",
        "B. right",
        "direction",
    ),
    (
        "1003",
        "In what order do the lights turn on?\nA. red then green\nB. green then red",
        "A. red then green",
        "order",
    ),
    (
        "1004",
        "What happens to the balloon?\nA. it inflates\nB. it deflates",
        "B. it deflates",
        "attribute_change",
    ),
    ("1005", "How does the ball move?\nA. up\nB. down", "E. sideways", "direction"),  # no option E
    ("1006", "What is the woman doing?", "A. running", "action"),  # no options listed
]
YES_NO = [
    ("1000", "Is the man dunking a basketball?", "yes", "action"),
    ("1001", "Is the car moving slowly?", "no", "speed"),
    ("1002", "Is the bird flying left?", "maybe", "direction"),  # neither yes nor no
]


def noise(seed: int):
    rng = np.random.default_rng(seed)
    return lambda i: rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)


def write_repo(folder: Path) -> None:
    folder.mkdir()
    (folder / "README.md").write_text(CARD)
    for config, rows in (("multi-choice", MULTI_CHOICE), ("yes_no", YES_NO)):
        columns = dict(
            zip(("video_id", "question", "answer", "dim"), zip(*rows, strict=True), strict=True)
        )
        (folder / config).mkdir()
        pq.write_table(pa.table(columns), folder / config / "test-00000-of-00001.parquet")
    with zipfile.ZipFile(folder / ZIP, "w", zipfile.ZIP_STORED) as archive:
        for index, video_id in enumerate(VIDEO_IDS):
            path = write_video(folder / f"{video_id}.mp4", 6, fps=8, frame=noise(index))
            archive.write(path, f"videos/{video_id}.mp4")
            path.unlink()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    write_repo(tmp_path / "repo")
    with serving({REPO: tmp_path / "repo"}, tmp_path / "cache", monkeypatch) as emulator:
        yield emulator


def load(**options):
    return loaded("tempcompass", **options)


def test_multi_choice_samples_and_their_prompts_are_lmms_evals(hub):
    benchmark, samples = load()
    first = samples["tempcompass/multi-choice/0"]
    assert first.question == "What is the man doing in the video?"
    assert first.options == (
        "dunking a basketball",
        "dribbling a basketball",
        "passing a basketball",
        "shooting a basketball",
    )
    assert (first.answer, first.category, first.video) == ("A", "action", f"{ZIP}:videos/1000.mp4")
    assert first.meta == {
        "task": "action",
        "format": "multi-choice",
        "video_id": "1000",
        "answer_text": "A. dunking a basketball",
    }
    assert {s.category for s in samples.values() if not s.invalid} == {
        "action",
        "speed",
        "direction",
        "order",
        "attribute_change",
    }
    # lmms-eval's prompt is the dataset's question, a newline and the post_prompt.
    for index, (_, question, _, _) in enumerate(MULTI_CHOICE[:5]):
        prompt = benchmark.prompt(samples[f"tempcompass/multi-choice/{index}"])
        assert prompt == f"{question}\nPlease directly give the best option:"


def test_known_multi_choice_answers_score_to_the_hand_computed_accuracy(hub):
    benchmark, samples = load(config="multi-choice")
    responses = {
        "tempcompass/multi-choice/0": "A",  # right
        "tempcompass/multi-choice/1": "C. fast",  # right
        "tempcompass/multi-choice/2": "The bird is flying left.",  # reads A; B is right
        "tempcompass/multi-choice/3": "B",  # A is right
        "tempcompass/multi-choice/4": "it deflates",  # option B's text: right
    }
    valid = [s for s in samples.values() if not s.invalid]
    assert sorted(s.id for s in valid) == sorted(responses)
    correct = [benchmark.score(s, responses[s.id]).correct for s in valid]
    assert sum(correct) / len(valid) == 3 / 5


def test_bad_rows_become_invalid_samples_and_good_rows_load(hub):
    _, samples = load()
    invalid = {s.id: s.invalid for s in samples.values() if s.invalid}
    assert invalid == {
        "tempcompass/multi-choice/5": "row 5, field 'answer': 'E. sideways'"
        " is not one of the options A-B",
        "tempcompass/multi-choice/6": "row 6, field 'question': expected 2 to 26 option lines,"
        " got 'What is the woman doing?'",
    }
    assert len(samples) - len(invalid) == 5
    _, yes_no = load(config="yes_no")
    assert {s.id: s.invalid for s in yes_no.values() if s.invalid} == {
        "tempcompass/yes_no/2": "row 2, field 'answer': 'maybe' is not yes or no"
    }


def test_yes_no_questions_are_asked_and_scored_as_lmms_eval_asks_them(hub):
    benchmark, samples = load(config="yes_no")
    first, second = samples["tempcompass/yes_no/0"], samples["tempcompass/yes_no/1"]
    assert (first.options, first.answer, second.answer) == (("yes", "no"), "A", "B")
    assert benchmark.prompt(first) == "Is the man dunking a basketball?\nPlease answer yes or no:"
    assert benchmark.score(first, "Yes.").correct
    assert not benchmark.score(second, "Yes, it is.").correct


def test_selected_samples_read_only_their_zip_members(hub, tmp_path):
    benchmark, samples = load(block_size_kb=4)
    assert hub.bytes_served[ZIP] == 0  # the samples alone read no video
    chosen = [samples["tempcompass/multi-choice/1"], samples["tempcompass/multi-choice/3"]]
    with zipfile.ZipFile(tmp_path / "repo" / ZIP) as archive:
        for sample in chosen:
            path = Path(benchmark.fetch_video(sample))
            member = sample.video.split(":", 1)[1]
            assert path.read_bytes() == archive.read(member)
        wanted = sum(archive.getinfo(s.video.split(":", 1)[1]).file_size for s in chosen)
    size = (tmp_path / "repo" / ZIP).stat().st_size
    assert wanted < hub.bytes_served[ZIP] < wanted + 64 * 1024 < size / 3


@pytest.mark.parametrize(
    ("config", "reply", "official_reads"),
    [("multi-choice", "(B)", None), ("yes_no", "not sure", "B")],
)
def test_the_official_rules_are_reported_beside_ours(hub, tmp_path, config, reply, official_reads):
    """ "(B)" is B to us and matches no rule of the authors'; "not sure" is no to them."""
    summary, _ = run_with_reply(
        tmp_path, "tempcompass", reply, "-S", f"config={config}", "--limit", "4"
    )
    official = summary["official"]
    records = read_records(tmp_path / "runs" / "official" / "records.jsonl").records
    records = [r for r in records if r.ok]
    assert official["scorer"].startswith("TempCompass")
    assert official["read_differently"] == len(records) > 1
    assert {r.score.official.prediction for r in records} == {official_reads}
    assert {r.score.prediction for r in records} == {"B" if official_reads is None else None}
    expected = 0 if official_reads is None else sum(r.target == "B" for r in records)
    assert official["accuracy"]["correct"] == expected
