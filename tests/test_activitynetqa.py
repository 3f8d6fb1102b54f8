"""ActivityNet-QA against a fixture repo in the real layout, served by the Hub emulator.

The repo mirrors `lmms-eval/ActivityNetQA`: its dataset card (config `default`),
`data/test-00000-of-00001.parquet` with the real columns (all text), and two
`videos_chunked_NN.zip` holding `all_test/v_<video_name>.<ext>` with nothing
saying which zip holds which video. Malformed rows follow the good ones.
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

from benchmarks import activitynetqa
from benchmarks.hub import HubError
from harness.plugins import benchmarks as registry
from harness.types import Sample

REPO = "lmms-eval/ActivityNetQA"
# video_name -> (zip, extension)
VIDEOS = {
    "-x9Yt3kQw0A": ("videos_chunked_01.zip", "mp4"),
    "Jq2mB7rT_4s": ("videos_chunked_01.zip", "mp4"),
    "bU5yd0aW1Zc": ("videos_chunked_02.zip", "mp4"),
    "k8Hs_PqLm3E": ("videos_chunked_02.zip", "mkv"),
}
NAMES = list(VIDEOS)

CARD = """---
dataset_info:
  features:
  - name: video_name
    dtype: string
  - name: question_id
    dtype: string
  - name: question
    dtype: string
  - name: answer
    dtype: string
  - name: type
    dtype: string
  splits:
  - name: test
    num_examples: 15
configs:
- config_name: default
  data_files:
  - split: test
    path: data/test-*
