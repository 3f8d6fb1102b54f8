"""Turn a run's records into `summary.json`: accuracy, failures, latency, throughput.

Accuracy is over every sample with an outcome: a failed sample counts in the
denominator and never as an answer, and an answer that could not be read is
wrong (its reason is counted). Each accuracy has a 95% interval from a seeded
cluster bootstrap that resamples whole videos (`harness.analysis.stats`), since the
questions about one video are not independent; `ci_method` says how.

Every summary starts with the run's provenance (`harness.analysis.provenance`).
`published` sets the run beside the number published for its model and
benchmark, if any (`harness.analysis.published`).

Latency statistics are the steady state: they leave out warm-up samples, cold
starts, and answers whose timings cover only part of their work (`PARTIAL_TIMINGS`:
picked up on `--resume` from a request an earlier session made). A cold start is
the first answer of each session (a start, a `--resume`, each shard's process),
which `harness.run.session` records in the manifest's session; cold starts are
reported apart (`cold_start`).

Accuracy is broken down by category, and by task and duration bucket when the
records carry them (`Record.groups`). Open-ended answers add the mean of each
of their metrics, and answers graded by an LLM judge add the judge's accuracy
over the samples it judged: a judge failure is counted apart, never as wrong.
These appear overall and per group, only where some record has them.

A benchmark with an official scoring rule (`ScoresOfficially`) adds `official`:
that rule's accuracy beside ours over the same samples (failed ones counting
as not correct in both), the answers the two read or score differently, with
examples, and the answers the rule could not score, by reason.

A backend with facts of its own about a run (`HasRunFacts`: fal's account
concurrency) adds them as `backend_facts`; for that, a summary imports the run's
backend module (never its libraries), when the backend is registered here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.provenance import provenance
from harness.analysis.published import comparison
from harness.analysis.stats import LEVEL, RESAMPLES, bootstrap_ci
from harness.analysis.summary_file import Summary
from harness.protocols import HasRunFacts
from harness.run.directory import Run
from harness.run.manifest import Manifest, Session
from harness.run.store import RecordLog
from harness.scoring.groups import DURATION_ORDER
from harness.scoring.judge import judge_label
from harness.types import INVALID_SAMPLE, PARTIAL_TIMINGS, OfficialScore, Record

# The latency vocabulary of DESIGN.md, in report order; other keys follow sorted.
TIMING_ORDER = (
    "total",
    "upload",
    "queue",
    "inference",
    "frames",
    "preprocess",
    "prefill",
    "decode",
    "tpot",
)
# Seed of the accuracy intervals' resampling: the same records give the same interval.
CI_SEED = 0
# Answers that the official scoring reads differently, shown as examples, and their length.
OFFICIAL_EXAMPLES = 5
EXAMPLE_CHARS = 160


def summarize_run(run_dir: Path) -> Summary:
    """The summary of the run in `run_dir`, computed afresh from its records."""
    run = Run.open(run_dir)
    return summarize(run.log, run.manifest)


def summarize(log: RecordLog, manifest: Manifest) -> Summary:
    """The summary of a run's records (`log`) under its `manifest`."""
    outcomes = list(log.latest_by_sample().values())
    planned = len(outcomes) if manifest.samples_planned is None else manifest.samples_planned
    ok = [r for r in outcomes if r.ok]
    failed = [r for r in outcomes if not r.ok]
    cold = cold_starts(ok, manifest.sessions)
    timed = [r for r in ok if not r.warmup and r not in cold and PARTIAL_TIMINGS not in r.meta]
    overall = accuracy(outcomes)
    missing = max(planned - len(outcomes), 0)
    return Summary(
        run_id=manifest.run_id,
        provenance=provenance(manifest).to_dict(),
        judged_by=judge_label(manifest.judge) if manifest.judge else None,
        preset=manifest.spec.preset,
        status=manifest.status,
        mode=manifest.mode,
        backend=manifest.backend.name,
        benchmark=manifest.benchmark.name,
        benchmark_version=manifest.benchmark.version,
        samples={
            "planned": planned,
            "recorded": len(outcomes),
            "missing": missing,
            "ok": len(ok),
            "failed": len(failed),
            "unparsed": sum(1 for r in ok if r.score is not None and r.score.prediction is None),
        },
        accuracy=overall,
        published=comparison(manifest, overall, missing),
        ci_method=ci_method(outcomes),
        metrics=metric_means(outcomes),
        judge=judge_stats(outcomes),
        official=official_stats(outcomes),
        backend_facts=backend_facts(manifest.backend.name, outcomes),
        categories=breakdown(outcomes, lambda r: r.category or "(none)"),
        tasks=breakdown(outcomes, lambda r: r.groups.get("task")),
        durations=breakdown(outcomes, lambda r: r.groups.get("duration"), DURATION_ORDER),
        failure_rate=len(failed) / len(outcomes) if outcomes else None,
        failures=_failures(failed),
        invalid_samples=[
            {"sample_id": r.sample_id, "message": r.error.message}
            for r in failed
            if r.error and r.error.kind == INVALID_SAMPLE
        ],
        unparsed_reasons=dict(
            Counter(
                r.score.reason or "no reason given"
                for r in ok
                if r.score and r.score.prediction is None
            )
        ),
        latency=latency_stats(timed),
        warmup_excluded=sum(1 for r in ok if r.warmup),
        cold_start={
            "count": len(cold),
            "total": [r.timings["total"] for r in cold],
            "warmup": sum(r.warmup for r in cold),
        },
        usage=_usage(ok),
        throughput=_throughput(manifest.sessions),
        skipped_lines=log.skipped,
    )


