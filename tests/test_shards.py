"""Sharded runs (`run --shard i/N`) and joining them (`merge`)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from fakes import TinyBenchmark

from harness.analysis.summary import summarize
from harness.cli import main
from harness.files import write_json_atomic
from harness.run.manifest import BackendInfo, BenchmarkInfo, Manifest, Session
from harness.run.shards import Shard, parse_shard
from harness.run.spec import RunSpec
from harness.run.store import RecordLog, read_records
from harness.types import Sample

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def run(out: Path, run_id: str, *extra: str, count: int = 9) -> Path:
    """One `vqa-harness run` of the scripted backend over the tiny benchmark."""
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "-S", f"count={count}"]
    before = set(out.iterdir()) if out.exists() else set()
    code = main([*args, "--out", str(out), "--run-id", run_id, "--no-progress", *extra])
    assert code == 0
    (run_dir,) = set(out.iterdir()) - before
    return run_dir


def run_shards(out: Path, count: int, *extra: str, run_id: str = "exp") -> list[Path]:
    return [run(out, run_id, "--shard", f"{i}/{count}", *extra) for i in range(count)]


def outcomes(run_dir: Path) -> set[tuple]:
    """(sample_id, response, score) of each sample's outcome."""
    records = read_records(run_dir / "records.jsonl").latest_by_sample().values()
    return {(r.sample_id, r.response, json.dumps(r.to_dict()["score"])) for r in records}


def usage_error(capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run the CLI expecting its one-line usage error (exit 2); return that line."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("vqa-harness: error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """Tests start outside torchrun, whatever the environment running them."""
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def sample(index: int, video: str) -> Sample:
    return Sample(id=f"s{index}", video=video, question="?", answer="A")


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 9, 13])
def test_shards_partition_the_samples_keeping_each_video_whole(count):
    videos = "aabccdeefghhhij"  # a video's questions need not be adjacent: e, h
    samples = [sample(i, v) for i, v in enumerate(videos + "eh")]
    shards = [Shard(i, count).select(samples) for i in range(count)]

    assigned = Counter(s.id for shard in shards for s in shard)
    assert assigned == Counter(s.id for s in samples)  # disjoint and covering
    homes = defaultdict(set)
    for index, shard in enumerate(shards):
        for s in shard:
            homes[s.video].add(index)
    assert all(len(home) == 1 for home in homes.values())  # a video is asked in one shard
    owner = {video: home.pop() for video, home in homes.items()}
    for shard in shards:  # each keeps the benchmark's order
        assert shard == [s for s in samples if s in shard]
    # Contiguous blocks, in order of first appearance, of about equal size.
    firsts = list(dict.fromkeys(s.video for s in samples))
    assert [owner[v] for v in firsts] == sorted(owner[v] for v in firsts)
    largest_video = max(Counter(s.video for s in samples).values())
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= largest_video


def test_more_shards_than_samples_leaves_some_empty():
    samples = list(TinyBenchmark(count=3).samples())
    shards = [Shard(i, 7).select(samples) for i in range(7)]
    assert sorted(s.id for shard in shards for s in shard) == [s.id for s in samples]
    assert sum(1 for shard in shards if not shard) == 7 - len({s.video for s in samples})


@pytest.mark.parametrize(("limit", "count"), [(None, 2), (None, 4), (7, 3), (5, 8)])
def test_shard_runs_cover_the_selection_after_limit(tmp_path, limit, count):
    extra = ["--limit", str(limit)] if limit else []
    whole = run(tmp_path / "whole", "whole", *extra)
    shards = run_shards(tmp_path / "shards", count, *extra)

    ids = Counter(r.sample_id for d in shards for r in read_records(d / "records.jsonl").records)
    assert ids == Counter(r.sample_id for r in read_records(whole / "records.jsonl").records)
    for index, run_dir in enumerate(shards):
        assert run_dir.name == f"exp-shard{index}of{count}"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["spec"]["shard"] == {"index": index, "count": count}
        assert manifest["samples_planned"] == len(read_records(run_dir / "records.jsonl").records)


def test_default_run_id_names_the_shard(tmp_path):
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "--shard", "1/4"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-tiny-scripted-[0-9a-f]{6}-shard1of4", run_dir.name)


