"""MVBench against a fixture repo in the `video` branch's layout, served by the Hub emulator.

The repo mirrors `OpenGVLab/MVBench` at revision `video`: a dataset card
declaring one config per task (`data_files: json/<task>.json`), the 20
`json/<task>.json` files with the real keys, and videos as files in lmms-eval's
per-source folders. `action_sequence` and `moving_count` carry the questions the
tests score, followed by malformed rows; every other task has one question.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_emulator import loaded, serving
from official_runs import run_with_reply
from videos import write_video

from benchmarks.mvbench import BOUNDS, TASKS
from harness.plugins import benchmarks as registry
from harness.registry import RegistryError
from harness.run.store import read_records

REPO = "OpenGVLab/MVBench"

CARD = (
    "---\nlicense: mit\ntask_categories:\n- visual-question-answering\nconfigs:\n"
    + "".join(f"- config_name: {task}\n  data_files: json/{task}.json\n" for task in TASKS)
    + "---\n# MVBench\n"
)

ACTION_SEQUENCE = [
    {
        "video": "A1B2C_1.5_9.0.mp4",
        "question": "What did the person do first?",
        "candidates": ["Took the cup.", "Opened the door.", "Sat down."],
        "answer": "Opened the door.",
        "start": 1.5,
        "end": 9.0,
    },
    {
        "video": "D3E4F_0.0_5.2.mp4",
        "question": "What happened after the person took the food?",
        "candidates": [
            "Ate the medicine.",
            "Tidied up the blanket.",
            "Put down the cup/glass/bottle.",
            "Took the box.",
        ],
        "answer": "Took the box.",
        "start": 0.0,
        "end": 5.2,
    },
    {  # the answer is none of the candidates
        "video": "G5H6I_2.0_4.0.mp4",
        "question": "What did the person do last?",
        "candidates": ["Sat down.", "Stood up."],
        "answer": "Jumped.",
        "start": 2.0,
        "end": 4.0,
    },
]
MOVING_COUNT = [
    {
        "video": "video_10001.mp4",
        "question": "How many metal objects are moving when the video ends?",
        "candidates": ["0", "1", "2", "3"],
        "answer": "2",
    },
    {
        "video": "video_10002.mp4",
        "question": "How many spheres enter the scene?",
        "candidates": ["1", "2", "3"],
        "answer": "3",
    },
    {
        "video": "video_10003.mp4",
        "question": "How many collisions happen?",
        "candidates": ["0", "1", "2"],
        "answer": "0",
    },
    {"video": "video_10004.mp4", "question": "How many cubes are moving?", "answer": "1"},
    {"video": "video_10005.mp4", "question": "", "candidates": ["1", "2"], "answer": "1"},
]


def write_repo(folder: Path) -> None:
    (folder / "json").mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    for task in TASKS:
        rows = {"action_sequence": ACTION_SEQUENCE, "moving_count": MOVING_COUNT}.get(task)
        if rows is None:
            rows = [
                {
                    "video": f"{task}_0.mp4",
                    "question": f"What happens in this {task} video?",
                    "candidates": ["red", "green", "blue"],
                    "answer": "green",
                }
            ]
        (folder / "json" / f"{task}.json").write_text(json.dumps(rows, indent=2))
    for task, name, frames in (
        ("action_sequence", "A1B2C_1.5_9.0.mp4", 12),
        ("action_sequence", "D3E4F_0.0_5.2.mp4", 16),
        ("moving_count", "video_10001.mp4", 20),
    ):
        path = folder / TASKS[task] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, fps=8)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    write_repo(tmp_path / "repo")
    with serving({REPO: tmp_path / "repo"}, tmp_path / "cache", monkeypatch) as emulator:
        yield emulator


def scored_samples(**options):
    return loaded("mvbench", **options)


def test_all_twenty_tasks_load_from_the_video_revision_without_any_video(hub):
    benchmark, samples = scored_samples()
    assert benchmark.revision == "video"
    assert len(samples) == 18 + len(ACTION_SEQUENCE) + len(MOVING_COUNT)
    assert {s.category for s in samples.values()} == set(TASKS)
    pose = samples["mvbench/fine_grained_pose/0"]
    assert pose.video == "nturgbd_convert/fine_grained_pose_0.mp4"
    assert (pose.options, pose.answer) == (("red", "green", "blue"), "B")
    assert (pose.category, pose.meta["task"]) == ("fine_grained_pose", "fine_grained_pose")
    bad = samples["mvbench/moving_count/3"]
    assert bad.invalid and bad.category == "moving_count"  # counted in its task
    card = f"https://huggingface.co/datasets/{REPO}/resolve/video/README.md"
    assert card in [url for _, url in hub.requests]  # the revision `video` was asked for
    annotations = [url for method, url in hub.requests if method == "GET" and "/json/" in url]
    assert len(annotations) == len(TASKS)
    assert not [path for path in hub.bytes_served if path.endswith(".mp4")]


def test_known_answers_score_to_the_hand_computed_accuracy(hub):
    benchmark, samples = scored_samples(tasks="moving_count, action_sequence")
    assert [s.id for s in samples.values()][:2] == [
        "mvbench/action_sequence/0",
        "mvbench/action_sequence/1",
    ]  # in the authors' task order, whatever the option's order
    responses = {
        "mvbench/action_sequence/0": "(B) Opened the door.",  # B: right
        "mvbench/action_sequence/1": "Best option: (A)",  # D is right
        "mvbench/moving_count/0": "C",  # "2" is C: right
        "mvbench/moving_count/1": "2",  # the option "2", B; "3" (C) is right
        "mvbench/moving_count/2": "I cannot tell.",  # unreadable: wrong
    }
    valid = [s for s in samples.values() if not s.invalid]
    assert sorted(s.id for s in valid) == sorted(responses)
    correct = [benchmark.score(s, responses[s.id]).correct for s in valid]
    assert sum(correct) / len(valid) == 2 / 5


def test_bad_rows_become_invalid_samples_and_good_rows_load(hub):
    _, samples = scored_samples(tasks="action_sequence,moving_count")
    invalid = {s.id: s.invalid for s in samples.values() if s.invalid}
    assert invalid == {
        "mvbench/action_sequence/2": "action_sequence row 2, field 'answer': 'Jumped.' is not"
        " among the candidates ['Sat down.', 'Stood up.']",
        "mvbench/moving_count/3": "moving_count row 3, field 'candidates':"
        " expected a list of 2 to 26 choices, got None",
        "mvbench/moving_count/4": "moving_count row 4, field 'question': empty",
    }
    assert len(samples) - len(invalid) == 5


def test_the_prompt_is_the_authors(hub):
    benchmark, samples = scored_samples(tasks="action_sequence")
    assert benchmark.prompt(samples["mvbench/action_sequence/1"]) == (
        "Carefully watch the video and pay attention to the cause and sequence of events,"
        " the detail and movement of objects, and the action and pose of persons."
        " Based on your observations, select the best option that accurately addresses"
        " the question.\n"
        "Question: What happened after the person took the food?\n"
        "Options:\n"
        "(A) Ate the medicine.\n"
        "(B) Tidied up the blanket.\n"
        "(C) Put down the cup/glass/bottle.\n"
        "(D) Took the box.\n"
        "Only give the best option."
    )


def test_clip_bounds_are_kept_in_meta(hub):
    _, samples = scored_samples(tasks="action_sequence,moving_count")
    first = samples["mvbench/action_sequence/0"]
    assert first.meta == {
        "task": "action_sequence",
        "video_name": "A1B2C_1.5_9.0.mp4",
        "answer_text": "Opened the door.",
        "start": 1.5,
        "end": 9.0,
        "bounds": BOUNDS,
    }
    assert "start" not in samples["mvbench/moving_count/0"].meta


def test_a_fetch_downloads_only_that_samples_video(hub, tmp_path):
    benchmark, samples = scored_samples(tasks="action_sequence,moving_count")
    sample = samples["mvbench/action_sequence/1"]
    assert sample.video == "star/Charades_segment/D3E4F_0.0_5.2.mp4"
    path = Path(benchmark.fetch_video(sample))
    assert path.read_bytes() == (tmp_path / "repo" / sample.video).read_bytes()
    videos = {p: n for p, n in hub.bytes_served.items() if p.endswith(".mp4")}
    assert videos == {sample.video: path.stat().st_size}


def test_an_unknown_task_is_refused():
    with pytest.raises(RegistryError, match=r"unknown task.*nope"):
        registry.create("mvbench", tasks="action_sequence,nope")


def test_the_video_branch_resolves_to_its_commit_and_a_commit_pins_it(hub):
    commit = hub.sha(REPO)
    benchmark, _ = scored_samples(tasks="moving_count")
    assert benchmark.data_revisions() == {REPO: commit}
    assert f"https://huggingface.co/api/datasets/{REPO}/revision/video" in [
        url for _, url in hub.requests
    ]
    pinned, samples = scored_samples(tasks="moving_count", revision=commit)
    assert pinned.data_revisions() == {REPO: commit} and len(samples) == len(MOVING_COUNT)
    assert f"{REPO}/resolve/{commit}/" in " ".join(url for _, url in hub.requests)


def test_the_official_check_is_reported_beside_ours(hub, tmp_path):
    """ "Answer: B" is B to us; the authors' check_ans compares "(answer:" with "(b)"."""
    summary, report = run_with_reply(tmp_path, "mvbench", "Answer: B", "--limit", "4")
    official = summary["official"]
    records = read_records(tmp_path / "runs" / "official" / "records.jsonl").records
    records = [r for r in records if r.ok]
    assert official["scorer"].startswith("MVBench check_ans")
    assert official["read_differently"] == len(records) > 1
    assert official["accuracy"]["correct"] == 0
    assert summary["accuracy"]["correct"] == sum(r.target == "B" for r in records) > 0
    assert official["scored_differently"] == summary["accuracy"]["correct"]
    assert "Official accuracy: **0.0%**" in report
