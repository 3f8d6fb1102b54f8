"""`vqa-harness gate`: bounds against a baseline summary, the table, and exit codes 0, 1, 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.analysis.gate import Bounds, GateError, gate
from harness.analysis.summary_file import Summary
from harness.cli import main
from harness.report.gate_table import render_gate


def summary(value: float = 0.7, n: int = 100, **overrides) -> Summary:
    """A summary with only the parts the gate reads."""
    return Summary(
        **{
            "run_id": "r",
            "backend": "fal",
            "mode": "live",
            "benchmark": "tiny",
            "benchmark_version": "1",
            "samples": {"planned": n, "recorded": n, "missing": 0},
            "accuracy": {"value": value},
            "latency": {"total": {"p50": 2.0}, "queue": {"p50": 0.5}},
            **overrides,
        }
    )


def test_accuracy_may_drop_by_the_bound_and_no_more():
    baseline = summary(0.70)
    assert gate(summary(0.70), baseline, Bounds()).passed
    assert not gate(summary(0.69), baseline, Bounds()).passed  # default: no drop at all
    assert gate(summary(0.68), baseline, Bounds(max_accuracy_drop=0.02)).passed  # on the bound
    result = gate(summary(0.67), baseline, Bounds(max_accuracy_drop=0.02))
    assert result.breached == ["accuracy"]
    (check,) = result.checks
    assert (check.baseline, check.run, check.limit) == pytest.approx((0.70, 0.67, 0.68))


def test_latency_p50_of_every_common_component_within_the_ratio():
    baseline = summary()
    run = summary(latency={"total": {"p50": 2.9}, "upload": {"p50": 9.0}, "queue": {"p50": 0.8}})
    result = gate(run, baseline, Bounds(max_latency_ratio=1.5))
    assert [c.metric for c in result.checks] == ["accuracy", "total p50", "queue p50"]
    assert result.breached == ["queue p50"]  # 0.8 > 1.5 x 0.5; total 2.9 <= 3.0
    assert gate(run, baseline, Bounds()).checks[-1].metric == "accuracy"  # unset: not checked


def test_latency_with_nothing_in_common_is_noted_not_failed():
    run = summary(latency={})
    result = gate(run, summary(), Bounds(max_latency_ratio=1.5))
    assert result.passed
    assert result.notes == [
        "latency not checked: the run and the baseline share no timed component"
    ]


def test_differences_that_do_not_fail_the_gate_are_noted():
    run = summary(
        0.7,
        n=90,
        backend="local",
        samples={"planned": 100, "recorded": 90, "missing": 10},
    )
    result = gate(run, summary(0.7), Bounds())
    assert result.passed
    assert result.notes == [
        "backends differ: run local, baseline fal",
        "accuracy is over 90 samples in the run but 100 in the baseline",
        "the run is incomplete: 10 of 100 planned samples have no record",
    ]


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (summary(benchmark="other"), "run r has benchmark 'other' but baseline has 'tiny'"),
        (summary(benchmark_version="2"), "run r has benchmark version '2' but baseline has '1'"),
        (summary(None), "no accuracy to compare"),
    ],
)
def test_another_benchmark_or_version_or_no_accuracy_is_bad_input(run, message):
    with pytest.raises(GateError, match=message):
        gate(run, summary(), Bounds())


def test_the_table_names_each_bound_and_the_verdict():
    baseline = summary(0.70)
    markdown = render_gate(gate(summary(0.65), baseline, Bounds(0.02, max_latency_ratio=2)))
    assert "| metric | baseline | run | bound | result |" in markdown
    assert "| accuracy | 70.00% | 65.00% | ≥ 68.00% (baseline - 2.00 pts) | FAIL |" in markdown
    assert "| total p50 | 2.000 s | 2.000 s | ≤ 4.000 s (2 x baseline) | pass |" in markdown
    assert markdown.endswith("**FAIL**: accuracy out of bounds.\n")


def run_tiny(out: Path) -> Path:
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "-S", "count=6"]
    assert main([*args, "--out", str(out), "--run-id", "r", "--no-progress"]) == 0
    return out / "r"


def gate_cli(capsys, run_dir: Path, baseline: Path, *bounds: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["gate", str(run_dir), "--baseline", str(baseline), *bounds])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def test_cli_exits_0_within_bounds_and_1_when_one_is_breached(tmp_path, capsys):
    run_dir = run_tiny(tmp_path)
    own = run_dir / "summary.json"
    code, out, _ = gate_cli(capsys, run_dir, own, "--max-latency-ratio", "100")
    assert code == 0
    assert "| accuracy | 33.33% | 33.33% | ≥ 33.33% (baseline - 0.00 pts) | pass |" in out
    assert "| total p50 |" in out

    better = json.loads(own.read_text())
    better["accuracy"]["value"] = 0.5
    (tmp_path / "better.json").write_text(json.dumps(better))
    code, out, _ = gate_cli(capsys, run_dir, tmp_path / "better.json")
    assert code == 1
    assert out.endswith("**FAIL**: accuracy out of bounds.\n")
    code, _, _ = gate_cli(capsys, run_dir, tmp_path / "better.json", "--max-accuracy-drop", "0.2")
    assert code == 0


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    run_dir = run_tiny(tmp_path)
    other = json.loads((run_dir / "summary.json").read_text()) | {"benchmark_version": "0"}
    (tmp_path / "v0.json").write_text(json.dumps(other))
    (tmp_path / "bad.json").write_text("{")
    cases = [
        (run_dir, tmp_path / "none.json", "cannot read baseline"),
        (run_dir, tmp_path / "bad.json", "is not JSON"),
        (run_dir, run_dir / "manifest.json", "is not a run's summary.json (no"),
        (run_dir, tmp_path / "v0.json", "has benchmark version '1' but"),
        (tmp_path / "nowhere", run_dir / "summary.json", "is not a run directory"),
    ]
    for run, baseline, message in cases:
        code, out, err = gate_cli(capsys, run, baseline)
        assert (code, out) == (2, ""), message
        assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(SystemExit) as stopped:
        gate_cli(capsys, run_dir, run_dir / "summary.json", "--max-accuracy-drop", "5")
    assert stopped.value.code == 2
    assert "must be a fraction from 0 to 1, got 5" in capsys.readouterr().err
