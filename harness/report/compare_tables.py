"""A comparison's tables, as rows of text, and its Markdown.

Each table is a header and rows of cell texts, so the Markdown here and the
HTML report (`harness.report.html`) show the same numbers.
"""

from __future__ import annotations

from harness.analysis.compare import TIMER_RESOLUTION_S, Comparison, Interval, LatencyRatio
from harness.analysis.provenance import PIPELINE_CHECK
from harness.report.markdown import inline, number, percent, seconds, table
from harness.scoring.judge import judge_label

Table = tuple[list[str], list[list[str]]]

ACCURACY_NOTE = (
    "Delta: this run minus the baseline, in percentage points, with a 95 % interval from "
    "a cluster bootstrap over videos (questions about one video resampled together). "
    "McNemar: exact two-sided test on the samples exactly one of the two got right."
)
LATENCY_NOTE = (
    "Steady state, over the joined samples: warm-up samples and cold starts "
    "(each session's first answer) left out."
)
BELOW_RESOLUTION = f"—, a median below {TIMER_RESOLUTION_S * 1000:g} ms"
NOT_MEASURED = (
    f"Not every run is live: the accuracy deltas, McNemar tests and latency ratios below are "
    f"{PIPELINE_CHECK}."
)
NO_TIMINGS = "No timing component is in both runs."
NO_JOINED = "No sample was answered in every run."
NO_PRICES = (
    "Not estimated: no prices given (vqa-harness compare takes --price BACKEND=USD, "
    "in the unit `vqa-harness list` gives for each backend), and no run's records say "
    "what it was billed."
)


def points(value: float | None) -> str:
    """A difference of proportions in percentage points, signed."""
    return "n/a" if value is None else f"{value * 100:+.1f} pp"


def interval(value: Interval | None) -> str:
    return "n/a" if value is None else f"[{value[0] * 100:+.1f}, {value[1] * 100:+.1f}]"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def titled(comparison: Comparison, title: str) -> str:
    """A section title, marked a pipeline check where not every run is live."""
    return title if comparison.measurement else f"{title}: pipeline check (not a measurement)"


def provenance_lines(comparison: Comparison) -> list[str]:
    """What produced each run, one line each; then, unless every run is live, why that matters."""
    lines = [f"{run_label(comparison, i)}: {p.line}" for i, p in enumerate(comparison.provenance)]
    lines += scoring_lines(comparison) + skipped_lines(comparison)
    return lines if comparison.measurement else [*lines, NOT_MEASURED]


def skipped_lines(comparison: Comparison) -> list[str]:
    """Each run's record lines that could not be read and are left out, named."""
    lines = []
    for index, run in enumerate(comparison.runs):
        skipped = run.log.skipped
        if skipped:
            more = f"; and {len(skipped) - 1} more" if len(skipped) > 1 else ""
            lines.append(
                f"{run_label(comparison, index)}: {len(skipped)} record line(s) skipped, "
                f"unreadable ({skipped[0]}{more})"
            )
    return lines


def scoring_lines(comparison: Comparison) -> list[str]:
    """Where a judge graded some runs only, or another judge, or the protocol presets or
    official scorers differ: said before any number."""
    runs = comparison.runs
    differences = (
        (
            "Scoring differs",
            [judge_label(run.manifest.judge) for run in runs],
            "Accuracy, agreement and their tests here are each run's benchmark scoring, alike "
            "in every run (a judge never changes it); judge accuracies are not compared.",
        ),
        (
            "Protocol presets differ",
            [run.manifest.spec.preset or "none" for run in runs],
            "The runs were asked under different settings (frames, slices, prompt): deltas "
            "here measure the protocol with the backend.",
        ),
        (
            "Official scoring differs",
            [comparison.official_scorer(i) for i in range(len(runs))],
            "Deltas and tests here are the benchmark's own scoring, alike in every run; "
            "official accuracies are shown, not compared.",
        ),
    )
    return [
        f"{title}: {'; '.join(f'{run_label(comparison, i)}: {v}' for i, v in enumerate(values))}"
        f". {consequence}"
        for title, values, consequence in differences
        if len(set(values)) > 1
    ]


def run_label(comparison: Comparison, index: int) -> str:
    name = comparison.runs[index].name
    return f"{name} (baseline)" if index == 0 else name


def runs_table(comparison: Comparison) -> Table:
    """Each run: backend, mode, and the samples it recorded, lacks, or failed."""
    header = ["run", "backend", "mode", "recorded", "missing", "failed"]
    rows = [
        [
            run_label(comparison, i),
            run.manifest.backend.name,
            run.manifest.mode,
            str(cover.recorded),
            str(cover.missing),
            str(cover.failed),
        ]
        for i, (run, cover) in enumerate(zip(comparison.runs, comparison.coverage, strict=True))
    ]
    return header, rows


