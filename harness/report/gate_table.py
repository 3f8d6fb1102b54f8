"""The gate's verdict as Markdown: the checks in a table, the notes, PASS or FAIL."""

from __future__ import annotations

from harness.analysis.gate import GateResult
from harness.report.markdown import seconds, table


def render_gate(result: GateResult) -> str:
    """The checks as a Markdown table, the notes, and the verdict."""
    rows = [
        [
            check.metric,
            _show(check.baseline, check.unit),
            _show(check.run, check.unit),
            f"{'≥' if check.at_least else '≤'} {_show(check.limit, check.unit)} ({check.rule})",
            "pass" if check.passed else "FAIL",
        ]
        for check in result.checks
    ]
    lines = [f"# Gate: {result.subject}", ""]
    if result.scoring:
        lines += [f"**{result.scoring}**", ""]
    lines += table(["metric", "baseline", "run", "bound", "result"], rows)
    if result.notes:
        lines += ["", "Notes:", *(f"- {note}" for note in result.notes)]
    verdict = "**PASS**: every bound holds."
    if not result.passed:
        verdict = f"**FAIL**: {', '.join(result.breached)} out of bounds."
    lines += ["", verdict]
    return "\n".join(lines) + "\n"


def _show(value: float, unit: str) -> str:
    return f"{value:.2%}" if unit == "%" else f"{seconds(value)} s"
