"""Benchmark data from the Hugging Face Hub, fetching only what selected samples need.

Annotations load with `datasets`; a video stored as a file in a dataset repo is
downloaded with `hf_hub_download` into the standard HF cache; a video inside
one of a repo's multi-GB zips is read with HTTP range requests through fsspec's
zip filesystem over `hf://` (only the zip's central directory and that
member's bytes) and kept under the harness cache. A run records the commit its
revision is at (`HubBenchmark.data_revisions`) and will not resume or merge across
another; pin `revision` to a commit for runs that must be comparable over time.

Before anything is read, the repo is checked with one short request
(`harness.hub.check_repo`): a Hub that cannot be reached, a repo that does not
exist, a gated one without access or a missing revision is one line at once,
not a traceback after half a minute of retries. With `HF_HUB_OFFLINE` set nothing
is asked, and data not in the Hugging Face cache is one line saying so.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from harness.errors import HarnessError
from harness.files import write_bytes_atomic
from harness.hub import HubAccessError, check_repo, offline
from harness.media.cache import cache_root
from harness.types import Sample

BLOCK_SIZE_KB = 8192
"""KiB per range request inside zips, unless a benchmark's `block_size_kb` says otherwise."""
_COMMIT = re.compile(r"[0-9a-f]{40}")


class HubError(HarnessError):
    """A repo, file or zip member that cannot be fetched, named with why."""


@dataclass(frozen=True)
class HubDataset:
    """One dataset repo on the Hub at one revision."""

    repo_id: str
    revision: str | None = None
    block_size: int = BLOCK_SIZE_KB * 1024
    """Bytes per range request inside zips: a member's reads come in blocks this big."""
    _locks: dict[str, threading.Lock] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _checked: dict[str, str | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def url(self) -> str:
        """The repo as an fsspec `hf://` URL."""
        at = f"@{self.revision}" if self.revision else ""
        return f"hf://datasets/{self.repo_id}{at}"

    def check(self) -> str | None:
        """Ask the Hub once whether the repo can be read at this revision (see
        `harness.hub.check_repo`); the commit it is at, None offline. Raises
        `HubAccessError` (one line: what, why, the fix); remembered once it passes."""
        if "sha" not in self._checked:
            self._checked["sha"] = check_repo(
                self.repo_id,
                "dataset",
                self.revision,
                repo_flag="-S repo",
                revision_flag="-S revision",
            )
        return self._checked["sha"]

    def annotations(self, config: str | None = None, split: str = "test", **kwargs: Any):
        """One split of the repo's annotations, as a `datasets.Dataset`."""
        self.check()
        import datasets  # heavy (pyarrow, pandas): loaded only when annotations are
        from huggingface_hub.errors import HfHubHTTPError

        where = f"{self.repo_id} ({config or 'default'}/{split})"
        try:
            return datasets.load_dataset(
                self.repo_id, config, split=split, revision=self.revision, **kwargs
            )
        except (OSError, ValueError, HfHubHTTPError) as exc:
            if offline() and isinstance(exc, OSError):
                at = f" at revision {self.revision}" if self.revision else ""
                raise HubAccessError(
                    f"dataset {where}{at} is not in the Hugging Face cache, and HF_HUB_OFFLINE "
                    "is set: run once without HF_HUB_OFFLINE to download it"
                ) from None
            raise HubError(f"cannot load {where}: {_one_line(exc)}") from None

    def file(self, filename: str) -> Path:
        """A file of the repo, downloaded once into the HF cache."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            path = hf_hub_download(
                self.repo_id, filename, repo_type="dataset", revision=self.revision
            )
        except (OSError, HfHubHTTPError) as exc:
            raise HubError(f"cannot fetch {filename} from {self.repo_id}: {exc}") from None
        return Path(path)

    def files(self) -> list[str]:
        """The paths of every file in the repo at this revision."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return HfApi().list_repo_files(
                self.repo_id, repo_type="dataset", revision=self.revision
            )
        except (OSError, HfHubHTTPError) as exc:
            raise HubError(f"cannot list the files of {self.repo_id}: {exc}") from None

    def commit(self) -> str | None:
        """The commit this revision is at now: asked of the Hub (`check`, which raises
        when it cannot be asked), or with HF_HUB_OFFLINE set, what the HF cache last saw;
        None when that cannot tell."""
        from huggingface_hub import constants

        revision = self.revision or "main"
        if _COMMIT.fullmatch(revision):
            return revision
        if not offline():
            return self.check()
        folder = Path(constants.HF_HUB_CACHE) / f"datasets--{self.repo_id.replace('/', '--')}"
        try:
            return (folder / "refs" / revision).read_text().strip() or None
        except OSError:
            return None

    def zip_members(self, zip_name: str) -> list[str]:
        """The names in one of the repo's zips, read from its central directory only."""
        index = self._cache_dir() / f"{zip_name}.members.json"
        if index.is_file():
            return json.loads(index.read_text())
        try:
            filesystem = fsspec.filesystem(
                "zip", fo=f"{self.url}/{zip_name}", target_options=self._range_options()
            )
            members = sorted(filesystem.find("/"))
        except (OSError, ValueError) as exc:
            raise HubError(f"cannot list {zip_name} in {self.repo_id}: {exc}") from None
        _write_atomic(index, json.dumps(members).encode())
        return members

    def zip_member(self, zip_name: str, member: str) -> Path:
        """One member of one of the repo's zips, read by range requests and kept on disk."""
        target = self._cache_dir() / zip_name / member
        if target.is_file():
            return target
        with self._lock_for(str(target)):
            if target.is_file():
                return target
            url = f"zip://{member}::{self.url}/{zip_name}"
            try:
                with fsspec.open(url, "rb", hf=self._range_options()) as source:
                    data = source.read()
            except (OSError, KeyError, ValueError) as exc:
                raise HubError(
                    f"cannot read {member} from {zip_name} in {self.repo_id}: {exc}"
                ) from None
            _write_atomic(target, data)
        return target

    def _range_options(self) -> dict[str, Any]:
        return {"block_size": self.block_size}

    def _cache_dir(self) -> Path:
        return cache_root() / "hub" / self.repo_id / (self.revision or "main")

    def _lock_for(self, key: str) -> threading.Lock:
        return self._locks.setdefault(key, threading.Lock())


