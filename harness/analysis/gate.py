"""`vqa-harness gate`: hold a run to a baseline `summary.json`, for CI.

The run's summary is computed afresh from its records, so a scoring change
shows up, and compared with the baseline's:

- accuracy may fall by at most `max_accuracy_drop`, a fraction (0.02 is two
  points). The default, 0, allows no drop at all: right for a replayed or
  otherwise deterministic run; give live runs a tolerance, such as the half
  width of the baseline's interval.
- with `max_latency_ratio`, the p50 of `total` and of every other timing
  component both summaries have may be at most that many times the baseline's
  (steady state: warm-up and cold starts are not in it). Unset, latency is not
  checked, since timings depend on the machine and the service's load.

A run with records it cannot read (another schema, a field of the wrong type) is
refused, naming how many: its numbers would leave them out. Torn lines, which a
killed writer leaves and which hold no record, are not counted.

The baseline must be of the same benchmark and benchmark version. A version
changes whenever samples, prompts or scoring change, so across versions the
two accuracies measure different things: the gate refuses, as bad input,
rather than warn and pass or fail on a meaningless difference. Regenerate the
baseline instead. Other differences (backend, sample count, an incomplete run)
are noted under the table and do not fail the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.summary import summarize
from harness.analysis.summary_file import Summary
from harness.errors import HarnessError
from harness.files import not_a_file
from harness.run.directory import Run

# Slack for float rounding when a value sits exactly on its bound.
TOLERANCE = 1e-9


class GateError(HarnessError):
    """Input the gate cannot judge: an unreadable or foreign baseline, another benchmark."""


@dataclass(frozen=True)
class Bounds:
    """How far a run may fall behind its baseline."""

    max_accuracy_drop: float = 0.0
    max_latency_ratio: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_accuracy_drop <= 1:
            raise GateError(f"max accuracy drop must be 0 to 1, got {self.max_accuracy_drop}")
        if self.max_latency_ratio is not None and not self.max_latency_ratio > 0:
            raise GateError(f"max latency ratio must be positive, got {self.max_latency_ratio}")


@dataclass(frozen=True)
class Check:
    """One bound: the run's value against a limit derived from the baseline's."""

    metric: str
    baseline: float
    run: float
    limit: float
    rule: str
    at_least: bool
    """True when the run must reach the limit (accuracy), False when it must stay under."""
    unit: str = "s"
    """`%` for a fraction shown as a percentage, `s` for seconds."""

    @property
    def passed(self) -> bool:
        if self.at_least:
            return self.run >= self.limit - TOLERANCE
        return self.run <= self.limit + TOLERANCE


@dataclass(frozen=True)
class GateResult:
    """The checks made, what the gate noticed besides, and which run against which baseline."""

    subject: str
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    scoring: str | None = None
    """How the run's and the baseline's scoring differ, said before any check; None: alike."""

    @property
    def breached(self) -> list[str]:
        return [check.metric for check in self.checks if not check.passed]

    @property
    def passed(self) -> bool:
        return not self.breached


def gate_run(run_dir: Path, baseline_path: Path, bounds: Bounds) -> GateResult:
    """Summarise the run in `run_dir` from its records and gate it against `baseline_path`;
    refuse a run with records it cannot read, as its numbers would leave them out."""
    baseline = load_summary(baseline_path)
    run = Run.open(run_dir)
    merged = [
        n for shard in run.manifest.merged_from or () for n in shard.get("unreadable_records", ())
    ]
    unreadable = run.log.unreadable + merged
    if unreadable:
        total = len(run.log.records) + len(unreadable)
        more = f"; and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
        raise GateError(
            f"run {run_dir} has {len(unreadable)} unreadable record(s) of {total} "
            f"({unreadable[0]}{more}): its numbers would leave them out"
        )
    summary = summarize(run.log, run.manifest)
    return gate(summary, baseline, bounds, baseline_name=str(baseline_path))


def load_summary(path: Path) -> Summary:
    """Read a `summary.json`; a missing file, bad JSON or another document is a `GateError`."""
    if path.exists() and not path.is_file():
        raise GateError(f"cannot read baseline {path}: it is {not_a_file(path)}")
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise GateError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    except RecursionError:
        raise GateError(f"cannot read baseline {path}: JSON nested too deeply") from None
    except ValueError as exc:
        raise GateError(f"baseline {path} is not JSON: {exc}") from None
    try:
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        return Summary.from_dict(data)
    except ValueError as exc:
        raise GateError(f"{path} is not a run's summary.json ({exc})") from None


def gate(
    run: Summary,
    baseline: Summary,
    bounds: Bounds,
    *,
    baseline_name: str = "baseline",
) -> GateResult:
    """Check the `run` summary against the `baseline` summary within `bounds`."""
    for what, key in (("benchmark", "benchmark"), ("benchmark version", "benchmark_version")):
        mine, theirs = getattr(run, key), getattr(baseline, key)
        if mine != theirs:
            raise GateError(
                f"run {run.run_id} has {what} {mine!r} but {baseline_name} has "
                f"{theirs!r}: regenerate the baseline"
            )
    if run.accuracy["value"] is None or baseline.accuracy["value"] is None:
        raise GateError(f"no accuracy to compare: run {run.run_id} or {baseline_name} is empty")
    checks = [_accuracy_check(run, baseline, bounds.max_accuracy_drop)]
    notes = _notes(run, baseline)
    if bounds.max_latency_ratio is not None:
        latency = _latency_checks(run, baseline, bounds.max_latency_ratio)
        checks += latency
        if not latency:
            notes.append("latency not checked: the run and the baseline share no timed component")
    subject = (
        f"run `{run.run_id}` ({run.backend}, {run.mode}) against {baseline_name} "
        f"(`{baseline.run_id}`, {baseline.backend}, {baseline.mode}) · "
        f"benchmark `{run.benchmark}` v{run.benchmark_version}"
    )
    return GateResult(subject, checks, notes, _scoring_difference(run, baseline, baseline_name))


def _scoring_difference(run: Summary, baseline: Summary, baseline_name: str) -> str | None:
    """A judge graded one side only, or another judge, or the official scorers differ:
    accuracy is still alike (the benchmark's own scoring, which neither changes); judge
    and official accuracies are not compared."""
    differences = [
        f"{what}: {mine} for run {run.run_id}, {theirs} for {baseline_name}"
        for what, mine, theirs in (
            ("judge", run.judged_by or "none", baseline.judged_by or "none"),
            ("official scoring", _official(run), _official(baseline)),
            ("protocol preset", run.preset or "none", baseline.preset or "none"),
        )
        if mine != theirs
    ]
    if not differences:
        return None
    return (
        f"scoring differs ({'; '.join(differences)}). The gate holds the benchmark's own "
        "accuracy, which is alike in both (neither a judge nor an official scorer changes it); "
        "judge and official accuracies are not compared."
    )


def _official(summary: Summary) -> str:
    return summary.official["scorer"] if summary.official else "none"


def _accuracy_check(run: Summary, baseline: Summary, drop: float) -> Check:
    base = baseline.accuracy["value"]
    return Check(
        metric="accuracy",
        baseline=base,
        run=run.accuracy["value"],
        limit=base - drop,
        rule=f"baseline - {drop * 100:.2f} pts",
        at_least=True,
        unit="%",
    )


def _latency_checks(run: Summary, baseline: Summary, ratio: float) -> list[Check]:
    """p50 of each timing component in both summaries, in the run's order (`total` first)."""
    common = [key for key in run.latency if key in baseline.latency]
    return [
        Check(
            metric=f"{key} p50",
            baseline=baseline.latency[key]["p50"],
            run=run.latency[key]["p50"],
            limit=baseline.latency[key]["p50"] * ratio,
            rule=f"{ratio:g} x baseline",
            at_least=False,
        )
        for key in common
    ]


def _notes(run: Summary, baseline: Summary) -> list[str]:
    """Differences worth knowing that do not fail the gate."""
    notes = []
    if run.backend != baseline.backend:
        notes.append(f"backends differ: run {run.backend}, baseline {baseline.backend}")
    ran, base = run.samples["recorded"], baseline.samples["recorded"]
    if ran != base:
        notes.append(f"accuracy is over {ran} samples in the run but {base} in the baseline")
    if run.samples["missing"]:
        notes.append(
            f"the run is incomplete: {run.samples['missing']} of "
            f"{run.samples['planned']} planned samples have no record"
        )
    return notes
