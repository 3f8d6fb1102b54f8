"""A record line this version cannot read (a field of the wrong type, absurd nesting, a
future schema) is skipped and named by every command, like a torn line; `gate` refuses a
run with one, naming how many; a manifest of the wrong shape is one line; `merge` says
which shard lines it could not read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_crash import tiny_run

from harness.cli import main

DEEP = "[" * 100_000 + "]" * 100_000


def timing_fast(line: dict) -> str:
    return json.dumps(line | {"timings": {**line["timings"], "total": "fast"}})


def integer_id(line: dict) -> str:
    return json.dumps(line | {"sample_id": 7})


def infinite_timing(line: dict) -> str:
    return json.dumps(line | {"timings": {"total": float("-inf")}})


def future_schema(line: dict) -> str:
    return json.dumps(line | {"schema": 99})


BAD_LINES = {
    "timing 'fast'": (timing_fast, "timings.total is 'fast', not a finite number"),
    "integer sample id": (integer_id, "sample_id is 7, not str"),
    "infinite timing": (infinite_timing, "timings.total is -inf, not a finite number"),
    "100k nested arrays": (lambda line: DEEP, "JSON nested too deeply to read"),
    "future schema": (future_schema, "record schema 99 is not supported"),
}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good")
    assert main(tiny_run(out, 8)) == 0
    return out / "run"


def with_bad_lines(good: Path, where: Path, bad, lines: tuple[int, ...] = (1,)) -> Path:
    """A copy of the run `good` with the record lines at `lines` (0-based) made bad."""
    shutil.copytree(good, where)
    records = where / "records.jsonl"
    text = records.read_text().splitlines()
    for index in lines:
        text[index] = bad(json.loads(text[index]))
    records.write_text("\n".join(text) + "\n")
    return where


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return status, out, err


@pytest.mark.parametrize("kind", BAD_LINES)
def test_every_command_skips_and_names_a_bad_record(good_run, tmp_path, capsys, kind):
    bad, message = BAD_LINES[kind]
    run = str(with_bad_lines(good_run, tmp_path / "bad", bad))
    named = f"records.jsonl line 2: {message}"

    status, out, _ = run_cli(capsys, "report", run)
    assert status == 0 and named in out
    assert named in json.loads(Path(run, "summary.json").read_text())["skipped_lines"][0]

    status, out, _ = run_cli(capsys, "compare", str(good_run), run)
    assert status == 0 and named in out

    status, _, err = run_cli(capsys, "gate", run, "--baseline", str(good_run / "summary.json"))
    assert status == 2 and err.count("\n") == 1
    assert "has 1 unreadable record(s) of 8" in err and named in err

    status, _, err = run_cli(capsys, "run", "--resume", run, "--no-progress")
    assert status == 0 and f"ignoring {named}" in err


def test_gate_refuses_a_run_with_unreadable_records_naming_how_many(good_run, tmp_path, capsys):
    run = with_bad_lines(good_run, tmp_path / "future", future_schema, lines=(1, 3, 5))
    status, out, err = run_cli(
        capsys, "gate", str(run), "--baseline", str(good_run / "summary.json")
    )
    assert status == 2 and "PASS" not in out
    assert "has 3 unreadable record(s) of 8" in err and "and 2 more" in err


def test_gate_passes_over_a_torn_line_which_holds_no_record(good_run, tmp_path, capsys):
    """A killed writer's partial line: its sample is run again, so no record is lost."""
    run = with_bad_lines(good_run, tmp_path / "torn", lambda line: json.dumps(line)[:40])
    status, out, _ = run_cli(capsys, "gate", str(run), "--baseline", str(good_run / "summary.json"))
    assert status == 0 and "PASS" in out


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("[]", "expected a JSON object, got list"),
        ('{"sessions": null}', "not a run manifest"),
        ('{"sessions": [1]}', "not a run manifest"),
        ('{"sessions": [{"started_at": "x"}]}', "sessions[0].started_at is 'x', not a finite"),
        ('{"run_id": 7}', "run_id is 7, not str"),
        ('{"samples_planned": "x"}', "samples_planned is 'x', not int"),
        ('{"backend": {"name": 3}}', "backend.name is 3, not str"),
        (DEEP, "JSON nested too deeply"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line(good_run, tmp_path, capsys, manifest, message):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    data = json.loads((run / "manifest.json").read_text())
    changed = manifest if manifest in ("[]", DEEP) else json.dumps(data | json.loads(manifest))
    (run / "manifest.json").write_text(changed)
    baseline = str(good_run / "summary.json")
    for command in (
        ["report", str(run)],
        ["gate", str(run), "--baseline", baseline],
        ["compare", str(good_run), str(run)],
        ["run", "--resume", str(run), "--no-progress"],
    ):
        status, _, err = run_cli(capsys, *command)
        assert status == 2 and err.count("\n") == 1 and message in err, (command, err)


def test_merge_says_which_lines_it_could_not_read_and_gate_refuses_the_merged_run(tmp_path, capsys):
    shards = tmp_path / "shards"
    for index in range(2):
        assert main(tiny_run(shards, 8, "--shard", f"{index}/2", run_id="exp")) == 0
    shard = shards / "exp-shard1of2"
    with_bad_lines(shard, tmp_path / "bad", future_schema)
    shutil.rmtree(shard)
    (tmp_path / "bad").rename(shard)

    merge = ["merge", str(shards / "exp-shard0of2"), str(shard), "--out", str(tmp_path)]
    status, _, err = run_cli(capsys, *merge, "--run-id", "merged")
    assert status == 0
    assert f"{shard}: 1 record line(s) could not be read and are left out of the merge" in err
    assert "record schema 99 is not supported" in err

    merged = str(tmp_path / "merged")
    status, _, err = run_cli(capsys, "gate", merged, "--baseline", f"{merged}/summary.json")
    assert status == 2 and "1 unreadable record(s)" in err
