"""summary.json and report.md from hand-made records, checked against hand-computed values."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

from harness.analysis.summary import accuracy, summarize
from harness.cli import main
from harness.report.markdown import render_markdown
from harness.run.manifest import Manifest
from harness.run.store import RecordLog, read_records
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
    "spec": {"backend": "scripted", "benchmark": "tiny"},
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


def manifest(**fields) -> Manifest:
    """`MANIFEST` with `fields` changed, typed."""
    return Manifest.from_dict({**MANIFEST, **fields})


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
    summary = summarize(LOG, manifest())
    assert summary.samples == {
        "planned": 7,
        "recorded": 7,
        "missing": 0,
        "ok": 5,
        "failed": 2,
        "unparsed": 1,
    }
    # Every fixture record is of one video: one cluster, so every interval is a point.
    assert summary.accuracy == {"value": 3 / 7, "correct": 3, "n": 7, "ci": [3 / 7, 3 / 7]}
    assert summary.categories == {
        "color": {"value": 2 / 3, "correct": 2, "n": 3, "failed": 0, "ci": [2 / 3, 2 / 3]},
        "motion": {"value": 1 / 4, "correct": 1, "n": 4, "failed": 2, "ci": [1 / 4, 1 / 4]},
    }
    assert summary.failure_rate == 2 / 7
    assert summary.failures == {"rate_limited": {"count": 2, "example": "429 Too Many Requests"}}
    assert summary.unparsed_reasons == {"no option letter or option text found": 1}
    assert summary.usage == {"output_tokens": 10}


def test_latency_leaves_out_warmup_and_uses_linear_percentiles():
    summary = summarize(LOG, manifest())
    assert summary.warmup_excluded == 1
    total = summary.latency["total"]  # s2..s4, s7: 2, 3, 4, 5 seconds
    assert total["n"] == 4
    assert total["mean"] == pytest.approx(3.5)
    assert total["p50"] == pytest.approx(3.5)
    assert total["p90"] == pytest.approx(4.7)  # 2 + 0.9 * 3 positions -> 4 + 0.7
    assert total["p99"] == pytest.approx(4.97)
    assert total["max"] == 5.0
    assert summary.latency["queue"] == pytest.approx(
        {"n": 1, "mean": 0.5, "p50": 0.5, "p90": 0.5, "p99": 0.5, "max": 0.5}
    )
    assert list(summary.latency) == ["total", "queue"]
    assert summary.throughput == {"wall_s": 20.0, "samples_per_s": 0.4}


def test_incomplete_run_says_so():
    summary = summarize(RecordLog(records=LOG.records[:2]), manifest())
    assert summary.samples["missing"] == 5
    assert "Incomplete: 5 of 7 samples have no record yet." in render_markdown(summary)


def test_markdown_has_accuracy_failures_and_latency_tables():
    markdown = render_markdown(summarize(LOG, manifest()))
    assert "**42.9%** (3 correct of 7 samples" in markdown
    assert (
        "95% CI [42.9%, 42.9%]: percentile cluster bootstrap over 1 videos, 2000 resamples, seed 0"
        in markdown
    )
    assert "## Failures (2, 28.6%)" in markdown
    assert "| motion | 4 | 1 | 2 | 25.0% |" in markdown
    assert "| rate_limited | 2 | 429 Too Many Requests |" in markdown
    assert "| total | 4 | 3.500 | 3.500 | 4.700 | 4.970 | 5.000 |" in markdown
    assert "1 warm-up sample(s) excluded." in markdown
    assert "Throughput: 0.40 samples/s over 20.0 s." in markdown


def graded(sample_id, category, correct, metrics, judge, **groups):
    """An answered open-ended sample with its metrics and judge verdict."""
    return Record(
        sample_id=sample_id,
        status="ok",
        category=category,
        video="v.mp4",
        prompt="p",
        target="three",
        response="3",
        score=Score(
            correct=correct, prediction="3", rule="exact_match", metrics=metrics, judge=judge
        ),
        timings={"total": 1.0},
        groups={"category": category, **groups},
    )


def metrics(em, f1, wer, cer):
    return {"exact_match": em, "token_f1": f1, "wer": wer, "cer": cer}


GROUPED = RecordLog(
    records=[
        graded(
            "o1",
            "count",
            True,
            metrics(1, 1, 0, 0),
            {"model": "j", "correct": True, "score": 1.0},
            task="counting",
            duration="short",
        ),
        graded(
            "o2",
            "count",
            False,
            metrics(0, 0.5, 1, 0.5),
            {"model": "j", "correct": False, "score": 0.4},
            task="counting",
            duration="long",
        ),
        graded(
            "o3",
            "count",
            False,
            metrics(0, 0, 2, 1),
            {"model": "j", "error": "timeout"},
            task="action",
            duration="long",
        ),
        replace(
            answered("m1", "color", True, 1.0), groups={"task": "action", "duration": "medium"}
        ),
        replace(
            failed("f1", "color", "invalid_sample", "row 3, column 'answer': missing"),
            groups={"task": "action"},
        ),
    ]
)


def test_breakdowns_by_task_and_duration_with_metric_means_and_judge_stats():
    summary = summarize(GROUPED, manifest(samples_planned=5))
    assert summary.accuracy == {"value": 2 / 5, "correct": 2, "n": 5, "ci": [2 / 5, 2 / 5]}
    # Open-ended o1..o3: means of (1, 0, 0), (1, .5, 0), (0, 1, 2), (0, .5, 1).
    assert summary.metrics == {
        "n": 3,
        "mean": pytest.approx({"exact_match": 1 / 3, "token_f1": 0.5, "wer": 1.0, "cer": 0.5}),
    }
    # The judge failed on o3: not judged, not wrong; o1 right (1.0), o2 wrong (0.4).
    judge = {"judged": 2, "correct": 1, "accuracy": 0.5, "mean_score": 0.7, "judge_failed": 1}
    assert summary.judge == pytest.approx(judge)
    assert summary.tasks == {
        "action": {  # o3 (open-ended, wrong), m1 (right), f1 (failed)
            "value": 1 / 3,
            "correct": 1,
            "n": 3,
            "failed": 1,
            "ci": [1 / 3, 1 / 3],
            "metrics": {"n": 1, "mean": metrics(0.0, 0.0, 2.0, 1.0)},
            "judge": {
                "judged": 0,
                "correct": 0,
                "accuracy": None,
                "mean_score": None,
                "judge_failed": 1,
            },
        },
        "counting": {  # o1, o2
            "value": 0.5,
            "correct": 1,
            "n": 2,
            "failed": 0,
            "ci": [0.5, 0.5],
            "metrics": {"n": 2, "mean": metrics(0.5, 0.75, 0.5, 0.25)},
            "judge": pytest.approx(judge | {"judge_failed": 0}),
        },
    }
    durations = summary.durations  # f1 has no duration: left out
    assert list(durations) == ["short", "medium", "long"]
    assert durations["medium"] == {"value": 1.0, "correct": 1, "n": 1, "failed": 0, "ci": [1, 1]}
    assert durations["long"]["metrics"] == {"n": 2, "mean": metrics(0.0, 0.25, 1.5, 0.75)}
    assert durations["long"]["judge"] == {
        "judged": 1,
        "correct": 0,
        "accuracy": 0.0,
        "mean_score": 0.4,
        "judge_failed": 1,
    }
    assert summary.categories["color"] == {
        "value": 0.5,
        "correct": 1,
        "n": 2,
        "failed": 1,
        "ci": [0.5, 0.5],
    }
    assert summary.invalid_samples == [
        {"sample_id": "f1", "message": "row 3, column 'answer': missing"}
    ]


def test_breakdowns_appear_only_for_keys_present():
    summary = summarize(LOG, manifest())
    assert not {"tasks", "durations", "metrics", "judge"} & summary.to_dict().keys()
    assert summary.invalid_samples == []
    assert "## Invalid samples" not in render_markdown(summary)


def test_markdown_has_breakdown_tables_and_invalid_samples():
    markdown = render_markdown(summarize(GROUPED, manifest(samples_planned=5)))
    assert (
        "Open-ended answers (3), means: exact_match 0.333 · token_f1 0.500 · wer 1.000 · cer 0.500"
        in markdown
    )
    assert (
        "LLM judge: 50.0% (1 correct of 2 judged; mean score 0.700); 1 judge failure(s)" in markdown
    )
    assert (
        "| duration | samples | correct | failed | accuracy | 95% CI | exact_match | token_f1 | wer"
        " | cer | judged | judge accuracy | judge score | judge failed |" in markdown
    )
    assert (
        "| medium | 1 | 1 | 0 | 100.0% | [100.0%, 100.0%] | n/a | n/a | n/a | n/a | - | - | - | - |"
        in markdown
    )
    assert (
        "| long | 2 | 0 | 0 | 0.0% | [0.0%, 0.0%] | 0.000 | 0.250 | 1.500 | 0.750 | 1 | 0.0% "
        "| 0.400 | 1 |" in markdown
    )
    assert "| task | samples |" in markdown
    assert "## Invalid samples (1)" in markdown
    assert "| f1 | row 3, column 'answer': missing |" in markdown


def grid(correct_per_video: list[int], questions: int = 3) -> list[Record]:
    """`questions` per video, the first `correct_per_video[v]` of video v answered right."""
    return [
        replace(
            answered(f"v{v}/q{q}", "c", q < right, 1.0),
            video=f"v{v}.mp4",
        )
        for v, right in enumerate(correct_per_video)
        for q in range(questions)
    ]


def exact_bootstrap_percentiles(correct_per_video: list[int], questions: int = 3):
    """The 2.5th and 97.5th percentiles of every equally likely resample of whole videos."""
    videos = len(correct_per_video)
    means = [
        sum(draw) / (videos * questions)
        for draw in itertools.product(correct_per_video, repeat=videos)
    ]
    return np.percentile(means, [2.5, 97.5])


def test_the_interval_resamples_videos_and_is_wider_when_errors_cluster_in_videos():
    # 4 videos x 3 questions, 8 of 12 right either way.
    spread = accuracy(grid([2, 2, 2, 2]))
    clustered = accuracy(grid([3, 3, 2, 0]))
    assert spread["value"] == clustered["value"] == 8 / 12
    # Every video 2 of 3: every resample of whole videos has mean 2/3 exactly.
    assert spread["ci"] == pytest.approx([2 / 3, 2 / 3])
    # Clustered: resample means are (a + b + c + d) / 12 over drawn video totals;
    # the 2000 seeded draws land within one question (1/12) of the exact percentiles.
    low, high = clustered["ci"]
    exact_low, exact_high = exact_bootstrap_percentiles([3, 3, 2, 0])
    assert exact_low == pytest.approx(3 / 12) and exact_high == pytest.approx(1.0)
    assert abs(low - exact_low) <= 1 / 12 and abs(high - exact_high) <= 1 / 12
    assert high - low > 0.4 > spread["ci"][1] - spread["ci"][0]


def test_the_interval_is_seeded_and_independent_of_record_order():
    records = grid([3, 1, 2, 0, 3])
    first = accuracy(records)
    assert accuracy(list(reversed(records))) == first == accuracy(records)


def test_the_summary_states_how_its_intervals_were_computed():
    summary = summarize(RecordLog(records=grid([3, 3, 2, 0])), manifest(samples_planned=12))
    assert summary.ci_method == {
        "method": "percentile cluster bootstrap",
        "cluster": "video",
        "clusters": 4,
        "resamples": 2000,
        "level": 0.95,
        "seed": 0,
    }
    assert summary.categories["c"]["ci"] == summary.accuracy["ci"]


def test_cold_starts_are_reported_apart_and_left_out_of_latency():
    records = [
        answered("s1", "c", True, 9.0, warmup=True),  # session 1's warm-up and its cold start
        answered("s2", "c", True, 2.0),
        answered("s3", "c", True, 4.0),
        answered("s4", "c", True, 7.0),  # session 2's cold start
        answered("s5", "c", True, 3.0),
    ]
    records = [
        replace(r, started_at=t) for r, t in zip(records, [100, 101, 102, 200, 201], strict=True)
    ]
    sessions = [
        {"started_at": 99.0, "cold_start": {"sample_id": "s1", "started_at": 100}},
        {"started_at": 199.0, "cold_start": {"sample_id": "s4", "started_at": 200}},
        {"started_at": 299.0, "cold_start": None},  # answered nothing
    ]
    summary = summarize(RecordLog(records=records), manifest(sessions=sessions))
    assert summary.cold_start == {"count": 2, "total": [9.0, 7.0], "warmup": 1}
    assert summary.warmup_excluded == 1
    assert summary.latency["total"]["n"] == 3  # s2, s3, s5
    assert summary.latency["total"]["mean"] == pytest.approx(3.0)
    assert summary.latency["total"]["max"] == 4.0
    markdown = render_markdown(summary)
    assert (
        "2 cold start(s) (each session's first answer, 1 of them warm-up samples too) left out, "
        "total: 9.000, 7.000." in markdown
    )


def test_a_run_without_recorded_cold_starts_keeps_every_steady_sample():
    summary = summarize(LOG, manifest())  # sessions from before cold starts were recorded
    assert summary.cold_start == {"count": 0, "total": [], "warmup": 0}
    assert "cold start" not in render_markdown(summary)


def test_each_session_records_its_first_answer_as_its_cold_start(tmp_path):
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "-S", "count=6"]
    assert main([*args, "--out", str(tmp_path), "--run-id", "r", "--no-progress"]) == 0
    run_dir = tmp_path / "r"
    lines = (run_dir / "records.jsonl").read_bytes().splitlines(keepends=True)
    (run_dir / "records.jsonl").write_bytes(b"".join(lines[:4]))  # lose two: resume runs them
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0

    records = read_records(run_dir / "records.jsonl").records
    sessions = json.loads((run_dir / "manifest.json").read_text())["sessions"]
    firsts = [records[0], records[4]]  # each session's first record written
    assert [s["cold_start"] for s in sessions] == [
        {"sample_id": r.sample_id, "started_at": r.started_at} for r in firsts
    ]
    assert [s["written"] for s in sessions] == [6, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["cold_start"]["count"] == 2
    assert summary["latency"]["total"]["n"] == 4
