"""Selection (`--category`, `--sample N --seed S`, `--limit`), checked against hand-worked cases.

The SHA-256 rankings used below, worked out once and pinned here so that a change
of rule shows: with seed 0, tiny's cat0 ids rank 000, 008, 002, 006, 004 and its
cat1 ids 007, 009, 005, 001, 003; with seed 1, cat0 ranks 008, 006, 004, 002,
000 and cat1 007, 001, 005, 009, 003. Categories x, y, z rank y, z, x with seed
0 and x, z, y with seed 1; cat0 and cat1 rank cat1, cat0 with seed 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import TinyBenchmark

from harness.cli import main
from harness.run.selection import SelectionError, allocate, by_category, select, stratified_sample
from harness.run.store import read_records
from harness.types import Sample


def tiny(count: int = 10) -> list[Sample]:
    return list(TinyBenchmark(count=count).samples())


def ids(samples: list[Sample]) -> list[str]:
    return [s.id for s in samples]


@pytest.mark.parametrize(
    ("sizes", "total", "seed", "expected"),
    [
        # one each first, then 2 more by the 5:2:0 rest: 10/7 -> 1 r3, 4/7 -> 0 r4: b's extra
        ({"a": 6, "b": 3, "c": 1}, 5, 0, {"a": 2, "b": 2, "c": 1}),
        # proportional after one each: 3 * (9, 19, 29) / 57 -> 0 r27, 1 r0, 1 r30: c gets the last
        ({"a": 10, "b": 20, "c": 30}, 6, 0, {"a": 1, "b": 2, "c": 3}),
        # fewer than the categories: 2 * (4, 4, 2) / 10 -> remainders 8, 8, 4
        ({"a": 4, "b": 4, "c": 2}, 2, 0, {"a": 1, "b": 1, "c": 0}),
        # equal remainders: the category ranked first by sha256(seed:name) wins
        ({"x": 1, "y": 1, "z": 1}, 1, 0, {"x": 0, "y": 1, "z": 0}),
        ({"x": 1, "y": 1, "z": 1}, 1, 1, {"x": 1, "y": 0, "z": 0}),
        ({"x": 1, "y": 1, "z": 1}, 2, 0, {"x": 0, "y": 1, "z": 1}),  # ties ranked y, z, x
        ({"a": 2, "b": 1}, 3, 0, {"a": 2, "b": 1}),
        ({"a": 2, "b": 1}, 50, 0, {"a": 2, "b": 1}),  # more than there are: all
    ],
)
def test_allocation_by_largest_remainder(sizes, total, seed, expected):
    assert allocate(sizes, total, seed) == expected


def test_allocation_never_exceeds_a_category_and_sums_to_the_request():
    sizes = {"a": 1, "b": 2, "c": 3, "d": 50, "e": 7}
    for total in range(1, sum(sizes.values()) + 1):
        for seed in range(3):
            quotas = allocate(sizes, total, seed)
            assert sum(quotas.values()) == total
            assert all(0 <= quotas[name] <= size for name, size in sizes.items())
            if total >= len(sizes):
                assert min(quotas.values()) >= 1


@pytest.mark.parametrize(
    ("size", "seed", "expected"),
    [
        (4, 0, ["tiny/000", "tiny/007", "tiny/008", "tiny/009"]),  # 2 + 2
        (4, 1, ["tiny/001", "tiny/006", "tiny/007", "tiny/008"]),
        (3, 0, ["tiny/000", "tiny/007", "tiny/009"]),  # 1 + 1, the tie to cat1
        (1, 0, ["tiny/007"]),
    ],
)
def test_stratified_sample_takes_the_lowest_hashes_in_benchmark_order(size, seed, expected):
    assert ids(stratified_sample(tiny(), size, seed)) == expected


def test_selection_order_is_category_then_sample_then_limit():
    chosen = select(tiny(), categories=["cat1"], sample=3, seed=1, limit=2)
    assert ids(chosen) == ["tiny/001", "tiny/005"]  # 007, 001, 005 by hash; then the first 2
    assert ids(select(tiny(), limit=3)) == ["tiny/000", "tiny/001", "tiny/002"]
    assert ids(select(tiny(4), categories=["cat0", "cat1"])) == ids(tiny(4))


def test_unknown_category_names_the_known_ones():
    with pytest.raises(SelectionError) as caught:
        by_category(tiny(), ["cat1", "cat7", "dogs"])
    assert str(caught.value) == (
        "unknown category 'cat7', 'dogs' (known categories: 'cat0', 'cat1')"
    )


def run(out: Path, run_id: str, *extra: str) -> Path:
    """One run of the scripted backend over tiny's 10 samples; its run directory."""
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "-S", "count=10"]
    before = set(out.iterdir()) if out.exists() else set()
    assert main([*args, "--out", str(out), "--run-id", run_id, "--no-progress", *extra]) == 0
    (run_dir,) = set(out.iterdir()) - before
    return run_dir


