"""Any text is recordable: lone surrogates in every field of a run, through every command.

A lone surrogate ("\\ud83d", valid JSON, no UTF-8 form) in a question file or a service's
answer once made writing the record fail, so the run stopped and every `--resume` stopped
at the same sample, paying fal again. Now JSON files keep such text losslessly (as its
JSON escape) and Markdown, HTML and printed lines show it as `\\ud83d`.
"""

from __future__ import annotations

import json
from pathlib import Path

from fal_emulator import FalEmulator

from harness.cli import main
from harness.files import json_bytes, visible
from harness.run.store import read_records

S = "\ud83d"  # half of an emoji, alone
ESCAPED = "\\ud83d"  # how reports show it


def questions(folder: Path) -> Path:
    """Questions with a lone surrogate in every field a question file has."""
    rows = [
        {
            "id": f"mc{S}",
            "video": f"https://example.com/{S}.mp4",
            "question": f"Which {S}?",
            "options": [f"left {S}", "right"],
            "answer": "A",
            "category": f"odd{S}",
        },
        {
            "id": "open",
            "video": "https://example.com/a.mp4",
            "question": "Who?",
            "answer": f"a{S}",
            "category": f"odd{S}",
        },
        {"id": "fails", "video": "https://example.com/b.mp4", "question": "Why?", "answer": "no"},
    ]
    path = folder / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))  # "\ud83d" escapes
    return path


def test_json_keeps_any_text_and_reports_show_it():
    data = {f"k{S}": [S, f"\\{S}", "\udc80 \U0001f600"]}
    assert json.loads(json_bytes(data)) == data
    assert json.loads(json_bytes(data, indent=2)) == data
    assert visible(f"a{S}b") == f"a{ESCAPED}b"
    assert visible(f"a{S}b").encode() == b"a\\ud83db"


def test_lone_surrogates_in_every_field_are_recorded_and_every_command_runs(
    tmp_path, monkeypatch, capsys
):
    """The question file's fields, fal's answer and fal's error message all carry one;
    the run records every sample, a resume asks fal nothing more, and report, compare,
    gate, merge and `--sample` read the run."""
    monkeypatch.setenv("FAL_KEY", "test-key-0123456789")
    benchmark = f"manifest:{questions(tmp_path)}"
    runs = tmp_path / "runs"
    run = ["run", "--backend", "fal", "-B", "poll_interval=0.001", "--benchmark", benchmark]
    run += ["--out", str(runs), "--no-progress"]
    fal = FalEmulator(reply=f"A man {S}")
    failing = {"prompt": "Why?\nAnswer the question using a single word or phrase."}
    fal.inject("completed_error", on="status", when=lambda b: b == {**b, **failing}, message=S)

    with fal.installed():
        assert main([*run, "--run-id", "one"]) == 0
        submitted = len(fal.submitted)
        assert main(["run", "--resume", str(runs / "one"), "--no-progress"]) == 0
        assert len(fal.submitted) == submitted  # nothing asked, nor paid, again
        assert main([*run, "--run-id", "sampled", "--sample", "2", "--seed", "1"]) == 0
        for shard in ("0/2", "1/2"):
            assert main([*run, "--run-id", "part", "--shard", shard]) == 0

    log = read_records(runs / "one" / "records.jsonl")
    assert log.skipped == []
    records = {r.sample_id: r for r in log.records}
    assert set(records) == {f"mc{S}", "open", "fails"}
    mc, answered, failed = records[f"mc{S}"], records["open"], records["fails"]
    assert (mc.category, mc.video, mc.groups["category"]) == (
        f"odd{S}",
        f"https://example.com/{S}.mp4",
        f"odd{S}",
    )
    assert f"Which {S}?" in mc.prompt and f"left {S}" in mc.prompt
    assert answered.ok and answered.response == f"A man {S}" and answered.target == f"a{S}"
    assert failed.error is not None and failed.error.message == S
    report = (runs / "one" / "report.md").read_text()
    assert f"odd{ESCAPED}" in report

    summary = runs / "one" / "summary.json"
    assert json.loads(summary.read_text())["categories"].keys() >= {f"odd{S}"}
    capsys.readouterr()
    for command in (
        ["report", str(runs / "one")],
        ["merge", *map(str, sorted(runs.glob("part-*"))), "--out", str(runs), "--run-id", "m"],
        ["compare", str(runs / "one"), str(runs / "m"), "--html", str(tmp_path / "c.html")],
        ["gate", str(runs / "m"), "--baseline", str(summary)],
    ):
        assert main(command) == 0, command
    out = capsys.readouterr().out
    assert out.count(f"odd{ESCAPED}") >= 3 and S not in out  # report, merge, compare
    assert f"odd{ESCAPED}" in (tmp_path / "c.html").read_text()
