"""Video-MME against a fixture repo in the real layout, served by the Hub emulator.

The repo mirrors `lmms-eval/Video-MME`: its dataset card (config `videomme`),
`videomme/test-00000-of-00001.parquet` with the real columns, three
`videos_chunked_NN.zip` holding `data/<videoID>.mp4` (30 small videos, 90
questions) and `subtitle.zip` holding `subtitle/<videoID>.srt` for half of them.
Three malformed rows follow the good ones. Video 0 lasts 10 s (20 frames at
2 fps) and its subtitles have cues at known times, for the frames rule; the
others last 1 s (8 frames at 8 fps).
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_emulator import serving
from official_runs import run_with_reply
from videos import index_pattern, write_video

from benchmarks.hub import HubError
from benchmarks.videomme import NO_SUBTITLES, UNPROBED, Cue, subtitle_cues
from harness.cli import main
from harness.plugins import benchmarks as registry
from harness.registry import RegistryError
from harness.run.store import read_records
from harness.types import Sample

REPO = "lmms-eval/Video-MME"
ZIPS = ("videos_chunked_01.zip", "videos_chunked_02.zip", "videos_chunked_03.zip")
VIDEOS_PER_ZIP = 10
DOMAINS = ("Knowledge", "Film & Television", "Sports Competition")
DURATIONS = ("short", "medium", "long")
TASKS = ("Counting Problem", "Temporal Reasoning", "OCR Problems")
LETTERS = "ABCD"

# The dataset card's YAML header, as on the Hub.
CARD = """---
dataset_info:
  config_name: videomme
  features:
  - name: video_id
    dtype: string
  - name: duration
    dtype: string
  - name: domain
    dtype: string
  - name: sub_category
    dtype: string
  - name: url
    dtype: string
  - name: videoID
    dtype: string
  - name: question_id
    dtype: string
  - name: task_type
    dtype: string
  - name: question
    dtype: string
  - name: options
    sequence: string
  - name: answer
    dtype: string
  splits:
  - name: test
    num_examples: 93
configs:
- config_name: videomme
  data_files:
  - split: test
    path: videomme/test-*
