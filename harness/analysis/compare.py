"""Runs side by side: join on sample id, paired accuracy, agreement, latency, cost.

The first run is the baseline and every other run is compared with it. Runs are
joined on sample id, each sample's outcome being what `latest_by_sample` gives,
and every statistic is over the *joined* samples: those answered (OK) in every
run, so that all runs are measured on the same questions. They are taken in
order of video and sample id, so no statistic depends on the order records were
written in. A sample that some run lacks, or that failed in some run, is left
out of the join and counted per run, never dropped silently. Runs of different
benchmarks, or of different versions of one, are refused.

- Accuracy delta: other minus baseline, with a 95 % interval from the cluster
  bootstrap over videos (`paired_bootstrap_ci`), and McNemar's exact p-value
  from the discordant pairs.
- Agreement: for multiple choice, the same extracted choice (`score.prediction`;
  an unreadable answer agrees with nothing); for open-ended answers, the mean
  WER of the other run's response against the baseline's, and how many are the
  same after normalisation (WER 0).
- Latency: per timing component both runs have, other over baseline of the
  median and of the p90, in the steady state: warm-up samples and cold starts
  (each session's first answer) left out, as in a run's summary. A component
  with a median below the timer's useful resolution (1 ms) has no ratio.
- Official scoring: where the benchmark has an official rule, each run's
  accuracy by it over the joined samples, beside (never instead of) its own;
  runs whose official scorers differ are said to.
- Provenance: what produced each run (`harness.analysis.provenance`); unless
  every run is live, the comparison is a pipeline check, not a measurement.
- Cost per 1,000 samples, by the manifest's backend name: each backend estimates
  its own (`harness.protocols.EstimatesCost`) from its records and sessions and one
  price in a unit it names, or from what its records say it was billed (fal's billed
  units at fal's unit price), with no price given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.provenance import Provenance, provenance
from harness.analysis.stats import bootstrap_ci, mcnemar_p, paired_bootstrap_ci
from harness.analysis.summary import cold_starts, latency_stats
from harness.errors import HarnessError
from harness.protocols import Cost, EstimatesCost
from harness.run.directory import Run
from harness.scoring.open_ended import word_error_rate
from harness.types import Record

Interval = tuple[float, float]
TIMER_RESOLUTION_S = 0.001
"""Below this, a timing is mostly the timer's own noise: no ratio of two such medians."""


class CompareError(HarnessError):
    """Runs that cannot be compared, or a report that cannot be written."""


@dataclass(frozen=True)
class Coverage:
    """Why a run's samples are or are not in the join."""

    recorded: int  # samples with an outcome in this run
    missing: int  # samples another run has and this one lacks
    failed: int  # samples whose outcome in this run is a failure


@dataclass(frozen=True)
class PairedAccuracy:
    """Accuracy of the baseline and another run over the same samples."""

    n: int
    baseline: float | None
    other: float | None
    delta: float | None  # other - baseline
    interval: Interval | None  # 95 % cluster-bootstrap interval of the delta
    only_baseline: int  # right in the baseline only
    only_other: int  # right in the other run only
    p_value: float  # McNemar's exact test on the discordant pairs


@dataclass(frozen=True)
class Agreement:
    """How often two runs give the same answer."""

    choice_n: int  # multiple-choice samples
    choice_same: int  # ... with the same extracted choice
    open_n: int  # open-ended samples
    open_same: int  # ... with the same answer after normalisation (WER 0)
    open_mean_wer: float | None  # mean WER of the other's answer against the baseline's


@dataclass(frozen=True)
class LatencyRatio:
    """Median and p90 of one timing component in both runs, and other / baseline."""

    baseline_p50: float
    other_p50: float
    baseline_p90: float
    other_p90: float

    @property
    def resolved(self) -> bool:
        """Whether both medians are at or above `TIMER_RESOLUTION_S`, so a ratio means
        something: below it, a median is mostly the timer's noise (1762x of 0.1 ms)."""
        return min(self.baseline_p50, self.other_p50) >= TIMER_RESOLUTION_S

    @property
    def p50_ratio(self) -> float | None:
        return _ratio(self.other_p50, self.baseline_p50)

    @property
    def p90_ratio(self) -> float | None:
        return _ratio(self.other_p90, self.baseline_p90)


@dataclass(frozen=True)
class Pair:
    """One run compared with the baseline over the joined samples."""

    accuracy: PairedAccuracy
    agreement: Agreement
    latency: dict[str, LatencyRatio]


