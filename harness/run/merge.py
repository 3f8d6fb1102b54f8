"""Join the run directories of one sharded run into a single run directory.

The shards must belong together: the same benchmark (name, version, options),
backend and backend options, selection (categories, sample and seed, limit),
HTTP mode and shard count, and every shard index exactly once. Records are
copied line for line, never rewritten: each sample keeps its best record (an
OK one, else its latest failure), and a sample with an OK record in two shards
is refused, since the shards should be disjoint. The merged manifest says where
everything came from (`merged_from`) and holds every shard's sessions; it is
otherwise an ordinary run, so `report` and `--resume` work on it.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.report.markdown import write_report
from harness.run.session import RunSpec, new_run_id
from harness.run.shards import Shard
from harness.run.store import RecordLog, RunStore
from harness.types import Record

# What each shard's manifest contributes to `merged_from`, besides its directory.
_SOURCE_KEYS = ("run_id", "status", "backend", "http", "environment", "command")


class MergeError(HarnessError):
    """Run directories that are not the shards of one run."""


@dataclass(frozen=True)
class ShardRun:
    """One shard's run directory, read."""

    path: Path
    manifest: dict[str, Any]
    spec: RunSpec
    shard: Shard
    log: RecordLog

    @property
    def whole(self) -> RunSpec:
        """The spec of the run this is a shard of."""
        return replace(self.spec, shard=None)


def read_shard(path: Path) -> ShardRun:
    """Read a shard's manifest and records; refuse a run that is not a shard."""
    store = RunStore.open(path)
    manifest = store.read_manifest()
    try:
        spec = RunSpec.from_dict(manifest["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MergeError(f"{store.manifest_path} has no usable run spec ({exc})") from None
    if spec.shard is None:
        raise MergeError(f"{path} is not a shard: it was run without --shard")
    return ShardRun(path, manifest, spec, spec.shard, store.read_records())


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
        for sample_id, position in run.log.outcome_positions().items():
            record = run.log.records[position]
            if sample_id in chosen:
                other, at = chosen[sample_id]
                best = other.log.records[at]
                if best.ok and record.ok:
                    raise MergeError(
                        f"sample {sample_id!r} has an OK record in both {other.path} and {run.path}"
                    )
                if _rank(record) <= _rank(best):
                    continue
            chosen[sample_id] = (run, position)
    return [run.log.lines[position] for run, position in chosen.values()]


def merged_manifest(runs: Sequence[ShardRun], run_id: str) -> dict[str, Any]:
    """The manifest of the joined run: the shards' common spec, sessions and sources."""
    first = runs[0].manifest
    finished = [run.manifest["finished_at"] for run in runs if run.manifest.get("finished_at")]
    completed = all(run.manifest.get("status") == "completed" for run in runs)
    return {
        "run_id": run_id,
        "created_at": time.time(),
        "status": "completed" if completed else "partial",
        "finished_at": max(finished, default=None),
        "mode": first.get("mode"),
        "spec": asdict(runs[0].whole),
        "backend": first.get("backend"),
        "benchmark": first.get("benchmark"),
        "samples_planned": sum(run.manifest.get("samples_planned", 0) for run in runs),
        "command": sys.argv,
        "merged_from": [
            {"run_dir": str(run.path), "shard": run.shard.index}
            | {key: run.manifest.get(key) for key in _SOURCE_KEYS}
            for run in runs
        ],
        "sessions": [
            {**session, "run_dir": str(run.path)}
            for run in runs
            for session in run.manifest.get("sessions", [])
        ],
    }


def merge_runs(run_dirs: Sequence[Path], out: Path, run_id: str | None = None) -> Path:
    """Join the shards in `run_dirs` into a new run directory under `out`; return its path.

    Writes the merged `manifest.json` and `records.jsonl`, then `summary.json`
    and `report.md` as `vqa-harness report` does.
    """
    runs = sorted((read_shard(path) for path in run_dirs), key=lambda run: run.shard.index)
    check_shards(runs)
    lines = best_lines(runs)
    run_id = new_run_id(runs[0].whole, run_id)
    store = RunStore.create(out / run_id, merged_manifest(runs, run_id))
    for line in lines:
        store.append_line(line)
    store.close()
    write_report(store.path)
    return store.path


def _identity(run: ShardRun) -> dict[str, Any]:
    """What every shard of one run has in common."""
    benchmark = run.manifest.get("benchmark", {})
    return {
        "benchmark": f"{benchmark.get('name')} v{benchmark.get('version')}",
        "benchmark options": run.spec.benchmark_options,
        "backend": run.spec.backend,
        "backend options": run.spec.backend_options,
        "categories": list(run.spec.categories),
        "sample": run.spec.sample,
        "seed": run.spec.seed,
        "limit": run.spec.limit,
        "HTTP mode": run.manifest.get("mode"),
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
