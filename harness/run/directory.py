"""The one reader of a run directory: `Run.open(path)`.

Resume, merge, summary, compare, gate and bench read runs through it: the
typed manifest at once, the records (torn or foreign lines skipped with a
note, `read_records`) when first asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from harness.files import not_a_file
from harness.run.manifest import Manifest
from harness.run.store import MANIFEST, RECORDS, RecordLog, RunDirError, read_records
from harness.types import Record


@dataclass(frozen=True)
class Run:
    """A run directory, read: its manifest, and on first use its records."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: Path) -> Run:
        """Read the run directory at `path`; anything but a readable run is a `RunDirError`."""
        manifest_path = path / MANIFEST
        if path.exists() and not path.is_dir():
            kind = "a file" if path.is_file() else not_a_file(path)
            raise RunDirError(f"{path} is not a run directory: it is {kind}")
        if manifest_path.exists() and not manifest_path.is_file():
            kind = not_a_file(manifest_path)
            raise RunDirError(f"{path} is not a run directory: its {MANIFEST} is {kind}")
        if not manifest_path.is_file():
            raise RunDirError(f"{path} is not a run directory (no {MANIFEST})")
        try:
            data = json.loads(manifest_path.read_text())
        except RecursionError:
            raise RunDirError(f"cannot read {manifest_path}: JSON nested too deeply") from None
        except (OSError, ValueError) as exc:
            raise RunDirError(f"cannot read {manifest_path}: {exc}") from None
        try:
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return cls(path, Manifest.from_dict(data))
        except (ValueError, RecursionError) as exc:
            raise RunDirError(f"{manifest_path}: {exc}") from None

    @property
    def name(self) -> str:
        return self.manifest.run_id

    @cached_property
    def log(self) -> RecordLog:
        """`records.jsonl` as read: every record, its line, and the lines skipped."""
        return read_records(self.path / RECORDS)

    @cached_property
    def outcomes(self) -> dict[str, Record]:
        """Each sample's outcome: its OK record if it has one, else its last record."""
        return self.log.latest_by_sample()
