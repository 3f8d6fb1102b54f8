"""What a run evaluates (`RunSpec`), as its manifest stores it, and how its run id is made."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from harness.errors import UsageError
from harness.run.shards import Shard


@dataclass(frozen=True)
class RunSpec:
    """What is evaluated: everything here can change the results."""

    backend: str
    benchmark: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    sample: int | None = None
    seed: int = 0
    limit: int | None = None
    shard: Shard | None = None
    judge: dict[str, Any] | None = None
    """An LLM judge for open-ended answers: `Judge` fields (`base_url`, `model`, ...)."""
    preset: str | None = None
    """The preset (`harness.run.presets`) whose settings the options above include."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """The spec as a manifest stores it; older manifests lack later fields."""
        shard = data.get("shard")
        return cls(
            **{
                **data,
                "categories": tuple(data.get("categories", ())),
                "shard": Shard(**shard) if shard else None,
            }
        )


def new_run_id(spec: RunSpec, name: str | None = None) -> str:
    """`name` (default: time, benchmark, backend, random suffix), ending in the shard if any."""
    if name:
        check_run_id(name)
    else:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{stamp}-{spec.benchmark}-{spec.backend}-{uuid.uuid4().hex[:6]}"
    return f"{name}-{spec.shard.label}" if spec.shard else name


def check_run_id(name: str) -> None:
    """Refuse a `--run-id` that is not a plain name: one with a path separator, `.`
    or `..`, or a control character would put the run outside `--out` or in odd places."""
    bad = (
        name in (".", "..")
        or "/" in name
        or os.sep in name
        or any(not character.isprintable() for character in name)
    )
    if bad:
        raise UsageError(
            f"--run-id {name!r} is not a name: give one without '/', control characters, "
            "'.' or '..'; the run directory goes under --out"
        )
