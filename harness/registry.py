"""Name -> class registries for backends and benchmarks.

A registered class is a dataclass: its init fields are its options, with their
types, defaults and `metadata={"help": ...}`. The CLI, `vqa-harness list` and
nox sessions name an entry and pass options as strings (`key=value`), which are
converted to the field's type here, so no caller imports an implementation. An
entry with a `shorthand` class attribute (an option's name) can also be named
`NAME:VALUE`, which sets that option (`manifest:questions.csv`).

Entries are lazy, as in lm-evaluation-harness and lmms-eval: a name is registered
with the module that holds its class (`"package.module:Class"`), which is
imported only when the entry is first created or described, so listing names
imports no plugin, and reading a run directory at most the run's backend's module
(see `harness.plugins`). Third-party packages add entries the
same way through the entry-point group given to the registry (e.g.
`vqa_harness.backends`); `register` adds a class already imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class RegistryError(HarnessError):
    """An unknown name, an unknown option or a value of the wrong type."""


@dataclass(frozen=True)
class OptionSpec:
    name: str
    annotation: Any
    default: Any
    help: str

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def type_name(self) -> str:
        return _type_name(self.annotation)


class Registry(Generic[T]):
    """Registered classes of one kind (`backend` or `benchmark`), by name, imported on use."""

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        lazy: Mapping[str, str] | None = None,
    ) -> None:
        """`lazy` maps names to `"module:Class"`, imported when the name is first used."""
        self.kind = kind
        self._entry_point_group = entry_point_group
        self._entry_points_loaded = entry_point_group is None
        self._targets: dict[str, str] = {}
        self._classes: dict[str, type[T]] = {}
        for name, target in (lazy or {}).items():
            self.add(name, target)

    def add(self, name: str, target: str) -> None:
        """Register `name` as the class at `target` (`"module:Class"`), not imported yet."""
        module, sep, attribute = target.partition(":")
        if not (module and sep and attribute):
            raise RegistryError(f"{self.kind} {name!r}: {target!r} is not of the form module:Class")
        existing = self._targets.get(name)
        if existing is not None and existing != target:
            raise RegistryError(f"{self.kind} {name!r} is already registered by {existing}")
        self._targets[name] = target

    def register(self, cls: type[T]) -> type[T]:
        """Register a class already imported; its `name` attribute is its registry name."""
        name = _check_entry(cls, self.kind)
        existing = self._classes.get(name)
        if existing is None and name in self._targets:
            existing = self.get(name)
        if existing is not None and existing is not cls:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered by {existing.__qualname__}"
            )
        self._targets[name] = f"{cls.__module__}:{cls.__qualname__}"
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name; imports nothing."""
        self._load_entry_points()
        return sorted(self._targets)

    def find(self, name: str) -> type[T] | None:
        """The class registered as `name` (imported, as `get`), or None when none is."""
        self._load_entry_points()
        return self.get(name) if name in self._targets else None

    def get(self, name: str) -> type[T]:
        """The class registered as `name`, importing its module on first use."""
        self._load_entry_points()
        if name in self._classes:
            return self._classes[name]
        target = self._targets.get(name)
        if target is None:
            known = ", ".join(sorted(self._targets)) or "none registered yet"
            raise RegistryError(f"unknown {self.kind} {name!r} (available: {known})")
        module, _, attribute = target.partition(":")
        cls: Any = importlib.import_module(module)
        for part in attribute.split("."):
            cls = getattr(cls, part)
        if _check_entry(cls, self.kind) != name:
            raise RegistryError(f"{target} is named {cls.name!r}, but registered as {name!r}")
        self._classes[name] = cls
        return cls

    def options(self, name: str) -> list[OptionSpec]:
        return option_specs(self.get(name))

    def shorthand(self, name: str) -> str | None:
        """The option that `NAME:VALUE` sets for entry `name` (its `shorthand`), if any."""
        return getattr(self.get(name), "shorthand", None)

    def parse_reference(self, text: str) -> tuple[str, dict[str, str]]:
        """`NAME`, or `NAME:VALUE` for an entry with a shorthand: its name and that option.

        A registered name is taken as it is, colon or not.
        """
        if ":" not in text or text in self.names():
            return text, {}
        name, _, value = text.partition(":")
        option = self.shorthand(name)
        if option is None:
            raise RegistryError(f"{self.kind} {name!r} takes no {name}:VALUE shorthand")
        return name, {option: value}

    def check(self, name: str, **options: Any) -> None:
        """Check what `create` would be given, without building the entry: its options'
        names and types, and whatever more the class checks cheaply (`check_options`, a
        classmethod taking the converted options, `harness.protocols.ChecksOptions`: a
        backend whose building loads a model checks its device, but loads nothing)."""
        cls = self.get(name)
        kwargs = self._arguments(name, cls, options)
        check = getattr(cls, "check_options", None)
        if check is None:
            return
        try:
            check(kwargs)
        except (TypeError, ValueError, HarnessError) as exc:
            raise RegistryError(f"{self.kind} {name!r}: {exc}") from exc

    def create(self, name: str, **options: Any) -> T:
        """Build an entry; string values are converted to each option's type."""
        cls = self.get(name)
        kwargs = self._arguments(name, cls, options)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError, HarnessError) as exc:  # its options' own checks
            raise RegistryError(f"{self.kind} {name!r}: {exc}") from exc

    def _arguments(self, name: str, cls: type[T], options: Mapping[str, Any]) -> dict[str, Any]:
        """`options` converted to the types of `cls`'s options; unknown or missing ones,
        and values of the wrong type, are a `RegistryError`."""
        specs = {spec.name: spec for spec in option_specs(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            spec = specs.get(key)
            if spec is None:
                known = ", ".join(specs) or "it takes none"
                raise RegistryError(
                    f"{self.kind} {name!r} has no option {key!r} (options: {known})"
                )
            kwargs[key] = _convert(value, spec.annotation, f"{self.kind} {name!r} option {key!r}")
        missing = [s.name for s in specs.values() if s.required and s.name not in kwargs]
        if missing:
            raise RegistryError(f"{self.kind} {name!r} needs option(s): {', '.join(missing)}")
        return kwargs

    def _load_entry_points(self) -> None:
        group = self._entry_point_group
        if self._entry_points_loaded or group is None:
            return
        self._entry_points_loaded = True
        for entry in entry_points(group=group):
            self.add(entry.name, entry.value)


def _check_entry(cls: Any, kind: str) -> str:
    """The registry name of `cls`, which must be a dataclass with a `name`."""
    label = getattr(cls, "__qualname__", repr(cls))
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{label} must be a dataclass to be a registered {kind}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{label} needs a non-empty `name` class attribute")
    return name


def option_specs(cls: type) -> list[OptionSpec]:
    """The init fields of a registered dataclass, as options."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        specs.append(OptionSpec(f.name, hints[f.name], default, f.metadata.get("help", "")))
    return specs


def parse_assignments(pairs: Iterable[str], what: str) -> dict[str, str]:
    """Split CLI `key=value` strings into a dict, naming `what` in errors."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RegistryError(f"{what} {pair!r} is not of the form key=value")
        options[key.strip()] = value
    return options


def _convert(value: Any, annotation: Any, what: str) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if type(None) in members and value.strip().lower() in {"none", "null", ""}:
            return None
        errors = []
        for member in members:
            if member is type(None):
                continue
            try:
                return _convert(value, member, what)
            except RegistryError as exc:
                errors.append(str(exc))
        raise RegistryError(
            errors[0]
            if len(errors) == 1
            else f"{what}: {value!r} fits none of {_type_name(annotation)}"
        )
    if origin is Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if str(choice) == value:
                return choice
        raise RegistryError(f"{what}: {value!r} is not one of {', '.join(map(str, choices))}")
    converter = _CONVERTERS.get(annotation)
    if converter is None:
        raise RegistryError(
            f"{what}: options of type {_type_name(annotation)} cannot be set from text"
        )
    try:
        return converter(value)
    except ValueError:
        raise RegistryError(f"{what}: {value!r} is not a valid {_type_name(annotation)}") from None


def _to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


_CONVERTERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: _to_bool,
    Path: Path,
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "{" + ",".join(map(str, typing.get_args(annotation))) + "}"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def options_of(instance: Any) -> dict[str, Any]:
    """A registered dataclass's option values, JSON-ready."""
    return {
        f.name: _jsonable(getattr(instance, f.name))
        for f in dataclasses.fields(instance)
        if f.init and not f.name.startswith("_")
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
