"""`manifest.json` as a typed record: what a run is, where it ran, and its sessions.

Like `Record`, every type here turns into plain JSON with `to_dict()` and back
with `from_dict()`; fields that are None are left out of the JSON. `schema`
versions the format: 1 is the first to carry it, and a manifest without one (a
run directory from before) reads as schema 0, the same fields, fewer of them
filled in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.run.spec import RunSpec
from harness.types import UNVERSIONED, check_types, schema_of

MANIFEST_SCHEMA = 2
"""Version of the `manifest.json` format written by this package; 2 added a session's
`reason`."""
READABLE_MANIFEST_SCHEMAS = (UNVERSIONED, 1, 2)


@dataclass(frozen=True)
class BackendInfo:
    """The backend by name, and what it said about itself (`describe()`)."""

    name: str
    describe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkInfo:
    """The benchmark by name and version: a version changes with samples, prompts or scoring."""

    name: str
    version: str


@dataclass(frozen=True)
class ColdStart:
    """A session's first answer, by sample id and start time (see `harness.analysis.summary`)."""

    sample_id: str
    started_at: float


@dataclass(frozen=True, kw_only=True)
class Session:
    """One start or resume of a run: its settings, how it ended, what it wrote.

    `reason` says why a `stopped` session stopped, or a `failed` one failed (the
    error); `run_dir` names the shard a merged run's session came from.
    """

    started_at: float
    settings: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    finished_at: float | None = None
    written: int | None = None
    cold_start: ColdStart | None = None
    reason: str | None = None
    run_dir: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        cold = data.get("cold_start")
        return cls(**{**data, "cold_start": ColdStart(**cold) if cold else None})


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A run directory's `manifest.json`.

    `status` is the run's (`created`, `running`, `completed`, `partial`,
    `interrupted`, `stopped` by a systemic failure, `failed`); `mode` its HTTP
    mode (`live`, `record`, `replay`) and `http` the recording's details; `spec`
    carries the resolved options; `merged_from` lists the shard directories of a
    merged run; `data` the commit of each dataset repo the benchmark read
    (`DescribesData`; None where it could not tell); `preset` the settings, source
    and unstated settings of the preset the spec names (`Preset.to_dict`).
    """

    run_id: str
    mode: str
    spec: RunSpec
    backend: BackendInfo
    benchmark: BenchmarkInfo
    status: str = "created"
    created_at: float | None = None
    finished_at: float | None = None
    http: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    samples_planned: int | None = None
    environment: dict[str, Any] | None = None
    command: list[str] = field(default_factory=list)
    merged_from: list[dict[str, Any]] | None = None
    data: dict[str, str | None] | None = None
    preset: dict[str, Any] | None = None
    sessions: tuple[Session, ...] = ()
    schema: int = MANIFEST_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.spec.preset is None:  # as specs from before presets read
            del data["spec"]["preset"]
        data["sessions"] = [_without_none(session) for session in data["sessions"]]
        return _without_none(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Read a manifest; a missing or malformed field is a `ValueError` naming it."""
        schema = schema_of(data, "manifest", READABLE_MANIFEST_SCHEMAS, missing=UNVERSIONED)
        try:
            spec = RunSpec.from_dict(data["spec"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"no usable run spec ({exc})") from None
        try:
            check_types(cls, data)
            return cls(
                **{
                    **data,
                    "schema": schema,
                    "spec": spec,
                    "backend": BackendInfo(**data["backend"]),
                    "benchmark": BenchmarkInfo(**data["benchmark"]),
                    "sessions": tuple(Session.from_dict(s) for s in data.get("sessions", ())),
                }
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a run manifest ({exc})") from None


def data_change(
    recorded: dict[str, str | None] | None, now: dict[str, str | None] | None
) -> tuple[str, str, str] | None:
    """The first dataset repo whose commit is known in both and differs, as (repo, recorded
    commit, commit now); None when there is none."""
    for repo, commit in (recorded or {}).items():
        other = (now or {}).get(repo)
        if commit and other and commit != other:
            return repo, commit, other
    return None


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}
