"""Small SVG charts for inline use in HTML: step CDFs, bars with intervals, shares.

Each chart is one `<svg>` element with an `id`, `role="img"` and a `<title>`,
drawn with plain elements and presentation attributes (no scripts, no external
fonts or styles). Every text is escaped, so labels taken from records and
manifests cannot inject markup. Hovering a curve, bar or segment shows its
numbers (a `<title>` child).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

Interval = tuple[float, float]
Series = tuple[str, Sequence[float]]

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
SHARE_COLOURS = ("#2ca02c", "#d62728", "#7f7f7f", "#1f77b4")
FONT = 'font-family="sans-serif" font-size="12"'
LEFT, RIGHT, BOTTOM = 56, 16, 44
LINE = 18  # height of a legend line or a label line
LABEL_CHARS = 32  # longer group labels are cut (the full text is in the bar's title)


def cdf_plot(plot_id: str, title: str, series: Sequence[Series]) -> str:
    """Empirical CDF of each series of seconds, as step curves over a shared axis from 0."""
    width, plot_h = 640, 220
    top = 36 + LINE * len(series)
    plot_w, height = width - LEFT - RIGHT, top + plot_h + BOTTOM
    high = max((max(values) for _, values in series if values), default=0.0)
    x_ticks = ticks(high)

    def x(value: float) -> float:
        return LEFT + plot_w * value / x_ticks[-1]

    def y(share: float) -> float:
        return top + plot_h * (1 - share)

    parts = [_open(plot_id, title, width, height), _heading(title)]
    parts += _legend([name for name, _ in series], 36, swatch="line")
    parts += _y_grid(top, plot_h, plot_w)
    parts += _axes(top, plot_w, plot_h, x_ticks, "seconds")
    if not any(values for _, values in series):
        parts.append(_note(LEFT + plot_w / 2, top + plot_h / 2, "no data"))
    for index, (name, values) in enumerate(series):
        data = sorted(values)
        if not data:
            continue
        points = [(x(data[0]), y(0.0))]
        for rank, value in enumerate(data, start=1):
            points += [(x(value), y((rank - 1) / len(data))), (x(value), y(rank / len(data)))]
        points.append((x(x_ticks[-1]), y(1.0)))
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        median = data[(len(data) - 1) // 2]
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{_colour(index)}" stroke-width="2">'
            f"<title>{escape(name)}: {len(data)} samples, median {median:.3f} s</title>"
            "</polyline>"
        )
    return "".join(parts) + "</svg>"


def bar_plot(
    plot_id: str,
    title: str,
    groups: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[float]],
    intervals: Sequence[Sequence[Interval | None]],
) -> str:
    """Grouped bars of proportions (0 to 1), one per series within each group, with intervals.

    `values[g][s]` and `intervals[g][s]` belong to group `g` and series `s`.
    """
    bar, gap = 16, 24
    group_w = max(bar * len(series) + gap, 400 / max(len(groups), 1))
    plot_w = group_w * max(len(groups), 1)
    top = 36 + LINE * len(series)
    longest = max((len(_cut(g)) for g in groups), default=0)
    bottom = BOTTOM + int(longest * 6 * math.sin(math.radians(35)))
    plot_h = 220
    width, height = LEFT + plot_w + RIGHT, top + plot_h + bottom

    def y(share: float) -> float:
        return top + plot_h * (1 - share)

    parts = [_open(plot_id, title, width, height), _heading(title)]
    parts += _legend(series, 36, swatch="rect")
    parts += _y_grid(top, plot_h, plot_w)
    parts.append(_frame(top, plot_w, plot_h))
    if not groups:
        parts.append(_note(LEFT + plot_w / 2, top + plot_h / 2, "no data"))
    for g, group in enumerate(groups):
        start = LEFT + g * group_w + (group_w - bar * len(series)) / 2
        for s, name in enumerate(series):
            value, ci = values[g][s], intervals[g][s]
            left = start + s * bar
            tip = f"{group} · {name}: {value:.1%}"
            tip += f", 95% CI [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else ""
            parts.append(
                f'<rect x="{left:.1f}" y="{y(value):.1f}" width="{bar - 2}" '
                f'height="{y(0) - y(value):.1f}" fill="{_colour(s)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if ci:
                parts.append(_error_bar(left + (bar - 2) / 2, y(ci[0]), y(ci[1])))
        centre, base = start + bar * len(series) / 2, top + plot_h + 14
        parts.append(
            f'<text x="{centre:.1f}" y="{base}" text-anchor="end" {FONT} '
            f'transform="rotate(-35 {centre:.1f} {base})">{escape(_cut(group))}'
            f"<title>{escape(group)}</title></text>"
        )
    return "".join(parts) + "</svg>"


def share_plot(
    plot_id: str,
    title: str,
    rows: Sequence[str],
    segments: Sequence[str],
    counts: Sequence[Sequence[int]],
) -> str:
    """One horizontal bar per row, split into the shares of `segments` (`counts[row][segment]`)."""
    width, bar = 640, 20
    plot_w = width - 2 * RIGHT
    top = 36 + LINE
    height = top + max(len(rows), 1) * (LINE + bar + 8) + 8
    parts = [_open(plot_id, title, width, height), _heading(title, RIGHT)]
    parts += _legend_row(segments, top - 6)
    if not rows:
        parts.append(_note(width / 2, top + 20, "no data"))
    for r, (label, row) in enumerate(zip(rows, counts, strict=True)):
        y = top + r * (LINE + bar + 8) + LINE
        parts.append(f'<text x="{RIGHT}" y="{y - 5}" {FONT}>{escape(label)}</text>')
        total, left = sum(row), float(RIGHT)
        for s, (name, count) in enumerate(zip(segments, row, strict=True)):
            share = count / total if total else 0.0
            span = plot_w * share
            tip = f"{label} · {name}: {count} of {total} ({share:.1%})"
            colour = SHARE_COLOURS[s % len(SHARE_COLOURS)]
            parts.append(
                f'<rect x="{left:.1f}" y="{y}" width="{span:.1f}" height="{bar}" '
                f'fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
            if span > 70:
                parts.append(
                    f'<text x="{left + 6:.1f}" y="{y + 14}" fill="white" {FONT}>'
                    f"{share:.1%} ({count})</text>"
                )
            left += span
    return "".join(parts) + "</svg>"


def ticks(high: float, count: int = 5) -> list[float]:
    """Ticks from 0 past `high` in steps of 1, 2 or 5 times a power of ten, about `count` steps."""
    if high <= 0:
        high = 1.0
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _open(plot_id: str, title: str, width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(plot_id)}" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
        f"<title>{escape(title)}</title>"
    )


def _heading(title: str, x: float = LEFT) -> str:
    return f'<text x="{x}" y="20" {FONT} font-weight="bold">{escape(title)}</text>'


def _frame(top: float, plot_w: float, plot_h: float) -> str:
    return (
        f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>'
    )


def _axes(top: float, plot_w: float, plot_h: float, x_ticks: list[float], label: str) -> list[str]:
    parts = [_frame(top, plot_w, plot_h)]
    base = top + plot_h
    for value in x_ticks:
        x = LEFT + plot_w * value / x_ticks[-1]
        parts.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#444"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" {FONT}>{value:g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{base + 34}" text-anchor="middle" {FONT}>'
        f"{escape(label)}</text>"
    )
    return parts


def _y_grid(top: float, plot_h: float, plot_w: float) -> list[str]:
    """Horizontal lines at 0 %, 20 %, ... 100 % of the plot's height, labelled."""
    parts = []
    for step in range(6):
        value = step / 5
        y = top + plot_h * (1 - value)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{value:.0%}</text>'
        )
    return parts


