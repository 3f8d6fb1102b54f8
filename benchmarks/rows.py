"""Reading rows of questions (a question file's, a Hub dataset's): a field that cannot be
read makes an invalid sample, not an error, and every reason has one format:
`<where>, field '<name>': <problem>`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.types import Sample


class BadField(Exception):
    """A row's field that cannot be read (`name` None: the row itself), and what is wrong."""

    def __init__(self, name: str | None, problem: str) -> None:
        super().__init__(problem)
        self.name = name
        self.problem = problem

    def at(self, where: str) -> str:
        """The reason, naming the row (`where`) and the field."""
        field = f", field {self.name!r}" if self.name else ""
        return f"{where}{field}: {self.problem}"


def text_field(row: Mapping[str, Any], name: str) -> str:
    """The row's field `name`, which must be a non-empty text (see `text_value`)."""
    return text_value(name, row.get(name))


def text_value(name: str, value: Any) -> str:
    """`value` of field `name` as a non-empty text, stripped; a number is read as its digits."""
    text = optional_text(name, value)
    if text is None:
        raise BadField(name, "missing" if value is None else "empty")
    return text


def optional_text(name: str, value: Any) -> str | None:
    """`value` of field `name` as a stripped text (a number as its digits); None if blank."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if value is not None and not isinstance(value, str):
        raise BadField(name, f"expected text, got {json_type(value)}")
    return (value or "").strip() or None


def json_type(value: Any) -> str:
    """How a value's type reads in a message: "a list", "null", "int"."""
    names = {dict: "an object", list: "a list", bool: "true/false", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def invalid_sample(sample_id: str, video: str, where: str, bad: BadField) -> Sample:
    """The sample a row that cannot be read becomes: the runner records it as failed."""
    return Sample(sample_id, video, "", "", meta={"invalid": bad.at(where)})
