"""The run directory's typed, versioned documents and its one reader, `Run.open`.

`run_dirs/schema0` is a run directory as the harness wrote it before the
manifest and `summary.json` carried a `schema` (a tiny scripted run of three
samples): it must stay readable, reportable, gateable and resumable.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.analysis.gate import GateError, load_summary
from harness.analysis.summary import summarize_run
from harness.analysis.summary_file import SUMMARY_SCHEMA, Summary
from harness.cli import main
from harness.run.directory import Run
from harness.run.manifest import MANIFEST_SCHEMA, ColdStart, Manifest
from harness.run.store import RunDirError
from harness.types import UNVERSIONED

SCHEMA0 = Path(__file__).parent / "run_dirs" / "schema0"


@pytest.fixture
def legacy(tmp_path) -> Path:
    """A writable copy of the schema-0 run directory."""
    return Path(shutil.copytree(SCHEMA0, tmp_path / "legacy"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def as_json(document: Manifest | Summary) -> dict:
    """`document` as its file holds it."""
    return json.loads(json.dumps(document.to_dict()))


def test_a_run_directory_without_schemas_is_read_as_schema_0():
    run = Run.open(SCHEMA0)
    manifest = run.manifest
    assert (manifest.schema, manifest.run_id, manifest.status) == (
        UNVERSIONED,
        "legacy",
        "completed",
    )
    assert (manifest.spec.backend, manifest.spec.benchmark_options) == ("scripted", {"count": 3})
    assert (manifest.benchmark.name, manifest.benchmark.version) == ("tiny", "1")
    (session,) = manifest.sessions
    assert session.written == 3 and session.settings["concurrency"] == 3
    assert session.cold_start == ColdStart("tiny/000", run.log.records[0].started_at)
    assert sorted(run.outcomes) == ["tiny/000", "tiny/001", "tiny/002"]
    stored = Summary.from_dict(read_json(SCHEMA0 / "summary.json"))
    assert stored.schema == UNVERSIONED
    fresh = summarize_run(SCHEMA0)
    assert fresh.schema == SUMMARY_SCHEMA
    assert (fresh.accuracy, fresh.samples) == (stored.accuracy, stored.samples)


def test_a_schema_0_run_is_reported_gated_and_resumed(legacy, capsys):
    assert main(["gate", str(legacy), "--baseline", str(SCHEMA0 / "summary.json")]) == 0
    assert main(["report", str(legacy)]) == 0
    assert read_json(legacy / "summary.json")["schema"] == SUMMARY_SCHEMA
    assert main(["run", "--resume", str(legacy), "--no-progress"]) == 0
    manifest = read_json(legacy / "manifest.json")
    assert manifest["schema"] == MANIFEST_SCHEMA  # rewritten in the current format
    assert [s["status"] for s in manifest["sessions"]] == ["completed", "completed"]
    assert manifest["sessions"][0] == read_json(SCHEMA0 / "manifest.json")["sessions"][0]


def test_new_documents_carry_their_schema_and_round_trip(tmp_path):
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "-S", "count=2"]
    assert main([*args, "--out", str(tmp_path), "--run-id", "r", "--no-progress"]) == 0
    manifest = read_json(tmp_path / "r" / "manifest.json")
    summary = read_json(tmp_path / "r" / "summary.json")
    assert (manifest["schema"], summary["schema"]) == (MANIFEST_SCHEMA, SUMMARY_SCHEMA)
    assert as_json(Manifest.from_dict(manifest)) == manifest
    assert as_json(Summary.from_dict(summary)) == summary
    assert Run.open(tmp_path / "r").manifest == Manifest.from_dict(manifest)


def test_an_unknown_schema_or_a_broken_manifest_is_one_line(legacy, tmp_path, capsys):
    cases = [
        ({"schema": 99}, "manifest schema 99 is not supported (expected 0 or 1 or 2)"),
        ({"spec": None}, "no usable run spec"),
        ({"backend": "scripted"}, "not a run manifest"),
    ]
    manifest = read_json(legacy / "manifest.json")
    for change, message in cases:
        (legacy / "manifest.json").write_text(json.dumps(manifest | change))
        with pytest.raises(RunDirError, match=re.escape(message)):
            Run.open(legacy)
        capsys.readouterr()
        assert main(["report", str(legacy)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    (legacy / "manifest.json").write_text("[]")
    with pytest.raises(RunDirError, match="expected a JSON object, got list"):
        Run.open(legacy)


def test_a_baseline_of_an_unknown_schema_or_shape_is_refused(tmp_path):
    summary = read_json(SCHEMA0 / "summary.json")
    for change, message in [
        ({"schema": 99}, r"summary schema 99 is not supported \(expected 0 or 1 or 2 or 3\)"),
        ({"surprise": 1}, r"\(unknown surprise\)"),
    ]:
        (tmp_path / "s.json").write_text(json.dumps(summary | change))
        with pytest.raises(GateError, match=message):
            load_summary(tmp_path / "s.json")
