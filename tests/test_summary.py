"""summary.json and report.md from hand-made records, checked against hand-computed values."""

from __future__ import annotations

import pytest

from harness.report import render_markdown
from harness.store import RecordLog
from harness.summary import summarize
from harness.types import ErrorInfo, Record, Score


def answered(sample_id, category, correct, total, *, prediction="A", warmup=False, **extra):
    return Record(
        sample_id=sample_id,
        status="ok",
        category=category,
        video="v.mp4",
        prompt="p",
        target="A",
        response="A",
        score=Score(
            correct=correct,
            prediction=prediction,
            reason=None if prediction else "no option letter or option text found",
        ),
        timings={"total": total, **extra},
        usage={"output_tokens": 2},
        warmup=warmup,
    )


def failed(sample_id, category, kind, message):
    return Record(
        sample_id=sample_id,
        status="failed",
        category=category,
        video="v.mp4",
        prompt="p",
        target="A",
        error=ErrorInfo(kind, message),
    )


MANIFEST = {
    "run_id": "r",
    "status": "completed",
    "mode": "live",
    "samples_planned": 7,
    "backend": {"name": "scripted"},
    "benchmark": {"name": "tiny", "version": "1"},
    "sessions": [
        {"started_at": 100.0, "finished_at": 110.0, "written": 6},
        {"started_at": 200.0, "finished_at": 210.0, "written": 2},
    ],
}

LOG = RecordLog(
    records=[
        answered("s1", "color", True, 1.0, warmup=True),
        answered("s2", "color", True, 2.0, queue=0.5),
        answered("s3", "color", False, 3.0, prediction=None),
        answered("s4", "motion", True, 4.0),
        failed("s5", "motion", "rate_limited", "429 Too Many Requests"),
        failed("s6", "motion", "rate_limited", "429 again"),
        failed("s7", "motion", "deadline", "no answer within the 5 s deadline"),
        answered("s7", "motion", False, 5.0),  # retried with --retry-failed: the OK record wins
    ]
)


def test_accuracy_counts_every_sample_and_failures_apart():
    summary = summarize(LOG, MANIFEST)
    assert summary["samples"] == {
        "planned": 7,
        "recorded": 7,
        "missing": 0,
        "ok": 5,
        "failed": 2,
        "unparsed": 1,
    }
    assert summary["accuracy"] == {"value": 3 / 7, "correct": 3, "n": 7}
    assert summary["categories"] == {
        "color": {"value": 2 / 3, "correct": 2, "n": 3, "failed": 0},
        "motion": {"value": 1 / 4, "correct": 1, "n": 4, "failed": 2},
    }
    assert summary["failures"] == {"rate_limited": {"count": 2, "example": "429 Too Many Requests"}}
    assert summary["unparsed_reasons"] == {"no option letter or option text found": 1}
    assert summary["usage"] == {"output_tokens": 10}


def test_latency_leaves_out_warmup_and_uses_linear_percentiles():
    summary = summarize(LOG, MANIFEST)
    assert summary["warmup_excluded"] == 1
    total = summary["latency"]["total"]  # s2..s4, s7: 2, 3, 4, 5 seconds
    assert total["n"] == 4
    assert total["mean"] == pytest.approx(3.5)
    assert total["p50"] == pytest.approx(3.5)
    assert total["p90"] == pytest.approx(4.7)  # 2 + 0.9 * 3 positions -> 4 + 0.7
    assert total["p99"] == pytest.approx(4.97)
    assert total["max"] == 5.0
    assert summary["latency"]["queue"] == pytest.approx(
        {"n": 1, "mean": 0.5, "p50": 0.5, "p90": 0.5, "p99": 0.5, "max": 0.5}
    )
    assert list(summary["latency"]) == ["total", "queue"]
    assert summary["throughput"] == {"wall_s": 20.0, "samples_per_s": 0.4}


def test_incomplete_run_says_so():
    summary = summarize(RecordLog(records=LOG.records[:2]), MANIFEST)
    assert summary["samples"]["missing"] == 5
    assert "Incomplete: 5 of 7 samples have no record yet." in render_markdown(summary)


def test_markdown_has_accuracy_failures_and_latency_tables():
    markdown = render_markdown(summarize(LOG, MANIFEST))
    assert "**42.9%** (3 correct of 7 samples" in markdown
    assert "| motion | 4 | 1 | 2 | 25.0% |" in markdown
    assert "| rate_limited | 2 | 429 Too Many Requests |" in markdown
    assert "| total | 4 | 3.500 | 3.500 | 4.700 | 4.970 | 5.000 |" in markdown
    assert "1 warm-up sample(s) excluded." in markdown
    assert "Throughput: 0.40 samples/s over 20.0 s." in markdown
