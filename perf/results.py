"""Measurements as sections of rows, written to `results.json` and `results.md`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Column:
    """A table column: its header, the row key it shows and how numbers are written."""

    header: str
    key: str
    fmt: str = "{}"


@dataclass
class Section:
    """One measurement: a table of rows; a row with a target says whether it is `met`."""

    key: str
    title: str
    note: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return all(row.get("met") is not False for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "note": self.note, "rows": self.rows}


def write(out: Path, header: dict[str, Any], sections: list[Section]) -> str:
    """Write `results.json` and `results.md` under `out`; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    results = {**header, "met": all(s.met for s in sections)}
    results["sections"] = {s.key: s.to_dict() for s in sections}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(header, sections)
    (out / "results.md").write_text(text)
    return text


def markdown(header: dict[str, Any], sections: list[Section]) -> str:
    machine = header["machine"]
    lines = [
        "# Performance results",
        "",
        f"Measured {header['measured_at']} ({header['mode']} run) on {machine['cpus']} CPUs"
        f" ({machine['cpu']}), Python {machine['python']}, PyAV {machine['av']},"
        f" decord {machine['decord']}.",
    ]
    missed = [row["name"] for s in sections for row in s.rows if row.get("met") is False]
    lines += ["", f"**Missed targets**: {'; '.join(missed)}." if missed else "All targets met."]
    for section in sections:
        lines += ["", f"## {section.title}", "", section.note, "", *table(section)]
    return "\n".join(lines) + "\n"


def table(section: Section) -> list[str]:
    """The section's rows as the lines of a Markdown table."""
    lines = ["| " + " | ".join(c.header for c in section.columns) + " |"]
    lines.append("|" + "---|" * len(section.columns))
    for row in section.rows:
        lines.append("| " + " | ".join(_cell(row, c) for c in section.columns) + " |")
    return lines


def _cell(row: dict[str, Any], column: Column) -> str:
    value = row.get(column.key)
    if column.key == "met":
        return {True: "yes", False: "**no**"}.get(value, "—")
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return column.fmt.format(value)