def latency_stats(records: Sequence[Record]) -> dict[str, dict[str, float]]:
    """mean, p50, p90, p99 and max of each timing component present."""
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for key, seconds in record.timings.items():
            values[key].append(seconds)
    keys = [k for k in TIMING_ORDER if k in values] + sorted(set(values) - set(TIMING_ORDER))
    stats = {}
    for key in keys:
        data = np.asarray(values[key], dtype=float)
        p50, p90, p99 = np.percentile(data, [50, 90, 99])
        stats[key] = {
            "n": int(data.size),
            "mean": float(data.mean()),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(data.max()),
        }
    return stats


def accuracy(
    records: Sequence[Record], correct: Callable[[Record], bool] = lambda r: r.correct
) -> dict[str, Any]:
    """Share of `records` correct, with counts and a cluster bootstrap interval by video.

    `correct` says which scorer's verdict counts (the benchmark's, by default).
    `ci` is [low, high], or None without records. Records are ordered by video
    first, so the interval does not depend on the order they were written in.
    """
    ordered = sorted(records, key=lambda r: (r.video, r.sample_id))
    verdicts = [correct(r) for r in ordered]
    ci = bootstrap_ci(
        [float(v) for v in verdicts],
        [r.video for r in ordered],
        resamples=RESAMPLES,
        seed=CI_SEED,
        level=LEVEL,
    )
    right = sum(verdicts)
    return {
        "value": right / len(ordered) if ordered else None,
        "correct": right,
        "n": len(ordered),
        "ci": list(ci) if ci else None,
    }


def ci_method(records: Iterable[Record]) -> dict[str, Any]:
    """How every `ci` of the summary was computed, and over how many videos overall."""
    return {
        "method": "percentile cluster bootstrap",
        "cluster": "video",
        "clusters": len({r.video for r in records}),
        "resamples": RESAMPLES,
        "level": LEVEL,
        "seed": CI_SEED,
    }


def cold_starts(records: Iterable[Record], sessions: Iterable[Session]) -> list[Record]:
    """The records that were a session's first answer, as sessions record it (`cold_start`).

    Sessions from before cold starts were recorded, and sessions killed before
    they ended, have none. In session order.
    """
    marks = [(s.cold_start.sample_id, s.cold_start.started_at) for s in sessions if s.cold_start]
    by_mark = {(r.sample_id, r.started_at): r for r in records}
    return [by_mark[mark] for mark in marks if mark in by_mark]


