"""The commands that only read run directories import no plugin library.

Each command runs in a fresh interpreter, which then names every module it
imported from the backends' and benchmarks' heavy libraries: there must be none.
`--help` and `--version` import nothing outside the standard library and the harness.
How fast they start is measured, not tested: `nox -s perf` (perf/startup.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_fal_regression import replay
from test_fal_runs import no_fal_credentials

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
# The libraries of backends, benchmarks and the scoring of new answers: slow to import,
# and needed only to run a model over a benchmark.
HEAVY = (
    *("av", "datasets", "fal_client", "huggingface_hub", "jiwer", "nltk", "PIL"),
    *("torch", "transformers", "vcr"),
)
PROBE = f"""
import contextlib, io, json, sys
before = set(sys.modules)
from harness.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as stop:
        code = stop.code
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
plugins = sorted(m for m in sys.modules if m.split(".")[0] in ("backends", "benchmarks"))
# Packages with files: Cython's pseudo-modules (cython_runtime, ...) have none.
new = (m for m in set(sys.modules) - before if getattr(sys.modules[m], "__file__", None))
tops = {{m.split(".")[0] for m in new}}
outside = sorted(tops - set(sys.stdlib_module_names) - {{"harness"}})
print(json.dumps({{"code": code, "heavy": heavy, "plugins": plugins, "outside": outside}}))
"""


def imported(*args: str) -> dict:
    """Run `vqa-harness ARGS` in a fresh interpreter: its exit status, the heavy libraries
    and the plugin modules it imported, and every package it imported from outside the
    standard library and the harness."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two shards of a run of the scripted backend over the tiny benchmark, reported."""
    out = tmp_path_factory.mktemp("runs")
    for index in range(2):
        args = ["run", "--backend", "scripted", "--benchmark", "tiny", "--shard", f"{index}/2"]
        assert main([*args, "--out", str(out), "--run-id", "r", "--no-progress"]) == 0
    return sorted(out.iterdir())


def test_help_and_version_import_nothing_outside_the_standard_library():
    nothing = {"code": 0, "heavy": [], "plugins": [], "outside": []}
    assert {args: imported(args) for args in ("--help", "--version")} == {
        "--help": nothing,
        "--version": nothing,
    }


def test_commands_that_read_runs_import_no_plugin_library(shards, tmp_path):
    first, second = (str(path) for path in shards)
    baseline = str(shards[0] / "summary.json")
    commands = {
        "report": ["report", first],
        "gate": ["gate", first, "--baseline", baseline],
        "compare": ["compare", first, second, "--html", str(tmp_path / "c.html")],
        "merge": ["merge", first, second, "--out", str(tmp_path / "merged")],
    }
    results = {name: imported(*args) for name, args in commands.items()}
    # numpy, for the bootstrap intervals of the summary, is all they import from outside.
    expected = {"code": 0, "heavy": [], "plugins": [], "outside": ["numpy"]}
    assert results == {name: expected for name in commands}


def test_reporting_a_fal_run_imports_its_backend_module_for_its_facts_but_no_library(
    tmp_path, monkeypatch, synthetic_cache
):
    """A summary asks the run's backend what it reads in the records (`HasRunFacts`)."""
    no_fal_credentials(monkeypatch)
    reported = imported("report", str(replay(tmp_path, synthetic_cache)))
    assert reported["code"] == 0 and reported["heavy"] == []
    assert {"backends.fal", "backends.fal_account"} <= set(reported["plugins"])


def test_list_imports_each_plugin_module_but_none_of_their_libraries():
    listed = imported("list")
    assert listed["code"] == 0 and listed["heavy"] == []
    assert {"backends.fal", "backends.local", "benchmarks.synthetic"} <= set(listed["plugins"])