---
"""

# (video, question, answer, type, response, EM, token F1)
ROWS = [
    (0, "what is the man doing", "skiing", "0", "Skiing.", 1, 1),
    (0, "is the man wearing a hat", "Yes", "3", "yes", 1, 1),
    (0, "what color is the man's jacket", "red", "4", "dark red", 0, Fraction(2, 3)),
    (1, "what is behind the woman", "the wall", "1", "a wall", 1, 1),
    (1, "how many people are there", "3", "7", "three", 1, 1),
    (1, "where is the woman", "in the kitchen", "6", "living room", 0, 0),
    (2, "what does the boy do after jumping", "fall down", "2", "he falls down", 0, Fraction(2, 5)),
    (2, "is the boy happy", "no", "3", "Yes", 0, 0),
    (2, "what is the boy holding", "ball", "5", "a ball", 1, 1),
    (3, "what is the person doing", "dancing", "0", "dancing", 1, 1),
    (3, "what is in the background", "trees", "8", "", 0, 0),
    (3, "what is the color of the floor", "white", "4", "white", 1, 1),
]


def rows() -> list[dict]:
    good = [
        {
            "video_name": NAMES[v],
            "question_id": f"v_{NAMES[v]}_{i % 3}",
            "question": question,
            "answer": answer,
            "type": code,
        }
        for i, (v, question, answer, code, *_) in enumerate(ROWS)
    ]
    template = {**good[0], "video_name": "Zz0000000zZ"}
    return [
        *good,
        {**template, "question_id": "v_Zz0000000zZ_0", "type": "9"},
        {**template, "question_id": "v_Zz0000000zZ_1", "type": "3", "answer": "maybe"},
        {**template, "question_id": "v_Zz0000000zZ_2", "video_name": None},
    ]


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("activitynetqa-repo")
    (folder / "README.md").write_text(CARD)
    (folder / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows()), folder / "data" / "test-00000-of-00001.parquet")
    rng = np.random.default_rng(0)

    def noise(_: int) -> np.ndarray:  # incompressible, so each video is ~165 KB
        return rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)

    for name, (zip_name, ext) in VIDEOS.items():
        clip = write_video(folder / f"clip.{ext}", 8, 8, frame=noise)
        with zipfile.ZipFile(folder / zip_name, "a", zipfile.ZIP_STORED) as archive:
            archive.write(clip, f"all_test/v_{name}.{ext}")
        clip.unlink()
    return folder


@pytest.fixture
def hub(repo_folder, tmp_path, monkeypatch):
    small = activitynetqa.ActivityNetQA
    with serving({REPO: repo_folder}, tmp_path / "cache", monkeypatch, small_blocks=small) as hub:
        yield hub


def test_rows_become_samples_by_type(hub):
    samples = list(registry.create("activitynetqa").samples())
    assert len(samples) == 15
    first = samples[0]
    assert first.id == "activitynetqa/v_-x9Yt3kQw0A_0"
    assert first.video == "videos_chunked_*.zip:v_-x9Yt3kQw0A"
    assert (first.question, first.answer, first.category) == (
        "what is the man doing",
        "skiing",
        "motion",
    )
    assert first.meta == {
        "type": "0",
        "question_type": "motion",
        "video_name": "-x9Yt3kQw0A",
        "video_file": "v_-x9Yt3kQw0A",
        "answer_text": "skiing",
    }
    assert [s.category for s in samples[:12]] == [
        "motion",
        "yes/no",
        "color",
        "spatial relation",
        "number",
        "location",
        "temporal relation",
        "yes/no",
        "object",
        "motion",
        "other",
        "color",
    ]
    assert samples[1].answer == "yes"  # a yes/no answer is normalised
    assert samples[1].meta["question_type"] == "free"
    assert samples[3].answer == "the wall"  # other answers are kept as they are
    assert len({s.id for s in samples}) == 15


def test_bad_rows_become_invalid_samples_and_good_rows_load(hub):
    samples = list(registry.create("activitynetqa").samples())
    assert [s.invalid for s in samples[:12]] == [None] * 12
    assert [(s.id, s.invalid) for s in samples[12:]] == [
        (
            "activitynetqa/v_Zz0000000zZ_0",
            "v_Zz0000000zZ_0, field 'type': '9' is not a type code 0-8",
        ),
        (
            "activitynetqa/v_Zz0000000zZ_1",
            "v_Zz0000000zZ_1, field 'answer': 'maybe' answers a yes/no question",
        ),
        ("activitynetqa/v_Zz0000000zZ_2", "v_Zz0000000zZ_2, field 'video_name': missing"),
    ]


def test_prompt_and_known_answers_give_the_hand_computed_em_and_f1(hub):
    benchmark = registry.create("activitynetqa")
    samples = [s for s in benchmark.samples() if s.invalid is None]
    assert benchmark.prompt(samples[0]) == (
        "what is the man doing? Answer the question using a single word or phrase."
    )
    scores = [benchmark.score(sample, row[4]) for sample, row in zip(samples, ROWS, strict=True)]
    for score, row in zip(scores, ROWS, strict=True):
        assert score.correct == bool(row[5])
        assert score.metrics["token_f1"] == pytest.approx(float(row[6]))
    # Exact match: 7 of 12. Token F1: (7 + 2/3 + 2/5) / 12 = 121/180.
    assert sum(s.correct for s in scores) / len(scores) == pytest.approx(7 / 12)
    mean_f1 = sum(s.metrics["token_f1"] for s in scores) / len(scores)
    assert mean_f1 == pytest.approx(121 / 180)


def test_selected_samples_read_only_their_videos_from_the_zips(hub, repo_folder, tmp_path):
    benchmark = registry.create("activitynetqa")
    samples = list(benchmark.samples())
    assert not [url for _, url in hub.requests if ".zip" in url]  # samples() reads no zip
    selected = samples[9:12]  # the questions about the last video, an .mkv in the second zip
    paths = {Path(benchmark.fetch_video(s)) for s in selected}

    root = tmp_path / "cache" / "hub" / REPO / "main"
    cached = sorted(p.relative_to(root).as_posix() for p in root.glob("*.zip/**/v_*"))
    assert cached == ["videos_chunked_02.zip/all_test/v_k8Hs_PqLm3E.mkv"]
    with zipfile.ZipFile(repo_folder / "videos_chunked_02.zip") as archive:
        member = archive.read("all_test/v_k8Hs_PqLm3E.mkv")
    assert [p.read_bytes() for p in paths] == [member]
    # The second zip: the member and its directory; the first: its directory only.
    size = (repo_folder / "videos_chunked_02.zip").stat().st_size
    assert hub.bytes_served["videos_chunked_02.zip"] < len(member) + 4 * BLOCK < size
    assert hub.bytes_served["videos_chunked_01.zip"] <= 2 * BLOCK

    before = dict(hub.bytes_served)
    assert Path(benchmark.fetch_video(selected[0])) in paths  # kept on disk: no new reads
    assert dict(hub.bytes_served) == before


def test_a_video_in_no_zip_is_a_clear_error(hub):
    benchmark = registry.create("activitynetqa")
    missing = Sample("activitynetqa/x", "", "", "", meta={"video_file": "v_Zz0000000zZ"})
    with pytest.raises(HubError, match="v_Zz0000000zZ is in none of"):
        benchmark.fetch_video(missing)


def test_the_official_exact_match_is_reported_beside_ours(hub, tmp_path):
    """The dataset writes one yes/no answer "Yes": "yes" is right to us (normalised) and
    wrong by the official rule, which compares verbatim; "Yes" is right to both."""
    summary, report = run_with_reply(tmp_path, "activitynetqa", "yes")
    official = summary["official"]
    assert official["scorer"].startswith("ActivityNet-QA evaluation/eval.py exact match")
    assert summary["accuracy"]["correct"] == 1 and official["accuracy"]["correct"] == 0
    assert official["scored_differently"] == 1 and official["read_differently"] == 0
    [example] = official["examples"]
    assert example["ours"] == {"prediction": "yes", "correct": True}
    assert example["official"] == {"prediction": "yes", "correct": False}
    assert "1 scored differently" in report
    summary, _ = run_with_reply(tmp_path / "capital", "activitynetqa", "Yes")
    assert summary["accuracy"]["correct"] == 1 == summary["official"]["accuracy"]["correct"]