def breakdown(
    outcomes: Iterable[Record],
    key: Callable[[Record], str | None],
    order: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """`group_stats` per value of `key` (records without one left out), in `order`, then sorted."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in outcomes:
        name = key(record)
        if name is not None:
            groups[name].append(record)
    ranked = sorted(groups, key=lambda n: (order.index(n) if n in order else len(order), n))
    return {name: group_stats(groups[name]) for name in ranked}


def group_stats(records: Sequence[Record]) -> dict[str, Any]:
    """Accuracy with counts and failures; metric means and judge stats where present."""
    return {
        **accuracy(records),
        "failed": sum(not r.ok for r in records),
        **_extras(records),
    }


def metric_means(records: Iterable[Record]) -> dict[str, Any] | None:
    """Mean of each open-ended metric over the answered samples that have it."""
    values: dict[str, list[float]] = defaultdict(list)
    scored = 0
    for record in records:
        if record.ok and record.score is not None and record.score.metrics:
            scored += 1
            for name, value in record.score.metrics.items():
                values[name].append(value)
    if not scored:
        return None
    return {"n": scored, "mean": {name: float(np.mean(v)) for name, v in values.items()}}


def judge_stats(records: Iterable[Record]) -> dict[str, Any] | None:
    """The LLM judge's accuracy and mean score over the samples it judged; failures apart."""
    verdicts = [r.score.judge for r in records if r.ok and r.score and r.score.judge is not None]
    if not verdicts:
        return None
    judged = [v for v in verdicts if "error" not in v]
    correct = sum(bool(v.get("correct")) for v in judged)
    scores = [v["score"] for v in judged if isinstance(v.get("score"), int | float)]
    return {
        "judged": len(judged),
        "correct": correct,
        "accuracy": correct / len(judged) if judged else None,
        "mean_score": float(np.mean(scores)) if scores else None,
        "judge_failed": len(verdicts) - len(judged),
    }


def official_stats(outcomes: Sequence[Record]) -> dict[str, Any] | None:
    """The official rule's accuracy over its own denominator (the samples it gave a
    verdict on, and the failed ones), its metric means, the answers it reads or scores
    otherwise than ours, with examples, and the answers it could not score, by reason."""
    scored = [r for r in outcomes if r.ok and r.score is not None and r.score.official]
    if not scored:
        return None
    ran = [r for r in scored if _official(r).error is None]
    counted = {r.sample_id for r in ran if _official(r).correct is not None}
    read = [r for r in ran if _choice(r) and _official(r).prediction != _prediction(r)]
    scored_apart = [r for r in ran if _official(r).correct != r.correct]
    means: dict[str, list[float]] = defaultdict(list)
    for record in ran:
        for name, value in _official(record).metrics.items():
            means[name].append(value)
    differ = {r.sample_id: r for r in [*scored_apart, *read]}
    return {
        "scorer": ", ".join(sorted({_official(r).scorer for r in scored})),
        "scored": len(ran),
        "accuracy": (
            accuracy([r for r in outcomes if not r.ok or r.sample_id in counted], _correct)
            if counted
            else None
        ),
        "metrics": {name: float(np.mean(values)) for name, values in means.items()},
        "read_differently": len(read),
        "scored_differently": len(scored_apart),
        "examples": [_difference(r) for r in list(differ.values())[:OFFICIAL_EXAMPLES]],
        "unscored": dict(Counter(e for r in scored if (e := _official(r).error) is not None)),
    }


def backend_facts(backend: str, outcomes: Sequence[Record]) -> dict[str, Any] | None:
    """What backend `backend` reads in the run's records (`HasRunFacts`), if it is
    registered here and reads any."""
    from harness.plugins import backends

    cls = backends.find(backend)
    facts = cls.run_facts(outcomes) if isinstance(cls, HasRunFacts) else None
    return facts.to_dict() if facts else None


def _official(record: Record) -> OfficialScore:
    assert record.score is not None and record.score.official is not None
    return record.score.official


def _prediction(record: Record) -> str | None:
    return record.score.prediction if record.score else None


def _choice(record: Record) -> bool:
    """Whether ours scored the answer as multiple choice (open-ended scores carry metrics)."""
    return record.score is not None and not record.score.metrics


def _correct(record: Record) -> bool:
    """The official rule's verdict (a failed sample is not correct)."""
    return record.ok and bool(_official(record).correct)


def _difference(record: Record) -> dict[str, Any]:
    """One answer the two scorers read or scored differently, as reports show it."""
    response = record.response or ""
    official = _official(record)
    return {
        "sample_id": record.sample_id,
        "response": response[:EXAMPLE_CHARS] + ("…" if len(response) > EXAMPLE_CHARS else ""),
        "target": record.target,
        "ours": {"prediction": _prediction(record), "correct": record.correct},
        "official": {"prediction": official.prediction, "correct": official.correct},
    }


def _extras(records: Sequence[Record]) -> dict[str, Any]:
    """`metrics` and `judge`, each only when some record has it."""
    extras = {"metrics": metric_means(records), "judge": judge_stats(records)}
    return {key: value for key, value in extras.items() if value is not None}


def _failures(failed: Iterable[Record]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for record in failed:
        kind, message = (
            (record.error.kind, record.error.message) if record.error else ("unknown", "")
        )
        entry = out.setdefault(kind, {"count": 0, "example": message})
        entry["count"] += 1
    return dict(sorted(out.items(), key=lambda item: -item[1]["count"]))


def _usage(ok: Iterable[Record]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for record in ok:
        totals.update(record.usage)
    return dict(totals)


def _throughput(sessions: Iterable[Session]) -> dict[str, float | None]:
    """Samples written per second of wall time in which any session ran.

    Sessions of one run follow each other; those of a merged run (its shards)
    overlap, and then the rate is that of all the shards' processes together.
    """
    finished = sorted(
        (s.started_at, s.finished_at, s.written or 0) for s in sessions if s.finished_at
    )
    wall, covered_until = 0.0, float("-inf")
    for started, ended, _ in finished:
        wall += max(ended - max(started, covered_until), 0.0)
        covered_until = max(covered_until, ended)
    written = sum(count for _, _, count in finished)
    return {"wall_s": wall, "samples_per_s": written / wall if wall > 0 else None}