@dataclass(frozen=True)
class CategoryRow:
    """A category's accuracy in each run (joined samples), with cluster-bootstrap intervals."""

    name: str
    n: int
    accuracy: list[float]
    intervals: list[Interval | None]

    def delta(self, index: int) -> float:
        """Accuracy of run `index` minus the baseline's."""
        return self.accuracy[index] - self.accuracy[0]


def registered_estimator(name: str) -> type[EstimatesCost] | None:
    """Backend `name`, if it is registered and estimates its cost (imported only then)."""
    from harness.plugins import backends

    cls = backends.find(name)
    return cls if isinstance(cls, EstimatesCost) else None


@dataclass(frozen=True)
class Prices:
    """USD per each backend's own unit, by backend name, and the backends that apply them."""

    usd: Mapping[str, float] = field(default_factory=dict)
    estimator: Callable[[str], type[EstimatesCost] | None] = registered_estimator
    """The backend registered as a name, where it estimates its cost (a run whose records
    say what it was billed prices itself with no `usd` given)."""

    def __bool__(self) -> bool:
        return bool(self.usd)


@dataclass(frozen=True)
class Comparison:
    """Every run against the first: the join, each pair, categories and costs."""

    runs: list[Run]
    provenance: list[Provenance]  # per run
    coverage: list[Coverage]
    joined: list[str]  # sample ids answered in every run, by (video, sample id)
    pairs: list[Pair]  # runs[1:] against runs[0]
    categories: list[CategoryRow]
    prices: Prices
    costs: list[Cost]  # per run

    @property
    def priced(self) -> bool:
        """Whether there are costs to show: prices were given, or some run has its own."""
        return bool(self.prices) or any(c.usd_per_1000 is not None for c in self.costs)

    @property
    def measurement(self) -> bool:
        """Whether every run is live, so differences measure backends, not only the pipeline."""
        return all(p.measurement for p in self.provenance)

    @property
    def seen(self) -> int:
        """Samples with an outcome in any run."""
        return len(set().union(*(run.outcomes for run in self.runs)))

    def records(self, index: int) -> list[Record]:
        """Run `index`'s records of the joined samples, in join order."""
        outcomes = self.runs[index].outcomes
        return [outcomes[sample] for sample in self.joined]

    def official_scorer(self, index: int) -> str:
        """The official scorer(s) that scored run `index`'s answers, or "none"."""
        scorers = {
            r.score.official.scorer
            for r in self.runs[index].outcomes.values()
            if r.score is not None and r.score.official is not None
        }
        return ", ".join(sorted(scorers)) or "none"

    def official_accuracy(self, index: int) -> float | None:
        """Run `index`'s accuracy over the joined samples by the benchmark's official rule;
        None unless that rule gave a verdict on every one of them."""
        verdicts = [
            r.score.official.correct if r.score and r.score.official else None
            for r in self.records(index)
        ]
        if not verdicts or None in verdicts:
            return None
        return sum(map(bool, verdicts)) / len(verdicts)

    def timed(self, index: int) -> list[Record]:
        """Run `index`'s joined records in the steady state (see `steady_state`)."""
        return steady_state(self.runs[index], self.records(index))


def check_comparable(runs: Sequence[Run]) -> None:
    """Refuse fewer than two runs, or runs of different benchmarks or benchmark versions."""
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs")
    first = runs[0].manifest.benchmark
    for run in runs[1:]:
        other = run.manifest.benchmark
        if other != first:
            raise CompareError(
                f"{run.path} is benchmark {other.name} v{other.version} but {runs[0].path} "
                f"is {first.name} v{first.version}: only runs of one benchmark version can be "
                "compared"
            )


def join(runs: Sequence[Run]) -> tuple[list[str], list[Coverage]]:
    """The samples answered in every run, by (video, sample id), and each run's coverage."""
    seen = set().union(*(run.outcomes for run in runs))
    answered = [
        record
        for sample, record in runs[0].outcomes.items()
        if all(sample in run.outcomes and run.outcomes[sample].ok for run in runs)
    ]
    joined = [r.sample_id for r in sorted(answered, key=lambda r: (r.video, r.sample_id))]
    coverage = [
        Coverage(
            recorded=len(run.outcomes),
            missing=len(seen - run.outcomes.keys()),
            failed=sum(not record.ok for record in run.outcomes.values()),
        )
        for run in runs
    ]
    return joined, coverage