@pytest.mark.parametrize("count", [1, 3, 5, 12])
def test_merged_shards_equal_one_unsharded_run(tmp_path, capsys, count):
    options = ["-B", "fail=tiny/002,tiny/007", "-B", "reply=B, I think"]
    whole = run(tmp_path, "whole", *options)
    shards = run_shards(tmp_path / "shards", count, *options)
    capsys.readouterr()

    assert main(["merge", *map(str, reversed(shards)), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    (merged,) = (p for p in tmp_path.iterdir() if p.name not in {"whole", "shards"})
    assert f"merged {count} shards into {merged}" in printed.err
    assert printed.out == (merged / "report.md").read_text()

    assert outcomes(merged) == outcomes(whole)
    source_lines = {line for d in shards for line in read_records(d / "records.jsonl").lines}
    assert set((merged / "records.jsonl").read_bytes().splitlines()) <= source_lines
    summary, whole_summary = (json.loads((d / "summary.json").read_text()) for d in (merged, whole))
    for key in ("accuracy", "categories", "failures", "samples"):
        assert summary[key] == whole_summary[key]

    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["spec"] == json.loads((whole / "manifest.json").read_text())["spec"]
    assert [m["run_dir"] for m in manifest["merged_from"]] == [str(d) for d in shards]
    assert [m["shard"] for m in manifest["merged_from"]] == list(range(count))
    assert [s["run_dir"] for s in manifest["sessions"]] == [str(d) for d in shards]
    assert manifest["status"] == "completed"


def test_merge_keeps_an_ok_record_over_a_failure_in_another_shard(tmp_path):
    first, second = run_shards(tmp_path, 2, "-B", "fail=tiny/001")
    lines = (first / "records.jsonl").read_bytes().splitlines()
    (failed_line,) = (line for line in lines if b'"status":"failed"' in line)
    assert b'"tiny/001"' in failed_line
    retried = failed_line.replace(b'"status":"failed"', b'"status":"ok"', 1)
    with (second / "records.jsonl").open("ab") as handle:
        handle.write(retried + b"\n")

    assert main(["merge", str(first), str(second), "--out", str(tmp_path), "--run-id", "m"]) == 0
    merged = read_records(tmp_path / "m" / "records.jsonl")
    assert [r.status for r in merged.records if r.sample_id == "tiny/001"] == ["ok"]
    assert retried in (tmp_path / "m" / "records.jsonl").read_bytes().splitlines()
    assert len(merged.records) == 9


def test_a_merged_run_resumes_like_any_run(tmp_path):
    whole = run(tmp_path, "whole")
    shards = run_shards(tmp_path / "shards", 3)
    records = shards[1] / "records.jsonl"
    records.write_bytes(b"".join(records.read_bytes().splitlines(keepends=True)[1:]))
    assert main(["merge", *map(str, shards), "--out", str(tmp_path), "--run-id", "m"]) == 0
    merged = tmp_path / "m"
    assert json.loads((merged / "summary.json").read_text())["samples"]["missing"] == 1

    assert main(["run", "--resume", str(merged), "--no-progress"]) == 0
    assert outcomes(merged) == outcomes(whole)
    assert json.loads((merged / "manifest.json").read_text())["sessions"][-1]["written"] == 1


def test_resume_keeps_the_shard(tmp_path, capsys):
    run_dir = run(tmp_path, "exp", "--shard", "1/3")
    records = run_dir / "records.jsonl"
    before = outcomes(run_dir)
    records.write_bytes(records.read_bytes().splitlines(keepends=True)[0])  # lose all but one

    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    assert outcomes(run_dir) == before
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["sessions"][-1]["written"] == len(before) - 1
    capsys.readouterr()
    line = usage_error(capsys, "run", "--resume", str(run_dir), "--shard", "0/3")
    assert "--resume takes the run's own settings; drop --shard" in line


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}, (2, 4)),
        ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "3"}, (1, 3)),
    ],
)
def test_shard_auto_reads_the_launcher_environment(tmp_path, monkeypatch, environment, expected):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    run_dir = run(tmp_path, "auto", "--shard", "auto")
    index, count = expected
    assert run_dir.name == f"auto-shard{index}of{count}"
    assert parse_shard("auto", environment) == Shard(index, count)


