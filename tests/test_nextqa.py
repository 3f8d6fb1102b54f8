"""NExT-QA against a fixture repo in the real layout, served by the Hub emulator.

The repo mirrors `lmms-eval/NExTQA`: a dataset card with configs `MC` and `OE`,
`MC/test-00000-of-00001.parquet` and `OE/{test,validation}-00000-of-00001.parquet`
with the real columns, and `videos.zip` holding `NExTVideo/<video>.mp4` for four
small videos. Malformed rows follow the good ones.
"""

from __future__ import annotations

import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_emulator import SMALL_BLOCK as BLOCK
from hub_emulator import serving
from official_runs import run_with_reply
from videos import write_video

from benchmarks import nextqa
from harness.plugins import benchmarks as registry
from harness.run.store import read_records

REPO = "lmms-eval/NExTQA"
VIDEOS = ("4010069381", "2435100235", "5333075105", "6106574393")
MC_TYPES = ("CW", "CH", "TN", "TC", "TP", "DC", "DL", "DO", "DB", "CW", "TN", "DO")

_COMMON = """  - name: video
    dtype: string
  - name: frame_count
    dtype: int64
  - name: width
    dtype: int64
  - name: height
    dtype: int64
  - name: question
    dtype: string
  - name: answer
    dtype: {answer}
  - name: qid
    dtype: int64
  - name: type
    dtype: string
"""
CARD = (
    "---\ndataset_info:\n- config_name: MC\n  features:\n"
    + _COMMON.format(answer="int64")
    + "".join(f"  - name: a{i}\n    dtype: string\n" for i in range(5))
    + "- config_name: OE\n  features:\n"
    + _COMMON.format(answer="string")
    + "  - name: additional_ref_answer\n    dtype: string\n"
    + """configs:
- config_name: MC
  data_files:
  - split: test
    path: MC/test-*
- config_name: OE
  data_files:
  - split: validation
    path: OE/validation-*
  - split: test
    path: OE/test-*
---
"""
)

# (video index, qid, type, answer, additional_ref_answer, response, EM, token F1)
OE_ROWS = [
    (0, 0, "CW", "to give to the girl", None, "to give it to the girl", 0, Fraction(8, 9)),
    (0, 1, "DC", "three", None, "3", 1, 1),
    (1, 0, "DL", "park", "garden", "garden", 1, 1),
    (1, 1, "TN", "lie down", "", "sit", 0, 0),
    (2, 0, "DO", "camera", None, "A camera.", 1, 1),
    (2, 1, "CH", "slide down", "jump", "she slides down the slide", 0, Fraction(2, 3)),
    (3, 0, "TP", "walk in", None, "walk in", 1, 1),
    (3, 1, "DB", "yes", None, "no", 0, 0),
]


def video_columns(v: int) -> dict:
    return {"video": VIDEOS[v], "frame_count": 8, "width": 160, "height": 96}


def mc_rows() -> list[dict]:
    rows = []
    for i, code in enumerate(MC_TYPES):
        v, q = divmod(i, 3)
        rows.append(
            {
                **video_columns(v),
                "question": f"what does the person do in clip {v} part {q} ",
                "answer": (v + q) % 5,
                "qid": q,
                "type": code,
                **{f"a{j}": f" option {j} of {v}-{q}" for j in range(5)},
            }
        )
    template = {**rows[0], "qid": 7}
    return [
        *rows,
        {**template, "answer": 5},
        {**template, "qid": 8, "a3": None},
        {**template, "qid": 9, "type": "XY"},
        {**template, "video": None},
    ]


def oe_rows() -> list[dict]:
    rows = [
        {
            **video_columns(v),
            "question": f"open question {q} about clip {v}",
            "answer": answer,
            "qid": q,
            "type": code,
            "additional_ref_answer": extra,
        }
        for v, q, code, answer, extra, *_ in OE_ROWS
    ]
    return [*rows, {**rows[0], "qid": 5, "answer": None}]


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nextqa-repo")
    (folder / "README.md").write_text(CARD)
    (folder / "MC").mkdir()
    (folder / "OE").mkdir()
    pq.write_table(pa.Table.from_pylist(mc_rows()), folder / "MC" / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(oe_rows()), folder / "OE" / "test-00000-of-00001.parquet")
    validation = [{**row, "qid": row["qid"] + 10} for row in oe_rows()[:2]]
    pq.write_table(
        pa.Table.from_pylist(validation), folder / "OE" / "validation-00000-of-00001.parquet"
    )
    rng = np.random.default_rng(0)

    def noise(_: int) -> np.ndarray:  # incompressible, so each video is ~165 KB
        return rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)

    with zipfile.ZipFile(folder / "videos.zip", "w", zipfile.ZIP_STORED) as archive:
        for video in VIDEOS:
            clip = write_video(folder / "clip.mp4", 8, 8, frame=noise)
            archive.write(clip, f"NExTVideo/{video}.mp4")
    (folder / "clip.mp4").unlink()
    return folder