def paired_accuracy(baseline: Sequence[Record], other: Sequence[Record]) -> PairedAccuracy:
    """Accuracy of both, the delta with its interval (clustered by video), and McNemar's p."""
    first = [float(r.correct) for r in baseline]
    second = [float(r.correct) for r in other]
    n = len(first)
    only_baseline = sum(a > b for a, b in zip(first, second, strict=True))
    only_other = sum(b > a for a, b in zip(first, second, strict=True))
    baseline_accuracy = sum(first) / n if n else None
    other_accuracy = sum(second) / n if n else None
    delta = None
    if baseline_accuracy is not None and other_accuracy is not None:
        delta = other_accuracy - baseline_accuracy
    return PairedAccuracy(
        n=n,
        baseline=baseline_accuracy,
        other=other_accuracy,
        delta=delta,
        interval=paired_bootstrap_ci(first, second, [r.video for r in baseline]),
        only_baseline=only_baseline,
        only_other=only_other,
        p_value=mcnemar_p(only_baseline, only_other),
    )


def agreement(baseline: Sequence[Record], other: Sequence[Record]) -> Agreement:
    """Same choice (multiple choice), or WER between the two responses (open-ended)."""
    choice_n = choice_same = 0
    errors: list[float] = []
    for a, b in zip(baseline, other, strict=True):
        if _open_ended(a) or _open_ended(b):
            errors.append(word_error_rate(b.response or "", [a.response or ""]))
        else:
            choice_n += 1
            choice_same += _choice(a) is not None and _choice(a) == _choice(b)
    return Agreement(
        choice_n=choice_n,
        choice_same=choice_same,
        open_n=len(errors),
        open_same=sum(error == 0 for error in errors),
        open_mean_wer=sum(errors) / len(errors) if errors else None,
    )


def steady_state(run: Run, records: Sequence[Record]) -> list[Record]:
    """`records` less warm-up samples and the run's cold starts, as its summary leaves them out."""
    cold = cold_starts(records, run.manifest.sessions)
    return [r for r in records if not r.warmup and r not in cold]


def latency_ratios(baseline: Sequence[Record], other: Sequence[Record]) -> dict[str, LatencyRatio]:
    """Median and p90 of each timing component both sets of records have."""
    first = latency_stats(baseline)
    second = latency_stats(other)
    return {
        key: LatencyRatio(stats["p50"], second[key]["p50"], stats["p90"], second[key]["p90"])
        for key, stats in first.items()
        if key in second
    }


def category_rows(runs_records: Sequence[Sequence[Record]]) -> list[CategoryRow]:
    """Each category's accuracy per run over the same samples, with cluster-bootstrap intervals.

    Samples are grouped by their category in the first run (the baseline).
    """
    positions: dict[str, list[int]] = {}
    for index, record in enumerate(runs_records[0]):
        positions.setdefault(record.category or "(none)", []).append(index)
    rows = []
    for name in sorted(positions):
        groups = [[records[i] for i in positions[name]] for records in runs_records]
        correct = [[float(r.correct) for r in group] for group in groups]
        rows.append(
            CategoryRow(
                name=name,
                n=len(positions[name]),
                accuracy=[sum(values) / len(values) for values in correct],
                intervals=[
                    bootstrap_ci(values, [r.video for r in group])
                    for values, group in zip(correct, groups, strict=True)
                ],
            )
        )
    return rows


def run_cost(run: Run, prices: Prices) -> Cost:
    """The run's estimated cost per 1,000 samples, by its backend's own estimate."""
    backend = run.manifest.backend.name
    estimator = prices.estimator(backend)
    if estimator is None:
        return Cost(None, f"no price applies to backend {backend}: it estimates no cost")
    records = list(run.outcomes.values())
    return estimator.estimate_cost(records, run.manifest.sessions, prices.usd.get(backend))


def compare_runs(paths: Sequence[Path], prices: Prices | None = None) -> Comparison:
    """Read the runs at `paths` and compare each with the first."""
    prices = Prices() if prices is None else prices
    runs = [Run.open(path) for path in paths]
    check_comparable(runs)
    joined, coverage = join(runs)
    records = [[run.outcomes[sample] for sample in joined] for run in runs]
    timed = [steady_state(run, rs) for run, rs in zip(runs, records, strict=True)]
    pairs = [
        Pair(
            accuracy=paired_accuracy(records[0], other),
            agreement=agreement(records[0], other),
            latency=latency_ratios(timed[0], other_timed),
        )
        for other, other_timed in zip(records[1:], timed[1:], strict=True)
    ]
    return Comparison(
        runs=runs,
        provenance=[provenance(run.manifest) for run in runs],
        coverage=coverage,
        joined=joined,
        pairs=pairs,
        categories=category_rows(records),
        prices=prices,
        costs=[run_cost(run, prices) for run in runs],
    )


def _open_ended(record: Record) -> bool:
    return bool(record.score and record.score.metrics)


def _choice(record: Record) -> str | None:
    return record.score.prediction if record.score else None


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference else None