def _legend(names: Sequence[str], y: float, swatch: str) -> list[str]:
    """One line per name from `y` down, with a coloured `line` or `rect` swatch."""
    parts = []
    for index, name in enumerate(names):
        colour, row = _colour(index), y + index * LINE
        if swatch == "rect":
            parts.append(f'<rect x="{LEFT}" y="{row - 9}" width="10" height="10" fill="{colour}"/>')
        else:
            parts.append(
                f'<line x1="{LEFT}" y1="{row - 4}" x2="{LEFT + 14}" y2="{row - 4}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        parts.append(f'<text x="{LEFT + 18}" y="{row}" {FONT}>{escape(name)}</text>')
    return parts


def _legend_row(names: Sequence[str], y: float) -> list[str]:
    parts, x = [], float(RIGHT)
    for index, name in enumerate(names):
        colour = SHARE_COLOURS[index % len(SHARE_COLOURS)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y}" {FONT}>{escape(name)}</text>')
        x += 14 + 7 * len(name) + 16
    return parts


def _error_bar(x: float, low: float, high: float) -> str:
    return (
        f'<path d="M{x - 3:.1f},{low:.1f}H{x + 3:.1f}M{x:.1f},{low:.1f}V{high:.1f}'
        f'M{x - 3:.1f},{high:.1f}H{x + 3:.1f}" stroke="#222" fill="none"/>'
    )


def _note(x: float, y: float, text: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" {FONT}>{escape(text)}</text>'


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
