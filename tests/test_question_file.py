"""`--benchmark manifest:PATH`: local .jsonl/.csv questions, good rows run, bad rows reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.question_file import OPEN_ENDED_INSTRUCTION, QuestionFileBenchmark
from harness.cli import main
from harness.plugins import benchmarks
from harness.registry import RegistryError
from harness.run.store import read_records

JSONL_ROWS = [
    {
        "id": "q1",
        "video": "clips/a.mp4",
        "question": "What colour is the ball?",
        "options": ["red", "blue", "green", "white"],
        "answer": "A",
        "category": "colour",
        "task": "perception",
        "duration_s": 30,
    },
    None,  # a blank line
    {
        "id": "q2",
        "video": "https://example.com/b.mp4",
        "question": "How many balls?",
        "answer": "three",
        "category": "counting",
    },
    {"id": "q3", "video": "clips/a.mp4", "question": "?", "options": list("wxyz"), "answer": "E"},
    {"id": "q1", "video": "clips/a.mp4", "question": "Again?", "answer": "yes"},
    {"id": "q5", "video": "clips/missing.mp4", "question": "?", "answer": "x"},
    {"id": "q6", "video": "clips/a.mp4", "question": " ", "answer": "x", "category": "colour"},
    "not json {",
    {"id": "q8", "video": "clips/a.mp4", "question": "?", "options": "a|b", "answer": "A"},
    {"id": "q9", "video": "clips/a.mp4", "question": "?"},
    [1, 2],
]


def expected_invalid(folder: Path) -> dict[str, str]:
    return {
        "q3": "line 4, field 'answer': 'E' is not one of the 4 options (A-D)",
        "line 5": "line 5, field 'id': 'q1' is used by an earlier row",
        "q5": f"line 6, field 'video': no such file: {folder}/clips/missing.mp4",
        "q6": "line 7, field 'question': empty",
        "line 8": "line 8: not valid JSON (Expecting value at column 1)",
        "q8": "line 9, field 'options': expected a list of option texts, got \"a|b\"",
        "q9": "line 10, field 'answer': missing",
        "line 11": "line 11: expected a JSON object, got a list",
    }


def write_jsonl(folder: Path) -> Path:
    (folder / "clips").mkdir(parents=True)
    (folder / "clips" / "a.mp4").write_bytes(b"not really a video")
    lines = [
        "" if row is None else row if isinstance(row, str) else json.dumps(row)
        for row in JSONL_ROWS
    ]
    path = folder / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


CSV_TEXT = """\
id,video,question,options,answer,category
c1,clips/a.mp4,What colour?,red | blue | green,A,colour
c2,clips/a.mp4,"Which, of these?","[""red"", ""blue""]",b,colour

