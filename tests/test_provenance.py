"""Every output names what produced its runs at the top: live, a replay, a stand-in.

Three runs of the synthetic suite: a live one (the scripted backend), a replay of
the committed fal recording made against the emulator, and the local backend on
the tiny random-weight stand-in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from record_fal import EMULATOR_SOURCE, REPLAY_SET
from test_compare import answered, write_run
from test_fal_runs import no_fal_credentials

from harness.analysis.compare import compare_runs
from harness.analysis.provenance import PIPELINE_CHECK, provenance
from harness.bench import run_bench
from harness.cli import main
from harness.report.compare_tables import BELOW_RESOLUTION, render_markdown
from harness.report.html import render_html
from harness.run.manifest import Manifest
from harness.run.recording import CASSETTE

LIVE = "live · backend `scripted`, model not stated"


def recorded_on(directory: Path) -> str:
    """When the cassette in `directory` says it was recorded, as provenance words it."""
    metadata = yaml.safe_load((directory / CASSETTE).read_text()).get("metadata") or {}
    day = metadata.get("recorded_at")
    return f"on {day}" if day else "on a day not recorded"


REPLAY = (
    f"replay of a recording made against an emulator {recorded_on(REPLAY_SET)} ({EMULATOR_SOURCE})"
)
STANDIN = "stand-in model with random weights · backend `local`, model "
TITLED = "Accuracy and agreement: pipeline check (not a measurement)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_cache, standin) -> dict[str, Path]:
    """The three runs by kind, each with its `report.md` and `summary.json`."""
    out = tmp_path_factory.mktemp("provenance")
    common = ["-S", f"cache_dir={synthetic_cache}", "--limit", "4", "--no-progress"]
    commands = {
        "live": ["--backend", "scripted"],
        "replay": ["--backend", "fal", "--replay", str(REPLAY_SET)],
        "stand-in": ["--backend", "local", "-B", f"model={standin}", "-B", "device=cpu"],
    }
    commands["stand-in"] += ["-B", "max_new_tokens=3"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        no_fal_credentials(monkeypatch)
        for kind, command in commands.items():
            args = ["run", *command, *common, "--out", str(out), "--run-id", kind]
            assert main(args) == 0
            assert main(["report", str(out / kind)]) == 0
    return {kind: out / kind for kind in commands}


@pytest.mark.parametrize(
    ("kind", "text"), [("live", LIVE), ("replay", REPLAY), ("stand-in", STANDIN)]
)
def test_report_md_and_summary_json_say_what_produced_the_run_first(runs, kind, text):
    heading, blank, top = (runs[kind] / "report.md").read_text().splitlines()[:3]
    assert heading == f"# Run {kind}" and blank == ""
    assert top.startswith(f"**Provenance:** {text}")
    assert top.endswith(f"({PIPELINE_CHECK})") == (kind != "live")
    summary = json.loads((runs[kind] / "summary.json").read_text())
    assert list(summary)[:2] == ["run_id", "provenance"]
    assert summary["provenance"]["kind"] == kind
    assert summary["provenance"]["text"].startswith(text)
    assert summary["provenance"]["measurement"] is (kind == "live")


def test_the_stand_ins_model_and_revision_are_named(runs, standin):
    stand_in = json.loads((runs["stand-in"] / "summary.json").read_text())["provenance"]
    assert stand_in["model"] == str(standin)
    replay = json.loads((runs["replay"] / "summary.json").read_text())["provenance"]
    assert replay["model"] and replay["model"] in replay["text"]  # the fal app


def test_compare_markdown_and_html_name_each_runs_provenance_before_any_number(runs):
    comparison = compare_runs([runs["live"], runs["replay"], runs["stand-in"]])
    markdown = render_markdown(comparison)
    top = markdown.split("\n| ")[0]
    assert f"- live (baseline): {LIVE}" in top
    assert f"- replay: {REPLAY}" in top and f"- stand-in: {STANDIN}" in top
    assert f"are {PIPELINE_CHECK}." in top
    assert f"## {TITLED}" in markdown
    assert "## Latency against the baseline: pipeline check (not a measurement)" in markdown
    html = render_html(comparison)
    top = html.split("<table")[0]
    assert '<ul id="provenance"><li>live (baseline): live' in top
    assert "<li>replay: replay of a recording made against an emulator" in top
    assert "<li>stand-in: stand-in model with random weights" in top
    assert f"<h2>{TITLED}</h2>" in html


def test_a_comparison_of_live_runs_is_not_called_a_pipeline_check(runs):
    markdown = render_markdown(compare_runs([runs["live"], runs["live"]]))
    assert PIPELINE_CHECK not in markdown and "## Accuracy and agreement\n" in markdown


def test_bench_md_names_each_runs_provenance_at_the_top(tmp_path, monkeypatch, synthetic_cache):
    no_fal_credentials(monkeypatch)
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(synthetic_cache.parent))
    monkeypatch.chdir(tmp_path)
    markdown = run_bench(["scripted", "fal", "local"], "synthetic", tmp_path / "b", 2, 2, True)
    top = markdown.split("| backend |")[0]
    assert top.startswith("# Bench: synthetic\n\n**Provenance:**\n")
    assert f"- `scripted`: {LIVE}\n" in top
    assert f"- `fal`: {REPLAY}" in top and f"- `local`: {STANDIN}" in top
    assert f"**Not live:** the numbers of a run that is not live are {PIPELINE_CHECK}." in top


def test_latency_ratios_of_sub_millisecond_components_are_not_shown(tmp_path):
    """A median under 1 ms, in either run: no ratio; both above: the ratio."""
    baseline = [
        answered(f"s{i}", f"v{i}", "c", True, "A", total=0.2, io=0.0002, prep=0.0001)
        for i in range(3)
    ]
    other = [
        answered(f"s{i}", f"v{i}", "c", True, "A", total=0.1, io=0.0004, prep=0.3) for i in range(3)
    ]
    comparison = compare_runs(
        [write_run(tmp_path / "a", baseline), write_run(tmp_path / "b", other)]
    )
    rows = {
        row.split(" | ")[1]: row
        for row in render_markdown(comparison).splitlines()
        if row.startswith("| b |")
    }
    assert rows["io"].count(BELOW_RESOLUTION) == 2 and "x" not in rows["io"].replace("—", "")
    assert rows["prep"].count(BELOW_RESOLUTION) == 2  # 0.3 s against 0.1 ms: no 3000x
    assert "| 0.50x |" in rows["total"] and BELOW_RESOLUTION not in rows["total"]


@pytest.mark.parametrize(
    ("recorded_at", "when"), [("2026-11-25", "on 2026-11-25"), (None, "on a day not recorded")]
)
def test_a_replay_of_a_live_recording_says_when_it_was_recorded(recorded_at, when):
    http = {"mode": "replay", "source": "live fal service", "recorded_at": recorded_at}
    manifest = Manifest.from_dict(
        {
            "run_id": "r",
            "mode": "replay",
            "spec": {"backend": "fal", "benchmark": "synthetic"},
            "backend": {"name": "fal", "describe": {"app": "fal-ai/app"}},
            "benchmark": {"name": "synthetic", "version": "1"},
            "http": {k: v for k, v in http.items() if v is not None},  # older cassettes: none
        }
    )
    found = provenance(manifest)
    assert found.kind == "replay" and not found.measurement
    assert found.text == (
        f"replay of a recording made against the live service {when} (live fal service)"
        " · backend `fal`, model fal-ai/app"
    )