@pytest.fixture
def hub(repo_folder, tmp_path, monkeypatch):
    with serving(
        {REPO: repo_folder}, tmp_path / "cache", monkeypatch, small_blocks=nextqa.NExTQA
    ) as emulator:
        yield emulator


def test_mc_rows_become_samples_by_family_and_type(hub):
    samples = list(registry.create("nextqa").samples())
    assert len(samples) == 16
    first = samples[0]
    assert first.id == "nextqa/mc/4010069381_0"
    assert first.video == "videos.zip:NExTVideo/4010069381.mp4"
    assert first.question == "what does the person do in clip 0 part 0"
    assert first.options == tuple(f"option {j} of 0-0" for j in range(5))
    assert (first.answer, first.category) == ("A", "causal")
    assert first.meta == {
        "task": "CW",
        "question_type": "causal why",
        "video_id": "4010069381",
        "qid": "0",
        "frame_count": 8,
        "width": 160,
        "height": 96,
    }
    good = samples[:12]
    assert [s.answer for s in good] == ["A", "B", "C", "B", "C", "D", "C", "D", "E", "D", "E", "A"]
    assert [s.category for s in good] == ["causal"] * 2 + ["temporal"] * 3 + ["descriptive"] * 4 + [
        "causal",
        "temporal",
        "descriptive",
    ]
    assert [s.meta["task"] for s in good] == list(MC_TYPES)
    assert len({s.id for s in samples}) == 16


def test_bad_rows_become_invalid_samples_and_good_rows_load(hub):
    samples = list(registry.create("nextqa").samples())
    assert [s.invalid for s in samples[:12]] == [None] * 12
    assert [(s.id, s.invalid) for s in samples[12:]] == [
        ("nextqa/mc/4010069381_7", "4010069381_7, field 'answer': 5 is not an option index 0-4"),
        ("nextqa/mc/4010069381_8", "4010069381_8, field 'a3': missing"),
        ("nextqa/mc/4010069381_9", "4010069381_9, field 'type': unknown question type 'XY'"),
        ("nextqa/mc/row15", "row15, field 'video': missing"),
    ]
    oe = list(registry.create("nextqa", mode="oe").samples())
    assert [s.invalid for s in oe[:8]] == [None] * 8
    assert oe[8].invalid == "4010069381_5, field 'answer': missing"


def test_mc_prompt_and_known_answers_score_to_the_expected_accuracy(hub):
    benchmark = registry.create("nextqa")
    samples = [s for s in benchmark.samples() if s.invalid is None]
    assert benchmark.prompt(samples[0]) == (
        "what does the person do in clip 0 part 0\n"
        "A. option 0 of 0-0\nB. option 1 of 0-0\nC. option 2 of 0-0\n"
        "D. option 3 of 0-0\nE. option 4 of 0-0\n"
        "Answer with the option's letter from the given choices directly."
    )
    correct = unreadable = 0
    for i, sample in enumerate(samples):
        right = "ABCDE".index(sample.answer)
        text = [
            sample.answer,  # the bare letter: right
            f"({'ABCDE'[(right + 1) % 5]})",  # another letter: wrong
            sample.options[right],  # the right option's text: right
            "I cannot tell.",  # nothing to read
        ][i % 4]
        score = benchmark.score(sample, text)
        correct += score.correct
        unreadable += score.prediction is None
    # i % 4 == 0 and 2 are right: 6 of 12; i % 4 == 3 unreadable: 3.
    assert (correct, unreadable, len(samples)) == (6, 3, 12)
    assert correct / len(samples) == 0.5