---
"""


def video_key(v: int) -> str:
    """A YouTube-like videoID."""
    return f"Yt{v:02d}-x_Q7ab"


# Video 0's cues: frames at 0, 1, ..., 9 s (1 per second) fall in cues 1, 3 and 5.
VIDEO_0_CUES = (
    ("00:00:00,000", "00:00:00,500", "Hello from video 0."),
    ("00:00:00,500", "00:00:01,000", "Goodbye."),
    ("00:00:01,000", "00:00:02,500", "One and two."),
    ("00:00:02,500", "00:00:02,900", "Between frames."),
    ("00:00:05,000", "00:00:07,000", "Five and six."),
    ("00:00:09,500", "00:00:12,000", "After the last frame."),
)


def srt(v: int) -> str:
    if v == 0:
        return "".join(
            f'{n}\n{start} --> {end}\n<font color="white">{text}</font>\n\n'
            for n, (start, end, text) in enumerate(VIDEO_0_CUES, 1)
        )
    return (
        f'1\n00:00:00,000 --> 00:00:00,500\n<font color="white" size=".72c">Hello from video {v}.'
        "</font>\n\n"
        '2\n00:00:00,500 --> 00:00:01,000\n<font color="white" size=".72c">Goodbye.</font>\n\n'
    )


def good_rows() -> list[dict]:
    rows = []
    for v in range(len(ZIPS) * VIDEOS_PER_ZIP):
        for q in range(3):
            rows.append(
                {
                    "video_id": f"{v + 1:03d}",
                    "duration": DURATIONS[v % 3],
                    "domain": DOMAINS[v % 3],
                    "sub_category": "Humanity & History",
                    "url": f"https://www.youtube.com/watch?v={video_key(v)}",
                    "videoID": video_key(v),
                    "question_id": f"{v + 1:03d}-{q + 1}",
                    "task_type": TASKS[q],
                    "question": f"Question {q + 1} about video {v}?",
                    "options": [f"{L}. Choice {L.lower()} {v}-{q}." for L in LETTERS],
                    "answer": LETTERS[(v + q) % 4],
                }
            )
    return rows


def bad_rows() -> list[dict]:
    template = {**good_rows()[0], "video_id": "031", "videoID": "Yt30-missing"}
    return [
        {**template, "question_id": "031-1", "answer": "E"},
        {**template, "question_id": "031-2", "options": ["A. one", "B. two", "C. three"]},
        {**template, "question_id": "031-3", "question": None},
    ]


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videomme-repo")
    (folder / "README.md").write_text(CARD)
    (folder / "videomme").mkdir()
    pq.write_table(
        pa.Table.from_pylist(good_rows() + bad_rows()),
        folder / "videomme" / "test-00000-of-00001.parquet",
    )
    rng = np.random.default_rng(0)

    def noise(_: int) -> np.ndarray:  # incompressible, so each video is ~165 KB
        return rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)

    for z, zip_name in enumerate(ZIPS):
        with zipfile.ZipFile(folder / zip_name, "w", zipfile.ZIP_STORED) as archive:
            for v in range(z * VIDEOS_PER_ZIP, (z + 1) * VIDEOS_PER_ZIP):
                if v == 0:  # 10 s, for the subtitles at the frames' times
                    video = write_video(folder / "clip.mp4", 20, 2, frame=index_pattern)
                else:
                    video = write_video(folder / "clip.mp4", 8, 8, frame=noise)
                archive.write(video, f"data/{video_key(v)}.mp4")
    (folder / "clip.mp4").unlink()
    with zipfile.ZipFile(folder / "subtitle.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for v in range(0, len(ZIPS) * VIDEOS_PER_ZIP, 2):
            archive.writestr(f"subtitle/{video_key(v)}.srt", srt(v))
    return folder


@pytest.fixture
def hub(repo_folder, tmp_path, monkeypatch):
    with serving({REPO: repo_folder}, tmp_path / "cache", monkeypatch) as emulator:
        yield emulator


def cached(tmp_path: Path, pattern: str) -> list[str]:
    root = tmp_path / "cache" / "hub" / REPO / "main"
    return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))


def test_rows_become_samples_with_domain_task_and_duration(hub):
    samples = list(registry.create("videomme").samples())
    assert len(samples) == 93
    first = samples[0]
    assert first.id == "videomme/001-1" and first.category == "Knowledge"
    assert first.video == "videos_chunked_*.zip:data/Yt00-x_Q7ab.mp4"
    assert first.question == "Question 1 about video 0?"
    assert first.options == ("Choice a 0-0.", "Choice b 0-0.", "Choice c 0-0.", "Choice d 0-0.")
    assert first.answer == "A"
    assert first.meta == {
        "task": "Counting Problem",
        "duration": "short",
        "video_id": "001",
        "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=Yt00-x_Q7ab",
        "videoID": "Yt00-x_Q7ab",
        "question_id": "001-1",
    }
    assert samples[5].meta["duration"] == "medium" and samples[5].answer == "D"
    assert len({s.id for s in samples}) == 93


def test_bad_rows_become_invalid_samples_and_good_rows_load(hub):
    samples = list(registry.create("videomme").samples())
    assert [s.invalid for s in samples[:90]] == [None] * 90
    assert [(s.id, s.invalid) for s in samples[90:]] == [
        ("videomme/031-1", "question 031-1, field 'answer': 'E' is not one of A, B, C, D"),
        (
            "videomme/031-2",
            "question 031-2, field 'options': expected a list of 4 choices,"
            " got ['A. one', 'B. two', 'C. three']",
        ),
        ("videomme/031-3", "question 031-3, field 'question': missing"),
    ]


def test_selected_samples_read_only_their_videos_from_the_zips(hub, repo_folder, tmp_path):
    benchmark = registry.create("videomme", block_size_kb="16")
    samples = list(benchmark.samples())
    assert not [url for _, url in hub.requests if ".zip" in url]  # samples() reads no zip
    selected = samples[:10]  # --limit 10: the questions of videos 0-3, all in the first zip
    paths = [Path(benchmark.fetch_video(s)) for s in selected]

    wanted = [f"data/{video_key(v)}.mp4" for v in range(4)]
    assert cached(tmp_path, "*.zip/**/*.mp4") == [f"{ZIPS[0]}/{m}" for m in wanted]
    with zipfile.ZipFile(repo_folder / ZIPS[0]) as archive:
        for path, sample in zip(paths, selected, strict=True):
            assert path.read_bytes() == archive.read(f"data/{sample.meta['videoID']}.mp4")

    sizes = {name: (repo_folder / name).stat().st_size for name in ZIPS}
    served = {name: hub.bytes_served[name] for name in ZIPS}
    videos = sum(len(p.read_bytes()) for p in set(paths))
    block = 16 * 1024
    # The first zip: its four members (each read in blocks, so at most two blocks more)
    # and its directory; the others: their directory only, one block at most.
    assert served[ZIPS[0]] < videos + 4 * 2 * block < sizes[ZIPS[0]] / 2
    assert served[ZIPS[1]] <= block and served[ZIPS[2]] <= block
    assert sum(served.values()) < sum(sizes.values()) / 5
    assert hub.bytes_served["subtitle.zip"] == 0

    before = dict(hub.bytes_served)
    assert benchmark.fetch_video(selected[0]) == str(paths[0])  # kept on disk: no new reads
    assert dict(hub.bytes_served) == before


def test_a_video_in_the_last_zip_is_found_and_a_missing_one_is_a_clear_error(hub, tmp_path):
    benchmark = registry.create("videomme", block_size_kb="16")
    samples = list(benchmark.samples())
    path = benchmark.fetch_video(samples[89])
    assert path.endswith(f"{ZIPS[2]}/data/{video_key(29)}.mp4")
    assert cached(tmp_path, "*.zip/**/*.mp4") == [f"{ZIPS[2]}/data/{video_key(29)}.mp4"]
    with pytest.raises(HubError, match="Yt30-missing is in none of"):
        benchmark.fetch_video(Sample("videomme/x", "", "", "", meta={"videoID": "Yt30-missing"}))


def test_the_prompt_is_the_official_one(hub):
    sample = next(registry.create("videomme").samples())
    assert registry.create("videomme").prompt(sample) == (
        "Select the best answer to the following multiple-choice question based on the video."
        " Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "Question 1 about video 0?\n"
        "A. Choice a 0-0.\nB. Choice b 0-0.\nC. Choice c 0-0.\nD. Choice d 0-0.\n"
        "The best answer is:"
    )


def subtitled(cues: str) -> str:
    """Video 0's first question asked with `cues` as its subtitles."""
    return (
        f"This video's subtitles are listed below: \n{cues}\n"
        "Select the best answer to the following multiple-choice question based on the video"
        " and the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "Question 1 about video 0?\n"
        "A. Choice a 0-0.\nB. Choice b 0-0.\nC. Choice c 0-0.\nD. Choice d 0-0.\n"
        "The best answer is:"
    )


