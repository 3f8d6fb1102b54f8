"""A comparison as one self-contained HTML page: its tables and inline SVG plots.

The plots are small SVGs written directly (`harness.report.plots`), not drawn with
matplotlib: three simple chart shapes do not justify a plotting library (and
its font cache) in every install, direct markup is deterministic and small,
text stays text, and each plot carries the `id` and `<title>` that tests and
screen readers find. The page fetches nothing: no scripts, fonts or images,
styles inline, and a Content-Security-Policy of `default-src 'none'` makes a
browser refuse any request all the same. Every text taken from records and
manifests is escaped.

The page opens with what produced each run (its provenance); unless every run
is live, the sections with deltas, tests and ratios are titled a pipeline check.

Plots: a latency CDF per timing component (joined samples, steady state),
each category's accuracy per run with 95 % cluster-bootstrap intervals, and
the share of joined samples where each run answers as the baseline does.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from harness.analysis.compare import CompareError, Comparison
from harness.analysis.summary import TIMING_ORDER
from harness.files import visible, write_bytes_atomic
from harness.report.compare_tables import (
    ACCURACY_NOTE,
    LATENCY_NOTE,
    NO_JOINED,
    NO_PRICES,
    NO_TIMINGS,
    Table,
    accuracy_table,
    category_table,
    cost_table,
    latency_table,
    provenance_lines,
    runs_table,
    titled,
)
from harness.report.plots import bar_plot, cdf_plot, share_plot

REPORT = "report.html"
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.number { text-align: right; }
th { background: #f4f4f4; }
figure { margin: 1em 0; overflow-x: auto; }
p.note { color: #555; font-size: 0.9em; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'"
NUMBER = re.compile(r"[-+]?\d")


def default_html_path(first_run: Path) -> Path:
    """`report.html` next to the first run's directory."""
    run = first_run if first_run.name not in ("", "..") else first_run.resolve()
    return run.parent / REPORT


def write_html_report(comparison: Comparison, path: Path) -> Path:
    """Write the page to `path` atomically (a killed or failed write leaves the old page)
    and return it."""
    try:
        write_bytes_atomic(path, visible(render_html(comparison)).encode())
    except OSError as exc:
        raise CompareError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def render_html(comparison: Comparison) -> str:
    """The whole page: the comparison's tables and plots, nothing fetched."""
    benchmark = comparison.runs[0].manifest.benchmark
    title = f"Side by side: {benchmark.name} v{benchmark.version}"
    latency = latency_table(comparison)
    categories = category_table(comparison)
    body = [
        f"<h1>{escape(title)}</h1>",
        '<ul id="provenance">'
        + "".join(f"<li>{escape(line)}</li>" for line in provenance_lines(comparison))
        + "</ul>",
        f"<p>Baseline: <code>{escape(comparison.runs[0].name)}</code>. Every statistic is over "
        f"the <strong>{len(comparison.joined)}</strong> samples answered in every run, of "
        f"{comparison.seen} with an outcome in any run; samples missing from a run or failed "
        "in one are left out.</p>",
        _table("runs", runs_table(comparison)),
        f"<h2>{escape(titled(comparison, 'Accuracy and agreement'))}</h2>",
        _table("comparison", accuracy_table(comparison)),
        f'<p class="note">{escape(ACCURACY_NOTE)}</p>',
        _figure(_agreement_plot(comparison)),
        f"<h2>{escape(titled(comparison, 'Latency against the baseline'))}</h2>",
        f'<p class="note">{escape(LATENCY_NOTE)}</p>',
        _table("latency", latency) if latency[1] else f"<p>{escape(NO_TIMINGS)}</p>",
        *(_figure(plot) for plot in _latency_plots(comparison)),
        f"<h2>{escape(titled(comparison, 'By category'))}</h2>",
        _figure(_category_plot(comparison)),
        _table("categories", categories) if categories[1] else f"<p>{escape(NO_JOINED)}</p>",
        "<h2>Cost per 1,000 samples (estimate)</h2>",
        _table("cost", cost_table(comparison))
        if comparison.priced
        else f"<p>{escape(NO_PRICES)}</p>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _latency_plots(comparison: Comparison) -> list[str]:
    """A CDF of `total` and each other timing component any run has (joined, steady state)."""
    timed = [comparison.timed(i) for i in range(len(comparison.runs))]
    keys = {"total"} | {key for records in timed for r in records for key in r.timings}
    ordered = [k for k in TIMING_ORDER if k in keys] + sorted(keys - set(TIMING_ORDER))
    return [
        cdf_plot(
            f"latency-cdf-{_slug(key)}",
            f"Latency CDF: {key}",
            [
                (run.name, [r.timings[key] for r in records if key in r.timings])
                for run, records in zip(comparison.runs, timed, strict=True)
            ],
        )
        for key in ordered
    ]


def _category_plot(comparison: Comparison) -> str:
    rows = comparison.categories
    return bar_plot(
        "category-accuracy",
        "Accuracy by category (95% cluster-bootstrap intervals)",
        [row.name for row in rows],
        [run.name for run in comparison.runs],
        [row.accuracy for row in rows],
        [row.intervals for row in rows],
    )


def _agreement_plot(comparison: Comparison) -> str:
    """Per run and answer kind, the joined samples answered as the baseline answers them."""
    labels, counts = [], []
    for index, pair in enumerate(comparison.pairs, start=1):
        agree, name = pair.agreement, comparison.runs[index].name
        if agree.choice_n:
            labels.append(f"{name}: multiple choice ({agree.choice_n}), same extracted choice")
            counts.append([agree.choice_same, agree.choice_n - agree.choice_same])
        if agree.open_n:
            labels.append(f"{name}: open-ended ({agree.open_n}), same normalised answer")
            counts.append([agree.open_same, agree.open_n - agree.open_same])
    return share_plot(
        "agreement", "Agreement with the baseline", labels, ["same", "different"], counts
    )


def _table(table_id: str, content: Table) -> str:
    header, rows = content
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(text: str) -> str:
    """A table cell; numbers (and signed differences) right-aligned."""
    kind = ' class="number"' if NUMBER.match(text) else ""
    return f"<td{kind}>{escape(text)}</td>"


def _figure(svg: str) -> str:
    return f"<figure>{svg}</figure>"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)