def recorded(run_dir: Path) -> list[str]:
    return sorted(r.sample_id for r in read_records(run_dir / "records.jsonl").records)


def test_run_records_its_selection_and_resume_keeps_it(tmp_path):
    run_dir = run(tmp_path, "r", "--category", "cat1", "--category", "cat0", "--sample", "4")
    assert recorded(run_dir) == ["tiny/000", "tiny/007", "tiny/008", "tiny/009"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["spec"] | {"backend_options": {}} == {
        "backend": "scripted",
        "benchmark": "tiny",
        "backend_options": {},
        "benchmark_options": {"count": 10},
        "categories": ["cat0", "cat1"],
        "sample": 4,
        "seed": 0,
        "limit": None,
        "shard": None,
        "judge": None,
    }
    assert manifest["samples_planned"] == 4

    records = run_dir / "records.jsonl"
    records.write_bytes(records.read_bytes().splitlines(keepends=True)[0])
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    assert recorded(run_dir) == ["tiny/000", "tiny/007", "tiny/008", "tiny/009"]


def test_shards_split_the_selection_and_merge_checks_it(tmp_path, capsys):
    selection = ("--sample", "5", "--seed", "1")
    whole = run(tmp_path, "whole", *selection)
    shards = [run(tmp_path / "s", "x", *selection, "--shard", f"{i}/2") for i in range(2)]
    assert sorted(recorded(shards[0]) + recorded(shards[1])) == recorded(whole)
    other = run(tmp_path / "o", "x", "--sample", "5", "--seed", "2", "--shard", "1/2")
    capsys.readouterr()
    code = main(["merge", str(shards[0]), str(other), "--out", str(tmp_path / "m")])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("are not shards of one run: seed 1 vs 2")
    assert main(["merge", *map(str, shards), "--out", str(tmp_path), "--run-id", "m"]) == 0
    assert recorded(tmp_path / "m") == recorded(whole)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--category", "cat9"], "unknown category 'cat9' (known categories: 'cat0', 'cat1')"),
        (["--seed", "3"], "--seed only makes sense with --sample N"),
        (["--sample", "0"], "argument --sample: must be at least 1, got 0"),
    ],
)
def test_bad_selection_is_one_clear_line(tmp_path, capsys, args, message):
    try:
        code = main(
            ["run", "--backend", "scripted", "--benchmark", "tiny", "--out", str(tmp_path), *args]
        )
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"vqa-harness: error: {message}"
    assert not any(tmp_path.iterdir())


def test_resume_refuses_a_new_selection(tmp_path, capsys):
    run_dir = run(tmp_path, "r")
    capsys.readouterr()
    code = main(["run", "--resume", str(run_dir), "--sample", "2", "--seed", "1"])
    assert code == 2
    assert "drop --sample, --seed" in capsys.readouterr().err