ALL_CUES = "\n".join(text for _, _, text in VIDEO_0_CUES)


def test_subtitles_go_in_the_prompt_read_from_subtitle_zip(hub, tmp_path):
    benchmark = registry.create("videomme-subtitles", block_size_kb="16")
    assert benchmark.subtitles and registry.create("videomme", subtitles="true").subtitles
    samples = list(benchmark.samples())
    assert not [url for _, url in hub.requests if "videos_chunked" in url]
    with_subs, without = samples[0], samples[3]  # videos 0 and 1
    assert with_subs.meta["subtitle"] == "subtitle/Yt00-x_Q7ab.srt"
    assert "note" not in with_subs.meta
    assert without.meta["subtitle"] is None and without.meta["note"] == NO_SUBTITLES

    benchmark.fetch_video(with_subs)  # as the runner does before asking for the prompt
    video_reads = [url for _, url in hub.requests if "videos_chunked" in url]
    # The frames at 0, 1, ..., 9 s (1 fps, at most 64): the cues holding those times.
    assert benchmark.prompt(with_subs) == subtitled(
        "Hello from video 0.\nOne and two.\nFive and six."
    )
    # The video is probed on disk: no new reads of the video zips.
    assert [url for _, url in hub.requests if "videos_chunked" in url] == video_reads
    assert "note" not in with_subs.meta
    assert benchmark.prompt(without) == registry.create("videomme").prompt(without)
    assert cached(tmp_path, "subtitle.zip/**/*.srt") == ["subtitle.zip/subtitle/Yt00-x_Q7ab.srt"]


