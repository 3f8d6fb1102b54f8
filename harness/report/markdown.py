"""Render a run's summary as Markdown, and write `summary.json` and `report.md`."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from harness.analysis.provenance import Provenance
from harness.analysis.stats import LEVEL
from harness.analysis.summary import summarize_run
from harness.analysis.summary_file import Summary
from harness.files import visible, write_bytes_atomic, write_json_atomic


def write_report(run_dir: Path) -> str:
    """Summarise the run in `run_dir`, write `summary.json` and `report.md`, return the Markdown."""
    return write_summary(run_dir, summarize_run(run_dir))


def write_summary(run_dir: Path, summary: Summary) -> str:
    """Write `summary` as the run's `summary.json` and `report.md`; return the Markdown."""
    markdown = visible(render_markdown(summary))  # any text in the run shown, never a crash
    write_json_atomic(run_dir / "summary.json", summary.to_dict())
    write_bytes_atomic(run_dir / "report.md", markdown.encode())
    return markdown


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def interval(ci: list[float] | None) -> str:
    """An accuracy interval as percentages, e.g. `[41.2%, 58.3%]`."""
    return "n/a" if ci is None else f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table; every cell escaped (`cell`), so each row stays one row."""
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return lines


def cell(value: Any) -> str:
    """A table cell's text as Markdown that shows it as it is and keeps it one cell: HTML
    shown as text, backslashes and pipes escaped, line breaks as `<br>`."""
    text = html.escape(str(value), quote=False).replace("\\", "\\\\").replace("|", "\\|")
    return "<br>".join(text.splitlines())


def inline(text: str) -> str:
    """Free text (a note naming a record, a run id) as Markdown that shows it as it is on
    one line: HTML shown as text, line breaks as spaces."""
    return " ".join(html.escape(text, quote=False).splitlines())


def group_table(label: str, groups: dict[str, dict[str, Any]]) -> list[str]:
    """One row per group: accuracy, then metric means and judge stats where any group has them."""
    metrics = list(
        dict.fromkeys(m for g in groups.values() for m in g.get("metrics", {}).get("mean", {}))
    )
    judged = any("judge" in g for g in groups.values())
    header = [label, "samples", "correct", "failed", "accuracy", f"{LEVEL:.0%} CI", *metrics]
    header += ["judged", "judge accuracy", "judge score", "judge failed"] if judged else []
    rows = []
    for name, g in groups.items():
        means = g.get("metrics", {}).get("mean", {})
        row = [name, g["n"], g["correct"], g["failed"], percent(g["value"]), interval(g["ci"])]
        row += [number(means.get(m)) for m in metrics]
        row += _judge_cells(g.get("judge")) if judged else []
        rows.append(row)
    return table(header, rows)


def _judge_cells(judge: dict[str, Any] | None) -> list[Any]:
    if judge is None:
        return ["-"] * 4
    return [
        judge["judged"],
        percent(judge["accuracy"]),
        number(judge["mean_score"]),
        judge["judge_failed"],
    ]


def _overall_lines(summary: Summary) -> list[str]:
    """Open-ended metric means and the judge's accuracy over the whole run, where present."""
    lines = []
    if summary.metrics:
        metrics = summary.metrics
        means = " · ".join(f"{name} {number(v)}" for name, v in metrics["mean"].items())
        lines += ["", f"Open-ended answers ({metrics['n']}), means: {means}"]
    if summary.judge:
        judge = summary.judge
        lines += [
            "",
            f"LLM judge: {percent(judge['accuracy'])} ({judge['correct']} correct of "
            f"{judge['judged']} judged; mean score {number(judge['mean_score'])}); "
            f"{judge['judge_failed']} judge failure(s), not counted",
        ]
    return lines


def official_lines(official: dict[str, Any]) -> list[str]:
    """The official rule's accuracy beside ours, and the answers the two read differently."""
    lines = [f"Scorer: {official['scorer']}, on {official['scored']} answers. Ours stays primary."]
    theirs = official["accuracy"]
    if theirs is not None:
        lines += [
            "",
            f"Official accuracy: **{percent(theirs['value'])}** {interval(theirs['ci'])} "
            f"({theirs['correct']} correct of {theirs['n']}: the answers it gave a verdict on "
            "and the failed samples) · "
            f"{official['read_differently']} answer(s) read differently from ours, "
            f"{official['scored_differently']} scored differently.",
        ]
    if official["metrics"]:
        means = " · ".join(f"{name} {number(v)}" for name, v in official["metrics"].items())
        lines += ["", f"Official metric means: {means}"]
    for reason, count in official["unscored"].items():
        lines += ["", f"Not scored by it: {count} answer(s): {reason}"]
    if official["examples"]:
        lines += [
            "",
            *table(
                ["sample", "response", "target", "ours", "official"],
                [
                    [
                        e["sample_id"],
                        e["response"],
                        e["target"],
                        _reading(e["ours"]),
                        _reading(e["official"]),
                    ]
                    for e in official["examples"]
                ],
            ),
        ]
    return lines


def backend_facts_lines(backend_facts: dict[str, Any]) -> list[str]:
    """What the run's backend read in its records: a section of its facts and warnings."""
    lines = [f"## {inline(backend_facts['title'])}", ""]
    lines += table(
        ["fact", "value"],
        [[name, _fact(value)] for name, value in backend_facts["facts"].items()],
    )
    for warning in backend_facts["warnings"]:
        lines += ["", f"**Warning:** {inline(warning)}"]
    return lines


