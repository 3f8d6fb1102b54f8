"""`summary.json` as a typed record, written by `report` and read back by `gate`.

Like `Record`, `Summary` turns into plain JSON with `to_dict()` and back with
`from_dict()`. Its parts (accuracy with its interval, the breakdowns, latency
statistics...) stay plain JSON, as `harness.analysis.summary` documents them.
`schema` versions the format: 1 is the first to carry it; a summary without one
(written before) reads as schema 0, which has the same fields or fewer.
`provenance` (what produced the run: `harness.analysis.provenance`) comes first;
summaries written before it have none.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from harness.types import UNVERSIONED, schema_of

SUMMARY_SCHEMA = 3
"""Version of the `summary.json` format written by this package: 2 added `official`
and `preset`, 3 `backend_facts`, which summaries of older schemas lack."""
READABLE_SUMMARY_SCHEMAS = (UNVERSIONED, 1, 2, 3)
# Parts left out of the JSON when empty: breakdowns and metrics no record has.
_OPTIONAL = (
    "provenance",
    "judged_by",
    "preset",
    "published",
    "metrics",
    "judge",
    "official",
    "backend_facts",
    "tasks",
    "durations",
)


@dataclass(frozen=True, kw_only=True)
class Summary:
    """A run in numbers: see `harness.analysis.summary.summarize` for each part."""

    run_id: str
    provenance: dict[str, Any] | None = None
    judged_by: str | None = None
    """The run's LLM judge (`judge_label`), when one graded its open-ended answers."""
    preset: str | None = None
    """The protocol preset the run was asked under (`harness.run.presets`), if any."""
    status: str | None = None
    mode: str
    backend: str
    benchmark: str
    benchmark_version: str
    samples: dict[str, int]
    accuracy: dict[str, Any]
    published: dict[str, Any] | None = None
    """The published number for the run's model and benchmark (`harness.analysis.published`)."""
    ci_method: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    official: dict[str, Any] | None = None
    """The benchmark's official scoring beside its own, where it has one."""
    backend_facts: dict[str, Any] | None = None
    """What the run's backend reads in its records (`harness.protocols.HasRunFacts`):
    `title`, `facts`, `warnings`; where it has any."""
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    durations: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure_rate: float | None = None
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    invalid_samples: list[dict[str, str]] = field(default_factory=list)
    unparsed_reasons: dict[str, int] = field(default_factory=dict)
    latency: dict[str, dict[str, float]]
    warmup_excluded: int = 0
    cold_start: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    throughput: dict[str, float | None] = field(default_factory=dict)
    skipped_lines: list[str] = field(default_factory=list)
    schema: int = SUMMARY_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: value for key, value in data.items() if key not in _OPTIONAL or value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Read a summary; a missing part or one it does not know is a `ValueError`."""
        schema = schema_of(data, "summary", READABLE_SUMMARY_SCHEMAS, missing=UNVERSIONED)
        known = fields(cls)
        missing = [
            f.name
            for f in known
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data
        ]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        unknown = sorted(data.keys() - {f.name for f in known})
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}")
        return cls(**{**data, "schema": schema})