def test_the_subtitle_cues_follow_the_frame_recipe_and_all_stay_available(hub):
    sample = next(registry.create("videomme-subtitles").samples())
    four = registry.create("videomme-subtitles", max_frames="4")  # frames at 1, 3, 6, 8 s
    assert four.prompt(sample) == subtitled("One and two.\nFive and six.")
    two = registry.create("videomme-subtitles", fps="2")  # every frame: 0, 0.5, ..., 9.5 s
    assert two.prompt(sample) == subtitled(ALL_CUES)
    every = registry.create("videomme-subtitles", subtitle_rule="all")
    assert every.prompt(sample) == subtitled(ALL_CUES)
    assert registry.create("videomme", subtitles="true").prompt(sample) == subtitled(ALL_CUES)
    with pytest.raises(RegistryError, match="fps must be a positive number"):
        registry.create("videomme-subtitles", fps="0")


def test_a_video_that_cannot_be_probed_gets_every_cue_and_a_note(hub, tmp_path, monkeypatch):
    benchmark = registry.create("videomme-subtitles")
    sample = next(benchmark.samples())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    monkeypatch.setattr(benchmark, "fetch_video", lambda _: str(broken))
    assert benchmark.prompt(sample) == subtitled(ALL_CUES)
    assert sample.meta["note"].startswith(UNPROBED)


