"""Turn a run's records into `summary.json`: accuracy, failures, latency, throughput.

Accuracy is over every sample with an outcome: a failed sample counts in the
denominator and never as an answer, and an answer that could not be read is
wrong (its reason is counted). Latency statistics leave out warm-up samples.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from harness.store import RecordLog
from harness.types import Record

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


def summarize(log: RecordLog, manifest: dict[str, Any]) -> dict[str, Any]:
    outcomes = list(log.latest_by_sample().values())
    planned = manifest.get("samples_planned", len(outcomes))
    ok = [r for r in outcomes if r.ok]
    failed = [r for r in outcomes if not r.ok]
    correct = sum(r.correct for r in outcomes)
    timed = [r for r in ok if not r.warmup]
    return {
        "run_id": manifest.get("run_id"),
        "status": manifest.get("status"),
        "mode": manifest.get("mode"),
        "backend": manifest.get("backend", {}).get("name"),
        "benchmark": manifest.get("benchmark", {}).get("name"),
        "benchmark_version": manifest.get("benchmark", {}).get("version"),
        "samples": {
            "planned": planned,
            "recorded": len(outcomes),
            "missing": max(planned - len(outcomes), 0),
            "ok": len(ok),
            "failed": len(failed),
            "unparsed": sum(1 for r in ok if r.score is not None and r.score.prediction is None),
        },
        "accuracy": _accuracy(correct, len(outcomes)),
        "categories": _categories(outcomes),
        "failures": _failures(failed),
        "unparsed_reasons": dict(
            Counter(r.score.reason for r in ok if r.score and r.score.prediction is None)
        ),
        "latency": latency_stats(timed),
        "warmup_excluded": sum(1 for r in ok if r.warmup),
        "usage": _usage(ok),
        "throughput": _throughput(manifest.get("sessions", [])),
        "skipped_lines": log.skipped,
    }


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


def _accuracy(correct: int, n: int) -> dict[str, Any]:
    return {"value": correct / n if n else None, "correct": correct, "n": n}


def _categories(outcomes: Iterable[Record]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in outcomes:
        groups[record.category or "(none)"].append(record)
    return {
        name: {
            **_accuracy(sum(r.correct for r in records), len(records)),
            "failed": sum(not r.ok for r in records),
        }
        for name, records in sorted(groups.items())
    }


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


def _throughput(sessions: Iterable[dict[str, Any]]) -> dict[str, float | None]:
    """Samples written per second of wall time in which any session ran.

    Sessions of one run follow each other; those of a merged run (its shards)
    overlap, and then the rate is that of all the shards' processes together.
    """
    finished = sorted(
        (s["started_at"], s["finished_at"], s.get("written", 0))
        for s in sessions
        if s.get("finished_at")
    )
    wall, covered_until = 0.0, float("-inf")
    for started, ended, _ in finished:
        wall += max(ended - max(started, covered_until), 0.0)
        covered_until = max(covered_until, ended)
    written = sum(count for _, _, count in finished)
    return {"wall_s": wall, "samples_per_s": written / wall if wall > 0 else None}