c3,clips/a.mp4,How many?,,3,counting
c4,clips/a.mp4,Which?,red|blue,C,colour
c5,clips/a.mp4,Too few cells
c6,clips/a.mp4,?,"[""red"", 1]",A,
"""


def write_csv(folder: Path, text: str = CSV_TEXT) -> Path:
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    (folder / "clips" / "a.mp4").write_bytes(b"")
    path = folder / "questions.csv"
    path.write_text(text)
    return path


def test_jsonl_rows_become_samples_and_bad_rows_invalid_ones(tmp_path):
    bench = QuestionFileBenchmark(path=write_jsonl(tmp_path / "m"))
    samples = {s.id: s for s in bench.samples()}
    folder = tmp_path / "m"
    assert list(samples) == [
        "q1",
        "q2",
        "q3",
        "line 5",
        "q5",
        "q6",
        "line 8",
        "q8",
        "q9",
        "line 11",
    ]
    assert {i: s.invalid for i, s in samples.items() if s.invalid} == expected_invalid(folder)

    mc, oe = samples["q1"], samples["q2"]
    assert mc.video == str(folder / "clips" / "a.mp4")
    assert (mc.options, mc.answer, mc.category) == (
        ("red", "blue", "green", "white"),
        "A",
        "colour",
    )
    assert mc.meta == {"task": "perception", "duration_s": 30.0}
    assert bench.prompt(mc).splitlines() == [
        "What colour is the ball?",
        "A. red",
        "B. blue",
        "C. green",
        "D. white",
        "Answer with the option's letter from the given choices directly.",
    ]
    assert bench.score(mc, "The answer is A.").correct

    assert (oe.video, oe.options, oe.answer) == ("https://example.com/b.mp4", (), "three")
    assert bench.prompt(oe) == f"How many balls?\n{OPEN_ENDED_INSTRUCTION}"
    assert OPEN_ENDED_INSTRUCTION == "Answer the question using a single word or phrase."
    score = bench.score(oe, "Three.")
    assert score.correct and score.metrics["exact_match"] == 1.0
    assert samples["q6"].category == "colour"  # an invalid sample keeps what could be read


def test_csv_rows_are_numbered_as_a_spreadsheet_does(tmp_path):
    bench = QuestionFileBenchmark(path=write_csv(tmp_path))
    samples = {s.id: s for s in bench.samples()}
    assert samples["c1"].options == ("red", "blue", "green")
    assert (samples["c2"].question, samples["c2"].options) == ("Which, of these?", ("red", "blue"))
    assert samples["c2"].answer == "B"  # a lower-case letter is read as the letter
    assert (samples["c3"].options, samples["c3"].answer) == ((), "3")
    assert {i: s.invalid for i, s in samples.items() if s.invalid} == {
        "c4": "row 6, field 'answer': 'C' is not one of the 2 options (A-B)",
        "c5": "row 7: 3 cells, but the header has 6 columns",
        "c6": "row 8, field 'options': expected a list of option texts, got [\"red\", 1]",
    }


def test_version_follows_the_file_content(tmp_path):
    path = write_csv(tmp_path)
    first = QuestionFileBenchmark(path=path).version
    assert first == QuestionFileBenchmark(path=path).version
    assert first.startswith("1-") and len(first) == len("1-") + 12
    path.write_text(CSV_TEXT.replace("What colour?", "Which colour?"))
    assert QuestionFileBenchmark(path=path).version != first


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("q.csv", "id,video,question\nq1,a.mp4,?\n", "has no column 'answer' in its header"),
        ("q.csv", "", "has no column 'id', 'video', 'question', 'answer' in its header"),
        ("q.csv", b"id,video\xff", "is not UTF-8 text"),
        ("q.txt", "", "must be a .jsonl or .csv file"),
        ("none.jsonl", None, "cannot read manifest"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_error(tmp_path, name, text, message):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(RegistryError, match=r"^benchmark 'manifest': ") as caught:
        benchmarks.create("manifest", path=str(path))
    assert message in str(caught.value)


def run_manifest(tmp_path: Path, reference: str, *extra: str) -> Path:
    args = ["run", "--backend", "scripted", "--benchmark", reference, "--no-progress", *extra]
    assert main([*args, "--out", str(tmp_path / "runs"), "--run-id", "r"]) == 0
    return tmp_path / "runs" / "r"


def test_a_run_answers_the_good_rows_and_reports_each_bad_one(tmp_path, capsys):
    folder = tmp_path / "m"
    run_dir = run_manifest(tmp_path, f"manifest:{write_jsonl(folder)}")
    records = {r.sample_id: r for r in read_records(run_dir / "records.jsonl").records}
    assert sorted(r for r in records if records[r].ok) == ["q1", "q2"]
    assert records["q1"].correct and not records["q2"].correct
    assert records["q1"].groups == {"category": "colour", "task": "perception", "duration": "short"}
    invalid = expected_invalid(folder)
    for sample_id, message in invalid.items():
        record = records[sample_id]
        assert (record.error.kind, record.error.message) == ("invalid_sample", message)
        assert record.prompt == "" and record.response is None  # the backend was not asked

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["samples"]["planned"] == 10
    assert summary["failures"]["invalid_sample"]["count"] == 8
    assert summary["invalid_samples"] == [
        {"sample_id": i, "message": m} for i, m in invalid.items()
    ]
    assert summary["tasks"] == {
        "perception": {"value": 1.0, "correct": 1, "n": 1, "failed": 0, "ci": [1.0, 1.0]}
    }
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["spec"]["benchmark"] == "manifest"
    assert manifest["spec"]["benchmark_options"] == {"path": str(folder / "questions.jsonl")}

    report = (run_dir / "report.md").read_text()
    assert "## Invalid samples (8)" in report
    assert "| q3 | line 4, field 'answer': 'E' is not one of the 4 options (A-D) |" in report
    assert "| line 8 | line 8: not valid JSON (Expecting value at column 1) |" in report


def test_manifest_selection_and_resume_after_an_edit(tmp_path, capsys):
    path = write_csv(tmp_path)
    run_dir = run_manifest(tmp_path, "manifest", "-S", f"path={path}", "--category", "counting")
    assert [r.sample_id for r in read_records(run_dir / "records.jsonl").records] == ["c3"]
    path.write_text(CSV_TEXT + "c7,clips/a.mp4,New?,,yes,counting\n")
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 2
    assert "start a new run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("reference", "extra", "message"),
    [
        ("manifest:q.csv", ["-S", "path=r.csv"], "--benchmark manifest:q.csv sets path already"),
        ("tiny:5", [], "benchmark 'tiny' takes no tiny:VALUE shorthand"),
        ("nope:5", [], "unknown benchmark 'nope'"),
        ("manifest:nowhere.jsonl", [], "cannot read manifest "),
    ],
)
def test_bad_benchmark_reference_is_one_clear_line(tmp_path, capsys, reference, extra, message):
    args = ["run", "--backend", "scripted", "--benchmark", reference, *extra]
    assert main([*args, "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vqa-harness: error: ") and message in line
    assert not any(tmp_path.iterdir())


def test_list_shows_the_shorthand(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  manifest - Your own questions from a local .jsonl or .csv file." in out
    assert "      manifest:PATH  (short for manifest -S path=PATH)" in out
