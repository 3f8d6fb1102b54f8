"""Load MiniCPM-V 2.6's published remote code on the torch and transformers a fresh install gets.

The code on the Hub (`openbmb/MiniCPM-V-2_6`) has two import-time faults that
stop `from_pretrained` before any weight is read; this module works around
each one without touching the user's Hugging Face cache, and says what it did:

- `modeling_minicpmv.py` starts with `import torchvision` and never uses it, and
  transformers refuses remote code whose imports fail. Where torchvision cannot
  be imported (not installed, or a CUDA build beside a CPU-only torch), an empty
  module stands in for it while the code loads.
- `resampler.py` annotates `-> List[Tensor]` without importing `List`, which
  used to arrive through `from torch.nn.functional import *`; on torch 2.7 and
  later the import fails with `NameError`. A missing name that `typing`
  defines is supplied while the code is imported, and the import is retried.

Any other error the remote code raises while it loads is a `ModelLoadError`
of one line.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import inspect
import logging
import sys
import traceback
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch
import transformers

from harness.errors import HarnessError

T = TypeVar("T")

UNUSED_IMPORTS = ("torchvision",)
"""Packages the published code imports and never calls."""
_UNUSED = "the remote code imports it and never calls it"
IMPORT_CHECKS = "transformers.dynamic_module_utils"
"""Its logger warns of each failed import before raising: the error says it once."""

_SUPPLIED: dict[Path, list[str]] = {}
"""Names supplied to each remote-code folder: a later load finds the code imported
already (transformers keeps it in `sys.modules`) and needs them no more, but its
model still runs code that was fixed."""


class ModelLoadError(HarnessError):
    """The model cannot be loaded: bad path, missing weights, wrong code, no memory."""


def load_remote_code(load: Callable[[], T], model: str) -> tuple[T, list[str]]:
    """Call `load()`, which imports `model`'s remote code, with the fixes that code needs.

    Returns what `load()` returned and one line for each workaround it needed.
    """
    supplied: list[str] = []
    while True:
        with (
            _stand_ins_for_unused_imports() as stood_in,
            _names_supplied(supplied),
            _quiet(IMPORT_CHECKS),
        ):
            try:
                result = load()
            except NameError as exc:
                if exc.name is None or exc.name in supplied or not hasattr(typing, exc.name):
                    raise ModelLoadError(_raised(model, exc)) from None
                supplied.append(exc.name)
                continue
            except ImportError as exc:
                raise ModelLoadError(f"{model}: {_import_problem(exc)}") from None
            except torch.OutOfMemoryError:
                raise  # the caller says what did not fit where
            except Exception as exc:
                if not _from_remote_code(exc):
                    raise
                raise ModelLoadError(_raised(model, exc)) from None
        code = Path(inspect.getfile(type(result))).parent
        names = _SUPPLIED.setdefault(code, [])
        names += [name for name in supplied if name not in names]
        fixes = [f"{name}: an empty module stood in ({why}); {_UNUSED}" for name, why in stood_in]
        return result, fixes + [_described(name) for name in names]


@contextmanager
def _stand_ins_for_unused_imports() -> Iterator[list[tuple[str, str]]]:
    """An empty module for each unused import that cannot be imported: (name, why)."""
    stood_in: list[tuple[str, str]] = []
    for name in UNUSED_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken install raises OSError or RuntimeError too
            stood_in.append((name, f"{type(exc).__name__}: {first_line(exc)}"))
            module = types.ModuleType(name, "empty stand-in: the remote code never calls it")
            module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
            sys.modules[name] = module
    try:
        yield stood_in
    finally:
        for name, _ in stood_in:
            sys.modules.pop(name, None)


@contextmanager
def _names_supplied(names: list[str]) -> Iterator[None]:
    """`typing`'s objects for `names`, visible to code imported meanwhile (as builtins)."""
    added = [name for name in names if not hasattr(builtins, name)]
    for name in added:
        setattr(builtins, name, getattr(typing, name))
    try:
        yield
    finally:
        for name in added:
            delattr(builtins, name)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from `logger` meanwhile."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _from_remote_code(exc: BaseException) -> bool:
    """Whether `exc` was raised in code transformers imported from a model's repository."""
    return any(
        "transformers_modules" in frame.f_code.co_filename
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _raised(model: str, exc: BaseException) -> str:
    return (
        f"{model}: its remote code raised {type(exc).__name__}: {first_line(exc)} "
        f"(torch {torch.__version__}, transformers {transformers.__version__}): "
        "it does not run as published with these versions"
    )


def _import_problem(exc: ImportError) -> str:
    """What to install, for transformers' check of the remote code's imports."""
    text = first_line(exc)
    marker = "not found in your environment: "
    if marker in text:
        packages = text.split(marker, 1)[1].split(".", 1)[0]
        return f"its remote code needs {packages}, not installed here: pip install {packages}"
    return f"its remote code failed to import ({text})"


def _described(name: str) -> str:
    return (
        f"typing.{name}: supplied while the remote code was imported (it uses {name} without "
        f"importing it: NameError on torch {torch.__version__})"
    )


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only: errors here are one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
