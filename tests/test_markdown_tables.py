"""Every table cell of report.md and of compare's Markdown is escaped: a category or an
error message holding pipes, line breaks or HTML stays one cell of one row, shown as
text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.markdown import cell

CATEGORY = "a|b\nc <script>alert(1)</script> \\|"
VIDEO = "missing\r\n<b>bold</b>|x.mp4"  # an invalid sample: its reason quotes the path


def cells(row: str) -> list[str]:
    """A Markdown table row's cells, as a GFM reader splits them (a backslash escapes)."""
    found, current, escaped = [], "", False
    for character in row.strip()[1:]:
        if escaped:
            current, escaped = current + character, False
        elif character == "\\":
            current, escaped = current + character, True
        elif character == "|":
            found.append(current)
            current = ""
        else:
            current += character
    return found


def assert_tables_hold(markdown: str) -> int:
    """Every table row has its header's cell count and is followed by a row or a blank
    line, and no raw HTML but our line breaks is left; returns how many rows were seen."""
    lines = markdown.splitlines()
    rows, width = 0, None
    for number, line in enumerate(lines):
        if line.startswith("|"):
            width = width or len(cells(line))
            assert len(cells(line)) == width, f"line {number + 1}: {line!r}"
            rows += 1
        else:
            assert width is None or line == "", f"line {number + 1} splits a row: {line!r}"
            width = None
    assert "<script>" not in markdown and "<b>" not in markdown
    return rows


@pytest.fixture
def hostile_run(tmp_path) -> Path:
    (tmp_path / "v.mp4").write_bytes(b"x")
    rows = [
        {"id": "a", "video": "v.mp4", "question": "?", "options": ["x", "y"], "answer": "A"},
        {"id": "b", "video": VIDEO, "question": "?", "options": ["x", "y"], "answer": "A"},
    ]
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(row | {"category": CATEGORY}) + "\n" for row in rows))
    args = ["run", "--backend", "scripted", "--benchmark", f"manifest:{questions}"]
    assert main([*args, "--out", str(tmp_path), "--run-id", "run", "--no-progress"]) == 0
    return tmp_path / "run"


def test_report_md_keeps_hostile_cells_in_their_rows(hostile_run):
    markdown = (hostile_run / "report.md").read_text()
    assert assert_tables_hold(markdown) >= 9  # categories, failures, invalid samples, latency
    assert cell(CATEGORY) in markdown and "&lt;script&gt;" in markdown


def test_compare_markdown_keeps_hostile_cells_in_their_rows(hostile_run, capsys):
    capsys.readouterr()
    assert main(["compare", str(hostile_run), str(hostile_run)]) == 0
    markdown = capsys.readouterr().out
    assert assert_tables_hold(markdown) >= 6
    assert cell(CATEGORY) in markdown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a|b", "a\\|b"),
        ("a\\|b", "a\\\\\\|b"),  # a backslash before a pipe cannot unescape it
        ("one\ntwo\r\nthree", "one<br>two<br>three"),
        ("<img src=x onerror=alert(1)> & co", "&lt;img src=x onerror=alert(1)&gt; &amp; co"),
        (0.5, "0.5"),
    ],
)
def test_a_cell_is_escaped(text, shown):
    assert cell(text) == shown