def test_the_subtitles_rule_is_versioned_and_in_the_options(hub, tmp_path):
    assert registry.create("videomme-subtitles").version == "2"
    assert registry.create("videomme").version == "1"  # its prompts are unchanged
    args = ["run", "--backend", "scripted", "--benchmark", "videomme-subtitles"]
    args += ["--limit", "1", "--out", str(tmp_path / "runs"), "--run-id", "subs"]
    assert main([*args, "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "runs" / "subs" / "manifest.json").read_text())
    assert manifest["benchmark"]["version"] == "2"
    assert manifest["spec"]["benchmark_options"]["subtitle_rule"] == "frames"
    assert manifest["spec"]["benchmark_options"]["fps"] == 1.0
    assert manifest["spec"]["benchmark_options"]["max_frames"] == 64
    [record] = read_records(tmp_path / "runs" / "subs" / "records.jsonl").records
    assert record.prompt == subtitled("Hello from video 0.\nOne and two.\nFive and six.")


def test_subtitle_cues_keep_their_times_and_text_without_markup():
    text = "\ufeff1\r\n00:00:01,000 --> 00:00:02,000\r\n<i>Two</i>\r\nlines\r\n\r\n\r\n2\r\n"
    assert subtitle_cues(text + "00:00:03,000 --> 00:00:04,000\r\n\r\n") == [
        Cue(1.0, 2.0, "Two lines")
    ]
    assert subtitle_cues("1\n01:02:03,5 --> 01:02:04\nLate.") == [Cue(3723.5, 3724.0, "Late.")]
    [unreadable] = subtitle_cues("1\nsoon --> later\nWhen?")
    assert unreadable.text == "When?" and math.isnan(unreadable.start)
    assert subtitle_cues("no cues here") == []


def test_known_answers_score_to_the_expected_accuracy(hub):
    benchmark = registry.create("videomme")
    samples = [s for s in benchmark.samples() if s.invalid is None]
    correct = unreadable = 0
    for i, sample in enumerate(samples):
        right = LETTERS.index(sample.answer)
        if i % 3 == 0:  # the bare letter: right
            text = sample.answer
        elif i % 3 == 1:  # a declared wrong letter
            text = f"The best answer is: {LETTERS[(right + 1) % 4]}"
        elif i % 2 == 0:  # i = 2, 8, 14, ...: the right letter and its text
            text = f"{sample.answer}. {sample.options[right]}"
        else:  # i = 5, 11, 17, ...: nothing to read
            text = "I cannot tell from the video."
        score = benchmark.score(sample, text)
        correct += score.correct
        unreadable += score.prediction is None
    # 30 bare letters, none of the 30 wrong ones, 15 of the last 30: 45 of 90.
    assert (correct, unreadable, len(samples)) == (45, 15, 90)
    assert correct / len(samples) == 0.5


def test_a_sampled_run_of_ten_fetches_only_their_videos(hub, repo_folder, tmp_path):
    """Through the CLI and the runner: --sample 10 spreads over the zips and domains."""
    args = ["run", "--backend", "scripted", "--benchmark", "videomme", "-S", "block_size_kb=16"]
    args += ["--sample", "10", "--seed", "3", "--out", str(tmp_path / "runs"), "--run-id", "mme"]
    assert main([*args, "--no-progress"]) == 0
    records = read_records(tmp_path / "runs" / "mme" / "records.jsonl").records
    assert len(records) == 10
    wanted = {r.video.split(":", 1)[1] for r in records if not r.error}
    extracted = {path.split("/", 1)[1] for path in cached(tmp_path, "*.zip/**/*.mp4")}
    assert extracted == wanted and len(wanted) < 10 * 3  # a video's questions share it
    assert all("fetch" in r.timings for r in records if not r.error)
    sizes = sum((repo_folder / name).stat().st_size for name in ZIPS)
    served = sum(hub.bytes_served[name] for name in ZIPS)
    per_video = max(p.stat().st_size for p in (tmp_path / "cache").rglob("*.mp4"))
    assert served < len(wanted) * (per_video + 2 * 16 * 1024) + len(ZIPS) * 16 * 1024
    assert served < sizes / 2


def test_the_official_extraction_is_reported_beside_ours(hub, tmp_path):
    """ "Best option: X" is X to us and B (of "Best") to the official script."""
    summary, report = run_with_reply(tmp_path, "videomme", "Best option: C", "--limit", "6")
    official = summary["official"]
    assert official["scorer"].startswith("Video-MME eval_your_results.py")
    records = read_records(tmp_path / "runs" / "official" / "records.jsonl").records
    answers = [r.target for r in records]
    assert official["read_differently"] == 6 == summary["samples"]["ok"]
    assert summary["accuracy"]["correct"] == sum(1 for t in answers if t == "C")
    assert official["accuracy"]["correct"] == sum(1 for t in answers if t == "B")
    assert official["scored_differently"] == sum(1 for t in answers if t in "BC")
    example = official["examples"][0]
    assert example["ours"]["prediction"] == "C" and example["official"]["prediction"] == "B"
    section = report.index("## Official scoring beside ours")
    assert "6 answer(s) read differently from ours" in report[section:]
    assert "'B', " in report[section:] and "'C', " in report[section:]


def test_compare_and_gate_show_official_accuracy_and_say_when_official_scorers_differ(
    hub, tmp_path, capsys
):
    run_with_reply(tmp_path / "a", "videomme", "Best option: C", "--limit", "4")
    run_with_reply(tmp_path / "b", "videomme", "C", "--limit", "4")
    first, second = tmp_path / "a" / "runs" / "official", tmp_path / "b" / "runs" / "official"
    capsys.readouterr()
    assert main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "official accuracy" in out and "Official scoring differs" not in out
    # The second run as a run from before official scoring: its records have none.
    records = second / "records.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    for line in lines:
        if line["score"]:
            line["score"].pop("official")
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    said = out.index("Official scoring differs: official (baseline): Video-MME eval_your")
    assert "official: none" in out and said < out.index("| run | backend | accuracy")
    assert main(["gate", str(second), "--baseline", str(first / "summary.json")]) == 0
    out = capsys.readouterr().out
    assert "official scoring: none for run official, Video-MME" in out