@pytest.mark.parametrize(
    ("value", "environment", "message"),
    [
        ("4/4", {}, "shard index must be from 0 to 3 for 4 shards, got 4"),
        ("1/0", {}, "shard count must be at least 1, got 0"),
        ("-1/4", {}, "expected i/N (shard i of N, 0-based) or auto, got '-1/4'"),
        ("1", {}, "got '1'"),
        ("a/b", {}, "got 'a/b'"),
        ("auto", {}, "--shard auto needs RANK and WORLD_SIZE (or LOCAL_RANK and"),
        ("auto", {"RANK": "1"}, "--shard auto needs RANK and WORLD_SIZE"),
        ("auto", {"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x', WORLD_SIZE='2' are not whole"),
        ("auto", {"RANK": "2", "WORLD_SIZE": "2"}, "RANK='2', WORLD_SIZE='2': shard index"),
    ],
)
def test_bad_shard_is_one_clear_line(capsys, monkeypatch, value, environment, message):
    for name, setting in environment.items():
        monkeypatch.setenv(name, setting)
    line = usage_error(capsys, "run", "--backend", "scripted", f"--shard={value}")
    assert line.startswith("vqa-harness: error: argument --shard: ")
    assert message in line


def edit_manifest(run_dir: Path, edit) -> None:
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_merge_refuses_runs_that_do_not_belong_together(tmp_path, capsys):
    base = run_shards(tmp_path / "base", 3)
    other = {
        "backend options": run(tmp_path / "o", "o", "--shard", "1/3", "-B", "delay=0.001"),
        "benchmark options": run(tmp_path / "b", "b", "--shard", "1/3", count=8),
        "limit": run(tmp_path / "l", "l", "--shard", "1/3", "--limit", "6"),
        "shard count": run(tmp_path / "c", "c", "--shard", "1/2"),
    }
    version = run(tmp_path / "v", "v", "--shard", "1/3")
    edit_manifest(version, lambda m: m["benchmark"].update(version="2"))
    backend = run(tmp_path / "n", "n", "--shard", "1/3")
    edit_manifest(backend, lambda m: m["spec"].update(backend="fal"))
    judged = run(tmp_path / "j", "j", "--shard", "1/3")
    edit_manifest(judged, lambda m: m.update(judge={"model": "j-1", "prompt_version": "p"}))
    preset = run(tmp_path / "p", "p", "--shard", "1/3")
    edit_manifest(preset, lambda m: m["spec"].update(preset="openbmb-videomme"))
    capsys.readouterr()

    def refused(replacement: Path) -> str:
        out = tmp_path / "merged"
        line = usage_error(
            capsys, "merge", str(base[0]), str(replacement), str(base[2]), "--out", str(out)
        )
        assert not out.exists()
        assert f"{base[0]} and {replacement} are not shards of one run: " in line
        return line.split("are not shards of one run: ")[1]

    assert refused(other["backend options"]) == "backend options {'delay': 0.0} vs {'delay': 0.001}"
    assert refused(other["benchmark options"]) == "benchmark options {'count': 9} vs {'count': 8}"
    assert refused(other["limit"]) == "limit None vs 6"
    assert refused(other["shard count"]) == "shard count 3 vs 2"
    assert refused(version) == "benchmark tiny v1 vs tiny v2"
    assert refused(backend) == "backend scripted vs fal"
    assert refused(judged) == "scoring no judge vs judge j-1 (prompt p)"
    assert refused(preset) == "preset none vs openbmb-videomme"


def test_merge_refuses_duplicate_missing_and_unsharded_runs(tmp_path, capsys):
    shards = run_shards(tmp_path, 4)
    again = run(tmp_path, "again", "--shard", "2/4")
    whole = run(tmp_path, "whole")
    capsys.readouterr()
    out = ["--out", str(tmp_path / "merged")]

    line = usage_error(capsys, "merge", *map(str, shards), str(again), *out)
    assert line.endswith(f"shard 2 is given more than once: {shards[2]}, {again}")
    line = usage_error(capsys, "merge", str(shards[0]), str(shards[2]), *out)
    assert line.endswith("missing shard(s) 1, 3 of 4")
    line = usage_error(capsys, "merge", *map(str, shards), str(whole), *out)
    assert line.endswith(f"{whole} is not a shard: it was run without --shard")
    line = usage_error(capsys, "merge", str(tmp_path / "nowhere"), *out)
    assert "nowhere is not a run directory" in line
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_a_sample_ok_in_two_shards(tmp_path, capsys):
    first, second = run_shards(tmp_path, 2)
    stray = (first / "records.jsonl").read_bytes().splitlines()[0]
    with (second / "records.jsonl").open("ab") as handle:
        handle.write(stray + b"\n")
    capsys.readouterr()
    line = usage_error(capsys, "merge", str(first), str(second), "--out", str(tmp_path / "m"))
    sample_id = json.loads(stray)["sample_id"]
    assert line.endswith(f"sample {sample_id!r} has an OK record in both {first} and {second}")


def test_throughput_of_parallel_shards_counts_their_wall_time_once():
    sessions = [
        {"started_at": 100.0, "finished_at": 110.0, "written": 6},  # shard 0
        {"started_at": 104.0, "finished_at": 108.0, "written": 2},  # shard 1, within shard 0
        {"started_at": 109.0, "finished_at": 120.0, "written": 4},  # shard 2, overlapping
        {"started_at": 200.0, "finished_at": 205.0, "written": 3},  # a later resume
    ]
    manifest = Manifest(
        run_id="r",
        mode="live",
        spec=RunSpec("scripted", "tiny"),
        backend=BackendInfo("scripted"),
        benchmark=BenchmarkInfo("tiny", "1"),
        sessions=tuple(Session(**session) for session in sessions),
    )
    throughput = summarize(RecordLog(), manifest).throughput
    assert throughput == {"wall_s": 25.0, "samples_per_s": 15 / 25.0}


def _rewrite(path: str) -> None:
    for index in range(300):
        write_json_atomic(Path(path), {"index": index, "padding": "x" * 1000})


def test_shard_processes_can_rewrite_one_shared_json_file(tmp_path):
    """Like the upload cache that every shard process on a machine shares."""
    path = tmp_path / "cache.json"
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_rewrite, [str(path)] * 4))
    assert json.loads(path.read_text())["index"] == 299
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]
