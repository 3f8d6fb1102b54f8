"""A run with --judge-model: judged open-ended answers end to end, failures counted apart."""

from __future__ import annotations

import json

from openai_emulator import OpenAIEmulator

from harness.cli import main
from harness.run.store import read_records

KEY = "sk-canary-0123456789abcdef0123456789abcdef"


def open_ended_manifest(tmp_path) -> str:
    rows = [
        {"id": "q1", "video": "https://example.com/a.mp4", "question": "Who?", "answer": "a man"},
        {"id": "q2", "video": "https://example.com/b.mp4", "question": "What?", "answer": "a dog"},
        {"id": "q3", "video": "https://example.com/c.mp4", "question": "Where?", "answer": "park"},
    ]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def verdict(body: dict) -> str:
    """Yes for the first question, no for the second, nonsense for the third."""
    prompt = body["messages"][-1]["content"]
    if "Who?" in prompt:
        return "{'pred': 'yes', 'score': 4}"
    if "What?" in prompt:
        return "{'pred': 'no', 'score': 1}"
    return "I cannot judge this."


def test_a_judged_run_records_verdicts_and_counts_failures_apart(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUDGE_API_KEY", KEY)
    args = ["run", "--backend", "scripted", "-B", "reply=A man is there."]
    args += ["--benchmark", f"manifest:{open_ended_manifest(tmp_path)}"]
    args += ["--judge-model", "judge-2024-07-18", "--out", str(tmp_path), "--run-id", "judged"]
    with OpenAIEmulator(api_key=KEY, reply=verdict).installed() as endpoint:
        assert main([*args, "--no-progress"]) == 0
    assert len(endpoint.received) == 3
    run = tmp_path / "judged"
    records = {r.sample_id: r for r in read_records(run / "records.jsonl").records}
    # The judge's verdicts are kept apart; `correct` is the benchmark's exact match.
    assert records["q1"].score.judge["correct"] and records["q1"].score.judge["raw"].startswith(
        "{'pred'"
    )
    assert not records["q1"].score.correct and records["q1"].score.rule == "exact_match"
    assert not records["q2"].score.judge["correct"] and records["q2"].score.judge["score"] == 1
    assert records["q3"].score.reason.startswith("judge_failed: unparseable")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["judge"]["model"] == "judge-2024-07-18"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["judge"]["judged"] == 2 and summary["judge"]["judge_failed"] == 1
    assert summary["judge"]["accuracy"] == 0.5  # one of the two judged, the failure left out
    assert summary["accuracy"]["value"] == 0.0  # the headline: exact match, not the judge
    for path in run.iterdir():
        assert KEY not in path.read_text()


def test_a_missing_judge_key_fails_once_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JUDGE_API_KEY", raising=False)
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "--judge-model", "j-1"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "JUDGE_API_KEY" in err[0]
    assert list(tmp_path.iterdir()) == []


def judged_and_unjudged(tmp_path, monkeypatch) -> tuple:
    """The same answers twice: graded by a judge, and not."""
    monkeypatch.setenv("JUDGE_API_KEY", KEY)
    questions = open_ended_manifest(tmp_path)
    base = ["run", "--backend", "scripted", "-B", "reply=a man", "--no-progress"]
    base += ["--benchmark", f"manifest:{questions}", "--out", str(tmp_path)]
    assert main([*base, "--run-id", "plain"]) == 0
    with OpenAIEmulator(api_key=KEY, reply=verdict).installed():
        assert main([*base, "--run-id", "judged", "--judge-model", "judge-2024-07-18"]) == 0
    return tmp_path / "plain", tmp_path / "judged"


def test_gate_says_the_scoring_differs_before_any_check(tmp_path, monkeypatch, capsys):
    plain, judged = judged_and_unjudged(tmp_path, monkeypatch)
    capsys.readouterr()
    assert main(["gate", str(judged), "--baseline", str(plain / "summary.json")]) == 0
    out = capsys.readouterr().out
    difference = out.index(
        "scoring differs (judge: judge judge-2024-07-18 (prompt video-chatgpt-v1) for run"
    )
    assert "none for" in out and difference < out.index("| metric |")


def test_compare_says_the_scoring_differs_and_shows_no_delta_between_definitions(
    tmp_path, monkeypatch, capsys
):
    plain, judged = judged_and_unjudged(tmp_path, monkeypatch)
    capsys.readouterr()
    assert main(["compare", str(plain), str(judged)]) == 0
    out = capsys.readouterr().out
    said = out.index("Scoring differs: plain (baseline): no judge; judged: judge judge-2024-07-18")
    assert said < out.index("| run |")  # before the first table
    # The same answers under the same (benchmark) scoring: the accuracies are equal.
    summaries = [json.loads((run / "summary.json").read_text()) for run in (plain, judged)]
    assert summaries[0]["accuracy"]["value"] == summaries[1]["accuracy"]["value"] == 1 / 3
    assert "+100.0 pp" not in out and "judged_by" not in summaries[0]
    assert summaries[1]["judged_by"] == "judge judge-2024-07-18 (prompt video-chatgpt-v1)"