def _fact(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _reading(verdict: dict[str, Any]) -> str:
    """A scorer's reading of an answer: what it read, and whether that is correct."""
    read = "unreadable" if verdict["prediction"] is None else repr(verdict["prediction"])
    mark = {True: "correct", False: "wrong", None: "no verdict"}[verdict["correct"]]
    return f"{read}, {mark}"


def _ci_line(ci: list[float] | None, method: dict[str, Any]) -> str:
    return (
        f"{method['level']:.0%} CI {interval(ci)}: {method['method']} over "
        f"{method['clusters']} {method['cluster']}s, {method['resamples']} resamples, "
        f"seed {method['seed']} (likewise per group below)."
    )


def _cold_start_line(cold: dict[str, Any]) -> list[str]:
    if not cold["count"]:
        return []
    values = ", ".join(seconds(v) for v in cold["total"])
    also = f", {cold['warmup']} of them warm-up samples too" if cold["warmup"] else ""
    return [
        f"{cold['count']} cold start(s) (each session's first answer{also}) left out, "
        f"total: {values}.",
        "",
    ]


def published_line(published: dict[str, Any], accuracy: dict[str, Any]) -> str:
    """The run beside the published number for its model and benchmark, or that there is none."""
    if published["value"] is None:
        return "No published number for this model on this benchmark."
    head = f"Published: {published['value']:.1%} ({published['source']})"
    if "partial" in published:
        return f"{head} · this run is partial ({published['partial']}), so not compared."
    ci = accuracy["ci"]
    within = "within" if published["within_interval"] else "outside"
    return (
        f"{head} · this run: {percent(accuracy['value'])} "
        f"{LEVEL:.0%} CI {interval(ci)} · "
        f"difference: {published['difference'] * 100:+.1f} pp (published value {within} the CI)"
    )


def provenance_line(summary: Summary) -> str:
    """What produced the run, from its summary; a summary from before says it does not know."""
    if summary.provenance is None:
        return "not recorded (a summary written before provenance was)"
    return Provenance.from_dict(summary.provenance).line


def render_markdown(summary: Summary) -> str:
    samples = summary.samples
    accuracy = summary.accuracy
    lines = [
        f"# Run {inline(summary.run_id)}",
        "",
        f"**Provenance:** {provenance_line(summary)}",
        "",
        f"backend `{summary.backend}` · benchmark `{summary.benchmark}` "
        f"v{summary.benchmark_version} · status {summary.status} · mode {summary.mode}",
        "",
        "## Accuracy",
        "",
        f"**{percent(accuracy['value'])}** "
        f"({accuracy['correct']} correct of {accuracy['n']} samples;"
        " failed samples count as not correct, unreadable answers as wrong)",
        "",
        _ci_line(accuracy["ci"], summary.ci_method),
    ]
    if summary.published:
        lines += ["", published_line(summary.published, accuracy)]
    if samples["missing"]:
        lines += [
            "",
            f"Incomplete: {samples['missing']} of {samples['planned']} samples have no record yet.",
        ]
    lines += _overall_lines(summary)
    if summary.official:
        lines += ["", "## Official scoring beside ours", "", *official_lines(summary.official)]
    for label, groups in (
        ("category", summary.categories),
        ("task", summary.tasks),
        ("duration", summary.durations),
    ):
        if groups:
            lines += ["", *group_table(label, groups)]
    lines += ["", f"## Failures ({samples['failed']}, {percent(summary.failure_rate)})", ""]
    if summary.failures:
        lines += table(
            ["kind", "count", "example"],
            [[kind, f["count"], f["example"]] for kind, f in summary.failures.items()],
        )
    else:
        lines.append("None.")
    invalid = summary.invalid_samples
    if invalid:
        lines += ["", f"## Invalid samples ({len(invalid)})", ""]
        lines += table(["sample", "reason"], [[i["sample_id"], i["message"]] for i in invalid])
    if summary.unparsed_reasons:
        lines += ["", f"## Unreadable answers ({samples['unparsed']})", ""]
        lines += table(["reason", "count"], [[r, n] for r, n in summary.unparsed_reasons.items()])
    lines += ["", "## Latency (seconds)", ""]
    if summary.warmup_excluded:
        lines += [f"{summary.warmup_excluded} warm-up sample(s) excluded.", ""]
    lines += _cold_start_line(summary.cold_start)
    if summary.latency:
        lines += table(
            ["component", "n", "mean", "p50", "p90", "p99", "max"],
            [
                [key, s["n"], *(seconds(s[k]) for k in ("mean", "p50", "p90", "p99", "max"))]
                for key, s in summary.latency.items()
            ],
        )
    else:
        lines.append("No answered samples.")
    throughput = summary.throughput
    if throughput["samples_per_s"]:
        lines += [
            "",
            f"Throughput: {throughput['samples_per_s']:.2f} samples/s "
            f"over {throughput['wall_s']:.1f} s.",
        ]
    if summary.backend_facts:
        lines += ["", *backend_facts_lines(summary.backend_facts)]
    if summary.skipped_lines:
        lines += [
            "",
            "Skipped unreadable record lines:",
            *(f"- {inline(s)}" for s in summary.skipped_lines),
        ]
    return "\n".join(lines) + "\n"
