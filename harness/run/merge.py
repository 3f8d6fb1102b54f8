"""Join the run directories of one sharded run into a single run directory.

The shards must belong together: the same benchmark (name, version, options),
backend and backend options, selection (categories, sample and seed, limit),
HTTP mode and shard count, the same commit of each dataset repo where the shards
know it, and every shard index exactly once. Records are copied line for line,
never rewritten: each sample keeps its best record (an OK one, else its latest
failure), and a sample with an OK record in two shards is refused, since the
shards should be disjoint. Lines a shard holds but this version cannot read are
left out and said on stderr; its unreadable records (not its torn lines) stay named
in `merged_from` (`unreadable_records`), so `gate` refuses the merged run as it
would the shard. The backend's own files (`KeepsRunFiles`: a journal of its
requests, a service's logs) are carried too, each shard's whole lines after the
previous shard's, so a resume of the merged run picks up what the shards left open.
The merged manifest says where everything came from (`merged_from`) and holds every
shard's sessions; it is otherwise an ordinary run, so `report` and `--resume` work
on it. Merging writes no report: the `merge`
command reports the merged run as `report` does.

The merged run is built aside, in a hidden directory under `out`, and renamed into
place once whole: a merge killed part-way leaves no run directory that looks
finished (only the hidden one, which a merge run again does not reuse).
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import fsync_directory
from harness.protocols import run_file_pattern
from harness.run.directory import Run
from harness.run.manifest import Manifest, data_change
from harness.run.shards import Shard
from harness.run.spec import RunSpec, new_run_id
from harness.run.store import WRITABLE, AppendOnlyFile, RunDirError, RunStore, read_lines
from harness.scoring.judge import judge_label
from harness.types import Record

# What each shard's manifest contributes to `merged_from`, besides its directory.
_SOURCE_KEYS = ("run_id", "status", "backend", "http", "environment", "command")


class MergeError(HarnessError):
    """Run directories that are not the shards of one run."""


@dataclass(frozen=True)
class ShardRun:
    """One shard's run directory, read, and which shard it is."""

    run: Run
    shard: Shard

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def manifest(self) -> Manifest:
        return self.run.manifest

    @property
    def whole(self) -> RunSpec:
        """The spec of the run this is a shard of."""
        return replace(self.manifest.spec, shard=None)


def read_shard(path: Path) -> ShardRun:
    """Read a shard's run directory; refuse a run that is not a shard."""
    run = Run.open(path)
    if run.manifest.spec.shard is None:
        raise MergeError(f"{path} is not a shard: it was run without --shard")
    return ShardRun(run, run.manifest.spec.shard)


def check_shards(runs: Sequence[ShardRun]) -> None:
    """Refuse shards of different runs, and duplicate or missing shard indices."""
    first = runs[0]
    expected = _identity(first)
    for run in runs[1:]:
        for what, value in _identity(run).items():
            if value != expected[what]:
                mine, theirs = _difference(expected[what], value)
                raise MergeError(
                    f"{first.path} and {run.path} are not shards of one run: "
                    f"{what} {mine} vs {theirs}"
                )
    _data(runs)  # refuses two commits of one dataset repo
    seen = Counter(run.shard.index for run in runs)
    twice = sorted(index for index, n in seen.items() if n > 1)
    if twice:
        paths = ", ".join(str(run.path) for run in runs if run.shard.index == twice[0])
        raise MergeError(f"shard {twice[0]} is given more than once: {paths}")
    missing = sorted(set(range(first.shard.count)) - set(seen))
    if missing:
        listed = ", ".join(map(str, missing))
        raise MergeError(f"missing shard(s) {listed} of {first.shard.count}")


def best_lines(runs: Sequence[ShardRun]) -> list[bytes]:
    """Each sample's best record line over all shards; refuse a sample OK in two shards."""
    chosen: dict[str, tuple[ShardRun, int]] = {}
    for run in runs:
        for sample_id, position in run.run.log.outcome_positions().items():
            record = run.run.log.records[position]
            if sample_id in chosen:
                other, at = chosen[sample_id]
                best = other.run.log.records[at]
                if best.ok and record.ok:
                    raise MergeError(
                        f"sample {sample_id!r} has an OK record in both {other.path} and {run.path}"
                    )
                if _rank(record) <= _rank(best):
                    continue
            chosen[sample_id] = (run, position)
    return [run.run.log.lines[position] for run, position in chosen.values()]


def merged_manifest(runs: Sequence[ShardRun], run_id: str) -> Manifest:
    """The manifest of the joined run: the shards' common spec, sessions and sources."""
    first = runs[0].manifest
    finished = [run.manifest.finished_at for run in runs if run.manifest.finished_at]
    completed = all(run.manifest.status == "completed" for run in runs)
    return Manifest(
        run_id=run_id,
        created_at=time.time(),
        status="completed" if completed else "partial",
        finished_at=max(finished, default=None),
        mode=first.mode,
        spec=runs[0].whole,
        backend=first.backend,
        benchmark=first.benchmark,
        samples_planned=sum(run.manifest.samples_planned or 0 for run in runs),
        command=sys.argv,
        merged_from=[_source(run) for run in runs],
        data=_data(runs),
        sessions=tuple(
            replace(session, run_dir=str(run.path))
            for run in runs
            for session in run.manifest.sessions
        ),
    )


