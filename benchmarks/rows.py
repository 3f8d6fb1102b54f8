"""Reading annotation rows: a field that cannot be read makes an invalid sample, not an error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.types import Sample


class BadField(Exception):
    """A row's field that cannot be read: its name, and what is wrong with it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def text_field(row: Mapping[str, Any], name: str) -> str:
    """The row's field `name`, which must be a non-empty text."""
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadField(name, "missing" if value is None else f"{value!r} is not a non-empty text")
    return value


def invalid_sample(sample_id: str, video: str, row_id: str, bad: BadField) -> Sample:
    """The sample a row that cannot be read becomes: the runner records it as failed."""
    reason = f"{row_id}, field '{bad.name}': {bad.problem}"
    return Sample(sample_id, video, "", "", meta={"invalid": reason})
