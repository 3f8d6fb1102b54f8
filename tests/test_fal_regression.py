"""The CI regression gate: the committed fal replay set, through the whole pipeline
(`run --replay` -> records -> scores -> summary), holds its committed baseline.

Only accuracy is gated here. Latency is not: a replay's timings are this
machine's playback of the recording, not the service's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_fal import BASELINE, REPLAY_SET, write_baseline
from test_fal_runs import no_fal_credentials

import harness.scoring.rules
from harness.cli import main
from harness.scoring.choice import ChoiceExtraction


def baseline_accuracy() -> str:
    """The committed baseline's accuracy as the gate shows it (re-recording changes it)."""
    return f"{json.loads(BASELINE.read_text())['accuracy']['value']:.2%}"


def replay(out: Path, cache: Path) -> Path:
    """Replay the committed set into `out/replayed`, as CI would."""
    args = ["run", "--backend", "fal", "--replay", str(REPLAY_SET), "-S", f"cache_dir={cache}"]
    assert main([*args, "--out", str(out), "--run-id", "replayed", "--no-progress"]) == 0
    return out / "replayed"


def gate(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["gate", str(run_dir), "--baseline", str(BASELINE)])
    return code, capsys.readouterr().out


def test_the_replayed_run_passes_its_committed_baseline(
    tmp_path, monkeypatch, capsys, synthetic_cache
):
    no_fal_credentials(monkeypatch)
    code, out = gate(replay(tmp_path, synthetic_cache), capsys)
    assert code == 0, out
    base = baseline_accuracy()
    assert f"| accuracy | {base} | {base} | ≥ {base} (baseline - 0.00 pts) | pass |" in out
    assert "p50" not in out  # latency is not gated
    assert out.endswith("**PASS**: every bound holds.\n")


def test_a_scoring_change_fails_the_gate_on_accuracy(
    tmp_path, monkeypatch, capsys, synthetic_cache
):
    """An extractor that no longer reads "The answer is X." makes every answer wrong."""
    assert json.loads(BASELINE.read_text())["accuracy"]["correct"] > 0
    no_fal_credentials(monkeypatch)
    monkeypatch.setattr(
        harness.scoring.rules,
        "explain_choice",
        lambda text, options: ChoiceExtraction(None, reason="no option letter found"),
    )
    code, out = gate(replay(tmp_path, synthetic_cache), capsys)
    assert code == 1, out
    base = baseline_accuracy()
    assert f"| accuracy | {base} | 0.00% | ≥ {base} (baseline - 0.00 pts) | FAIL |" in out
    assert out.endswith("**FAIL**: accuracy out of bounds.\n")


def test_the_baseline_is_written_as_the_summary_gate_reads(
    tmp_path, monkeypatch, capsys, synthetic_cache
):
    """`nox -s record` writes the baseline with `write_baseline`: a summary's JSON object."""
    no_fal_credentials(monkeypatch)
    run_dir = replay(tmp_path, synthetic_cache)
    written = tmp_path / "baseline.json"
    write_baseline(run_dir, written)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads(written.read_text())["accuracy"] == summary["accuracy"]
    assert main(["gate", str(run_dir), "--baseline", str(written)]) == 0
