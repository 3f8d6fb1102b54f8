"""What produced a run, in one line every output puts at its top.

A run is `live` (the backend answered as it ran), a `replay` of a recording
(made against the live service or against an emulator, on the day the cassette
says), an `emulated` recording (recorded as it ran, against an emulator), or a
`stand-in` (a model with random weights, whatever its HTTP mode). Only a live
run is a measurement: the numbers of the others check the pipeline, not the
backend. The backend's model (a hosted backend's app) and revision (the
resolved commit where known) come from its `describe()` in the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from harness.run.manifest import Manifest

Kind = Literal["live", "replay", "emulated", "stand-in"]
PIPELINE_CHECK = "a pipeline check, not a measurement"


@dataclass(frozen=True)
class Provenance:
    """What produced a run: its `kind`, one line of `text`, and the backend's model."""

    kind: Kind
    text: str
    model: str | None = None
    revision: str | None = None

    @property
    def measurement(self) -> bool:
        """Whether the run's numbers measure the backend (live), not only the pipeline."""
        return self.kind == "live"

    @property
    def line(self) -> str:
        """`text`, saying "a pipeline check, not a measurement" where the run is not one."""
        return self.text if self.measurement else f"{self.text} ({PIPELINE_CHECK})"

    def to_dict(self) -> dict[str, Any]:
        """The provenance for `summary.json`, with `measurement` spelled out."""
        return {**asdict(self), "measurement": self.measurement}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(**{key: value for key, value in data.items() if key != "measurement"})


def provenance(manifest: Manifest) -> Provenance:
    """The provenance of the run `manifest` describes."""
    describe = manifest.backend.describe
    model = _text(describe.get("app") or describe.get("model"))
    revision = _text(describe.get("commit") or describe.get("revision"))
    kind, what = _origin(manifest)
    backend = f"backend `{manifest.backend.name}`, model {model or 'not stated'}"
    backend += f" at revision {revision}" if revision else ""
    return Provenance(kind, f"{what} · {backend}", model, revision)


def _origin(manifest: Manifest) -> tuple[Kind, str]:
    if manifest.backend.describe.get("standin"):
        return "stand-in", "stand-in model with random weights"
    http = manifest.http or {}
    source = str(http.get("source") or "")
    against = "the live service" if source.startswith("live") else "an emulator"
    when = f"on {http['recorded_at']}" if http.get("recorded_at") else "on a day not recorded"
    if manifest.mode == "replay":
        return "replay", f"replay of a recording made against {against} {when} ({source})"
    if manifest.mode == "record" and against != "the live service":
        return "emulated", f"recorded against an emulator ({source})"
    return "live", "live"


def _text(value: Any) -> str | None:
    return str(value) if value else None