def accuracy_table(comparison: Comparison) -> Table:
    """Accuracy of each run, its delta and McNemar p against the baseline, and agreement."""
    agreements = [pair.agreement for pair in comparison.pairs]
    choice = any(a.choice_n for a in agreements)
    open_ended = any(a.open_n for a in agreements)
    official = [comparison.official_accuracy(i) for i in range(len(comparison.runs))]
    shown = any(value is not None for value in official)
    header = ["run", "backend", "accuracy", "delta (95% CI)", "only baseline right"]
    header += ["only this right", "McNemar p"]
    header += ["same choice"] if choice else []
    header += ["same open answer", "mean WER vs baseline"] if open_ended else []
    header += ["official accuracy"] if shown else []
    baseline = percent(comparison.pairs[0].accuracy.baseline)
    rows = [[run_label(comparison, 0), comparison.runs[0].manifest.backend.name, baseline]]
    rows[0] += ["-"] * (len(header) - 3 - shown) + ([percent(official[0])] if shown else [])
    for index, pair in enumerate(comparison.pairs, start=1):
        acc, agree = pair.accuracy, pair.agreement
        row = [
            run_label(comparison, index),
            comparison.runs[index].manifest.backend.name,
            percent(acc.other),
        ]
        delta = "n/a" if acc.delta is None else f"{points(acc.delta)} {interval(acc.interval)}"
        row += [delta, str(acc.only_baseline)]
        row += [str(acc.only_other), f"{acc.p_value:.3g}"]
        row += [_share(agree.choice_same, agree.choice_n)] if choice else []
        if open_ended:
            row += [_share(agree.open_same, agree.open_n), number(agree.open_mean_wer)]
        row += [percent(official[index])] if shown else []
        rows.append(row)
    return header, rows


def latency_table(comparison: Comparison) -> Table:
    """Median and p90 of each timing component in each run and the baseline, and their ratios.

    A component with a median below the timer's resolution, in either run, shows no ratio.
    """
    header = ["run", "component", "p50 (s)", "baseline p50 (s)", "p50 ratio"]
    header += ["p90 (s)", "baseline p90 (s)", "p90 ratio"]
    rows = [
        [
            run_label(comparison, index),
            key,
            seconds(lat.other_p50),
            seconds(lat.baseline_p50),
            _ratio_cell(lat, lat.p50_ratio),
            seconds(lat.other_p90),
            seconds(lat.baseline_p90),
            _ratio_cell(lat, lat.p90_ratio),
        ]
        for index, pair in enumerate(comparison.pairs, start=1)
        for key, lat in pair.latency.items()
    ]
    return header, rows


def category_table(comparison: Comparison) -> Table:
    """Each category's accuracy in every run, and each run's delta against the baseline."""
    names = [run.name for run in comparison.runs]
    header = ["category", "samples", *names, *(f"{name} - baseline" for name in names[1:])]
    rows = [
        [row.name, str(row.n), *(percent(a) for a in row.accuracy)]
        + [points(row.delta(i)) for i in range(1, len(names))]
        for row in comparison.categories
    ]
    return header, rows


def cost_table(comparison: Comparison) -> Table:
    """Each run's estimated USD per 1,000 samples, and what the estimate rests on."""
    header = ["run", "backend", "USD per 1,000 samples", "basis"]
    rows = [
        [
            run_label(comparison, index),
            run.manifest.backend.name,
            "n/a" if cost.usd_per_1000 is None else f"{cost.usd_per_1000:.2f}",
            cost.basis,
        ]
        for index, (run, cost) in enumerate(zip(comparison.runs, comparison.costs, strict=True))
    ]
    return header, rows


def render_markdown(comparison: Comparison, depth: int = 1) -> str:
    """The comparison for people; `depth` is the level of its top heading."""
    top, section = "#" * depth, "#" * (depth + 1)
    benchmark = comparison.runs[0].manifest.benchmark
    lines = [
        f"{top} Side by side: `{benchmark.name}` v{benchmark.version}",
        "",
        "Provenance:",
        "",
        *(f"- {inline(line)}" for line in provenance_lines(comparison)),
        "",
        f"Baseline: `{comparison.runs[0].name}`. Every statistic is over the "
        f"**{len(comparison.joined)}** samples answered in every run, of {comparison.seen} "
        "with an outcome in any run; samples missing from a run or failed in one are left out.",
        "",
        *table(*runs_table(comparison)),
        "",
        f"{section} {titled(comparison, 'Accuracy and agreement')}",
        "",
        *table(*accuracy_table(comparison)),
        "",
        ACCURACY_NOTE,
        "",
        f"{section} {titled(comparison, 'Latency against the baseline')}",
        "",
        LATENCY_NOTE,
        "",
    ]
    latency = latency_table(comparison)
    lines += table(*latency) if latency[1] else [NO_TIMINGS]
    lines += ["", f"{section} {titled(comparison, 'By category')}", ""]
    categories = category_table(comparison)
    lines += table(*categories) if categories[1] else [NO_JOINED]
    lines += ["", f"{section} Cost per 1,000 samples (estimate)", ""]
    lines += table(*cost_table(comparison)) if comparison.priced else [NO_PRICES]
    return "\n".join(lines) + "\n"


def _ratio_cell(latency: LatencyRatio, value: float | None) -> str:
    return ratio(value) if latency.resolved else BELOW_RESOLUTION


def _share(count: int, total: int) -> str:
    return f"{percent(count / total if total else None)} ({count}/{total})"