def test_oe_prompt_and_known_answers_give_the_hand_computed_em_and_f1(hub):
    benchmark = registry.create("nextqa", mode="oe")
    samples = [s for s in benchmark.samples() if s.invalid is None]
    assert benchmark.prompt(samples[0]) == (
        "open question 0 about clip 0\nAnswer a question using a short phrase or sentence."
    )
    assert samples[2].meta["references"] == ["garden"]
    assert "references" not in samples[3].meta  # an empty additional answer is none
    assert [s.category for s in samples] == [
        "causal",
        "descriptive",
        "descriptive",
        "temporal",
        "descriptive",
        "causal",
        "temporal",
        "descriptive",
    ]
    scores = [benchmark.score(sample, row[5]) for sample, row in zip(samples, OE_ROWS, strict=True)]
    for score, row in zip(scores, OE_ROWS, strict=True):
        assert score.correct == bool(row[6])
        assert score.metrics["token_f1"] == pytest.approx(float(row[7]))
    # Exact match: 4 of 8. Token F1: (8/9 + 1 + 1 + 0 + 1 + 2/3 + 1 + 0) / 8 = 25/36.
    assert sum(s.correct for s in scores) / len(scores) == 0.5
    mean_f1 = sum(s.metrics["token_f1"] for s in scores) / len(scores)
    assert mean_f1 == pytest.approx(25 / 36)


def test_the_validation_split_loads(hub):
    samples = list(registry.create("nextqa", mode="oe", split="validation").samples())
    assert [s.id for s in samples] == ["nextqa/oe/4010069381_10", "nextqa/oe/4010069381_11"]


def test_selected_samples_read_only_their_videos_from_the_zip(hub, repo_folder, tmp_path):
    benchmark = registry.create("nextqa")
    samples = list(benchmark.samples())
    assert not [url for _, url in hub.requests if ".zip" in url]  # samples() reads no zip
    selected = samples[3:6]  # the three questions about the second video
    paths = {Path(benchmark.fetch_video(s)) for s in selected}

    root = tmp_path / "cache" / "hub" / REPO / "main"
    cached = sorted(p.relative_to(root).as_posix() for p in root.glob("videos.zip/**/*.mp4"))
    assert cached == ["videos.zip/NExTVideo/2435100235.mp4"]
    with zipfile.ZipFile(repo_folder / "videos.zip") as archive:
        member = archive.read("NExTVideo/2435100235.mp4")
    assert [p.read_bytes() for p in paths] == [member]
    size = (repo_folder / "videos.zip").stat().st_size
    assert hub.bytes_served["videos.zip"] < len(member) + 4 * BLOCK < size / 2

    before = dict(hub.bytes_served)
    assert Path(benchmark.fetch_video(selected[0])) in paths  # kept on disk: no new reads
    assert dict(hub.bytes_served) == before


def test_the_peers_multiple_choice_parser_is_reported_beside_ours(hub, tmp_path):
    """A lone lowercase "c" is C to us; lmms-eval's parser would guess, so it reads nothing."""
    summary, _ = run_with_reply(tmp_path, "nextqa", "c", "--limit", "4")
    official = summary["official"]
    records = read_records(tmp_path / "runs" / "official" / "records.jsonl").records
    records = [r for r in records if r.ok]
    assert official["scorer"].startswith("lmms-eval nextqa parse_multi_choice_response")
    assert official["read_differently"] == len(records) > 1
    assert official["accuracy"]["correct"] == 0
    assert official["scored_differently"] == sum(r.target == "C" for r in records)


def test_open_ended_answers_get_the_official_wups(hub, tmp_path, nltk_data):
    summary, report = run_with_reply(tmp_path, "nextqa", "a dog", "-S", "mode=oe", "--limit", "3")
    official = summary["official"]
    assert official["scorer"].startswith("NExT-OE eval_oe.py WUPS")
    assert official["scored"] == 3 and official["accuracy"] is None
    assert set(official["metrics"]) == {"wups_0", "wups_0.9"}
    assert 0 <= official["metrics"]["wups_0.9"] <= official["metrics"]["wups_0"] <= 1
    assert "Official metric means: wups_0" in report


def test_without_nltk_data_the_report_says_why_wups_is_missing(hub, tmp_path):
    summary, report = run_with_reply(tmp_path, "nextqa", "a dog", "-S", "mode=oe", "--limit", "2")
    official = summary["official"]
    assert official["scored"] == 0 and not official["metrics"]
    [reason] = official["unscored"]
    assert official["unscored"][reason] == 2 and "nltk.downloader wordnet" in reason
    assert f"Not scored by it: 2 answer(s): {reason}" in report
