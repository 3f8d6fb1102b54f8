"""Registries: options from dataclass fields, typed conversion from text, clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from harness.registry import Registry, RegistryError, parse_assignments


@dataclass
class Widget:
    name: ClassVar[str] = "widget"

    size: int = field(default=1, metadata={"help": "how big"})
    ratio: float = 0.5
    greedy: bool = True
    where: Path | None = None
    mode: Literal["url", "data-uri"] = "url"
    label: str = ""


@pytest.fixture
def registry() -> Registry:
    registry = Registry("widget")
    registry.register(Widget)
    return registry


def test_create_converts_text_to_each_options_type(registry):
    widget = registry.create(
        "widget",
        size="3",
        ratio="0.25",
        greedy="false",
        where="/tmp/x",
        mode="data-uri",
        label="a=b",
    )
    assert widget == Widget(
        size=3, ratio=0.25, greedy=False, where=Path("/tmp/x"), mode="data-uri", label="a=b"
    )
    assert registry.create("widget", where="none").where is None
    assert registry.create("widget", size=7).size == 7  # typed values pass through


def test_options_are_listed_with_types_defaults_and_help(registry):
    specs = {spec.name: spec for spec in registry.options("widget")}
    assert list(specs) == ["size", "ratio", "greedy", "where", "mode", "label"]
    assert (specs["size"].type_name(), specs["size"].default, specs["size"].help) == (
        "int",
        1,
        "how big",
    )
    assert specs["where"].type_name() == "Path | None"
    assert specs["mode"].type_name() == "{url,data-uri}"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, "widget 'widget' has no option 'colour' (options: size, ratio"),
        ({"size": "big"}, "widget 'widget' option 'size': 'big' is not a valid int"),
        ({"greedy": "maybe"}, "widget 'widget' option 'greedy': 'maybe' is not a valid bool"),
        ({"mode": "ftp"}, "widget 'widget' option 'mode': 'ftp' is not one of url, data-uri"),
    ],
)
def test_bad_options_name_the_entry_option_and_value(registry, options, message):
    with pytest.raises(RegistryError, match="^" + re.escape(message)):
        registry.create("widget", **options)


def test_unknown_name_lists_what_is_available(registry):
    with pytest.raises(RegistryError, match=r"unknown widget 'gadget' \(available: widget\)"):
        registry.get("gadget")
    with pytest.raises(RegistryError, match="none registered yet"):
        Registry("backend").get("fal")


def test_find_gives_the_class_or_none_for_a_name_not_registered(registry):
    assert registry.find("widget") is registry.get("widget")
    assert registry.find("gadget") is None


def test_registration_needs_a_named_dataclass(registry):
    class Plain:
        name = "plain"

    with pytest.raises(TypeError, match="must be a dataclass"):
        registry.register(Plain)

    @dataclass
    class Other:
        name: ClassVar[str] = "widget"

    with pytest.raises(RegistryError, match="already registered"):
        registry.register(Other)


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x=y"], "-B") == {"a": "1", "b": " x=y"}
    with pytest.raises(RegistryError, match="-B 'oops' is not of the form key=value"):
        parse_assignments(["oops"], "-B")