def repo_option(default: str) -> Any:
    """A Hub benchmark's `repo` option: the dataset repo's id, `default` unless told."""
    return field(
        default=default, metadata={"help": f"dataset repo on the Hub (default: {default})"}
    )


def revision_option(help: str, default: str | None = None) -> Any:
    """A Hub benchmark's `revision` option: the dataset repo's branch, tag or commit."""
    return field(default=default, metadata={"help": help})


def block_size_option(help: str) -> Any:
    """A Hub benchmark's `block_size_kb` option: KiB per range request inside its zips."""
    return field(default=BLOCK_SIZE_KB, metadata={"help": help})


class HubBenchmark:
    """What the benchmarks on a Hub dataset repo share, as a base of their dataclass: the
    `repo` option at the `revision` option, read in blocks of `block_size_kb` (an option
    where a benchmark declares it), as `_hub`; `fetch_video` for a video given as
    `<zip>:<member>`, reading only that member; and `data_revisions` (`DescribesData`)."""

    repo: str
    revision: str | None
    block_size_kb: int = BLOCK_SIZE_KB
    _hub: HubDataset

    def __post_init__(self) -> None:
        if self.block_size_kb < 1:
            raise ValueError(f"block_size_kb must be at least 1, got {self.block_size_kb}")
        self._hub = HubDataset(self.repo, self.revision, block_size=self.block_size_kb * 1024)

    def data_revisions(self) -> dict[str, str | None]:
        """The repo and the commit its revision is at now (None: cannot tell)."""
        return {self.repo: self._hub.commit()}

    def fetch_video(self, sample: Sample) -> str:
        """Read only this sample's member of its zip (kept on disk); its local path."""
        zip_name, _, member = sample.video.partition(":")
        return str(self._hub.zip_member(zip_name, member))


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (huggingface_hub's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