def merge_runs(run_dirs: Sequence[Path], out: Path, run_id: str | None = None) -> Path:
    """Join the shards in `run_dirs` into a new run directory under `out`; return its path.

    Writes the merged `manifest.json`, `records.jsonl` and the backend's own files aside,
    synced, then renames the whole directory into place.
    """
    runs = sorted((read_shard(path) for path in run_dirs), key=lambda run: run.shard.index)
    check_shards(runs)
    lines = best_lines(runs)
    for run in runs:
        skipped = run.run.log.skipped
        if skipped:
            more = f"; and {len(skipped) - 1} more" if len(skipped) > 1 else ""
            print(
                f"{run.path}: {len(skipped)} record line(s) could not be read and are left "
                f"out of the merge ({skipped[0]}{more})",
                file=sys.stderr,
            )
    run_id = new_run_id(runs[0].whole, run_id)
    target = out / run_id
    RunStore.check_new(target)
    try:
        out.mkdir(parents=True, exist_ok=True)
        aside = Path(tempfile.mkdtemp(prefix=f".{run_id}.", suffix=".merging", dir=out))
    except OSError as exc:
        raise RunDirError(
            f"cannot create run directory {target}: {exc.strerror or exc}; {WRITABLE}"
        ) from None
    try:
        _write(aside, merged_manifest(runs, run_id), lines)
        _carry_run_files(runs, aside)
        os.rename(aside, target)
    except BaseException as exc:
        shutil.rmtree(aside, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise RunDirError(
                f"run directory {target} already exists (use --resume {target})"
            ) from None
        raise
    fsync_directory(out)
    return target


def _write(directory: Path, manifest: Manifest, lines: list[bytes]) -> None:
    """The merged run's manifest and records, synced to disk."""
    store = RunStore.create(directory, manifest)
    try:
        for line in lines:
            store.append_line(line)
        store.close()
    finally:
        store.unlock()


def _carry_run_files(runs: Sequence[ShardRun], directory: Path) -> None:
    """The backend's own files of every shard (`KeepsRunFiles`), joined in `directory`:
    whole lines only (a torn last line is left out), synced to disk."""
    pattern = run_file_pattern(runs[0].manifest.spec.backend)
    files: dict[str, AppendOnlyFile] = {}
    for run in runs:
        for path in sorted(run.path.glob(pattern)):
            joined = files.setdefault(path.name, AppendOnlyFile(directory / path.name))
            for _, line, whole in read_lines(path):
                if whole:
                    joined.append(line)
    for joined in files.values():
        joined.close()


def _source(run: ShardRun) -> dict[str, Any]:
    """A shard's entry in `merged_from`: its directory, index, and what its manifest says."""
    manifest = run.manifest.to_dict()
    unreadable = run.run.log.unreadable
    return (
        {"run_dir": str(run.path), "shard": run.shard.index}
        | {key: manifest.get(key) for key in _SOURCE_KEYS}
        | ({"unreadable_records": unreadable} if unreadable else {})
    )


def _data(runs: Sequence[ShardRun]) -> dict[str, str | None] | None:
    """The commit of each dataset repo, from the first shard that knows it; shards that know
    two commits of one repo are refused."""
    data: dict[str, str | None] = {}
    source: dict[str, Path] = {}
    for run in runs:
        change = data_change(data, run.manifest.data)
        if change:
            repo, mine, theirs = change
            raise MergeError(
                f"{source[repo]} and {run.path} are not shards of one run: "
                f"dataset {repo} commit {mine} vs {theirs}"
            )
        for repo, commit in (run.manifest.data or {}).items():
            if not data.get(repo):
                data[repo], source[repo] = commit, run.path
    return data or None


def _identity(run: ShardRun) -> dict[str, Any]:
    """What every shard of one run has in common."""
    benchmark, spec = run.manifest.benchmark, run.manifest.spec
    return {
        "benchmark": f"{benchmark.name} v{benchmark.version}",
        "benchmark options": spec.benchmark_options,
        "backend": spec.backend,
        "backend options": spec.backend_options,
        "categories": list(spec.categories),
        "sample": spec.sample,
        "seed": spec.seed,
        "limit": spec.limit,
        "HTTP mode": run.manifest.mode,
        "scoring": judge_label(run.manifest.judge),
        "preset": spec.preset or "none",
        "shard count": run.shard.count,
    }


def _difference(a: Any, b: Any) -> tuple[str, str]:
    """Two differing values as text; for options, only the keys that differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        a, b = ({k: d.get(k) for k in keys} for d in (a, b))
    return str(a), str(b)


def _rank(record: Record) -> tuple[bool, float]:
    """OK beats failed; between failures, the later one wins."""
    return record.ok, record.finished_at
