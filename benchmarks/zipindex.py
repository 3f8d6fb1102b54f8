"""Which of a Hub repo's zips holds a file, when the annotations do not say.

Some repos spread their videos over many multi-GB zips with no map from video
to zip. `ZipIndex` lists the repo's zips matching a pattern and reads their
central directories only (`HubDataset.zip_members`, kept on disk), once, to map
each member's file stem to its zip; then one member is read by range requests.
"""

from __future__ import annotations

import fnmatch
import threading
from pathlib import Path, PurePosixPath

from benchmarks.hub import HubDataset, HubError


class ZipIndex:
    """The members of `hub`'s zips matching `pattern` (fnmatch), by file stem."""

    def __init__(self, hub: HubDataset, pattern: str) -> None:
        self.hub = hub
        self.pattern = pattern
        self._members: dict[str, tuple[str, str]] | None = None
        self._lock = threading.Lock()

    def fetch(self, stem: str) -> Path:
        """The member whose file name without extension is `stem`, read and kept on disk."""
        found = self.members().get(stem)
        if found is None:
            raise HubError(f"{stem} is in none of {self.hub.repo_id}'s {self.pattern}")
        return self.hub.zip_member(*found)

    def members(self) -> dict[str, tuple[str, str]]:
        """stem -> (zip, member), built on first use; the first zip in name order wins."""
        with self._lock:
            if self._members is None:
                index: dict[str, tuple[str, str]] = {}
                for zip_name in self._zips():
                    for member in self.hub.zip_members(zip_name):
                        index.setdefault(PurePosixPath(member).stem, (zip_name, member))
                self._members = index
            return self._members

    def _zips(self) -> list[str]:
        zips = sorted(fnmatch.filter(self.hub.files(), self.pattern))
        if not zips:
            raise HubError(f"{self.hub.repo_id} has no {self.pattern}")
        return zips
