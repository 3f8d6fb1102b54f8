"""Presets (`--preset`) and the published numbers a whole run is set beside."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from test_summary import LOG, manifest
from test_videomme import hub, repo_folder  # noqa: F401 (fixtures)

from harness.analysis.published import comparison
from harness.analysis.summary import summarize
from harness.cli import main
from harness.errors import UsageError
from harness.report.markdown import render_markdown
from harness.run.manifest import Manifest
from harness.run.presets import PRESETS, get_preset
from harness.run.spec import RunSpec

OPENBMB_LOCAL = {"max_frames": 64, "max_slice_nums": 1, "num_beams": 1, "sampling": False}


def test_a_preset_sets_benchmark_and_local_options_and_keeps_the_rest():
    benchmark, backend, bench = get_preset("openbmb-videomme").apply(
        "local", None, {"device": "cpu", "max_frames": "64"}, {"repo": "x/y"}
    )
    assert benchmark == "videomme"
    assert backend == {"device": "cpu", **OPENBMB_LOCAL}
    assert bench == {"repo": "x/y", "subtitles": False}
    assert get_preset("openbmb-videomme-subtitles").apply("local", None, {}, {})[0] == (
        "videomme-subtitles"
    )


@pytest.mark.parametrize(
    ("backend", "benchmark", "backend_options", "benchmark_options", "message"),
    [
        ("local", None, {"max_frames": "32"}, {}, "sets max_frames=64; drop -B max_frames=32"),
        ("local", None, {"sampling": "true"}, {}, "sets sampling=false; drop -B sampling=true"),
        ("local", None, {}, {"subtitles": "true"}, "drop -S subtitles=true"),
        ("local", "mvbench", {}, {}, "runs --benchmark videomme; drop --benchmark mvbench"),
        ("fal", None, {}, {}, "backend 'fal' does not expose"),
    ],
)
def test_a_choice_against_the_preset_is_a_usage_error(
    backend: str,
    benchmark: str | None,
    backend_options: dict[str, Any],
    benchmark_options: dict[str, Any],
    message: str,
):
    with pytest.raises(UsageError, match=message):
        get_preset("openbmb-videomme").apply(backend, benchmark, backend_options, benchmark_options)


def test_the_cli_refuses_a_contradiction_in_one_line(tmp_path, capsys):
    args = ["run", "--preset", "openbmb-videomme", "--backend", "local", "-B", "max_frames=8"]
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "vqa-harness: error: --preset openbmb-videomme sets max_frames=64; drop -B max_frames=8"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_spec_without_a_preset_reads_and_writes_as_before():
    old = manifest()
    assert old.spec.preset is None and "preset" not in old.to_dict()["spec"]
    assert "preset" not in old.to_dict()
    spec = RunSpec.from_dict({**old.to_dict()["spec"], "preset": "openbmb-videomme"})
    assert spec.preset == "openbmb-videomme"


def test_a_preset_run_on_the_tiny_model_records_the_preset(hub, standin, tmp_path, capsys):  # noqa: F811
    args = ["run", "--preset", "openbmb-videomme", "--backend", "local"]
    args += ["-B", f"model={standin}", "-B", "device=cpu", "-B", "max_new_tokens=4"]
    args += ["--limit", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path), "--run-id", "p"]) == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert data["spec"]["preset"] == "openbmb-videomme"
    assert data["spec"]["benchmark"] == "videomme"
    assert OPENBMB_LOCAL.items() <= data["spec"]["backend_options"].items()
    assert data["spec"]["benchmark_options"]["subtitles"] is False
    assert data["preset"] == PRESETS["openbmb-videomme"].to_dict()
    assert data["preset"]["unstated"]["decoding"].startswith("not stated by OpenBMB; used: greedy")
    assert Manifest.from_dict(data).spec.preset == "openbmb-videomme"
    # the tiny stand-in is not MiniCPM-V 2.6: there is no number to compare with
    report = (tmp_path / "p" / "report.md").read_text()
    assert "No published number for this model on this benchmark." in report
    # The same answers as a run without the preset: compare and gate say so first.
    shutil.copytree(tmp_path / "p", tmp_path / "plain")
    data["spec"]["preset"], data["preset"], data["run_id"] = None, None, "plain"
    (tmp_path / "plain" / "manifest.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "plain"), str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    said = out.index("Protocol presets differ: plain (baseline): none; p: openbmb-videomme")
    assert said < out.index("| run | backend | accuracy")
    assert main(["report", str(tmp_path / "plain")]) == 0
    baseline = str(tmp_path / "plain" / "summary.json")
    capsys.readouterr()
    assert main(["gate", str(tmp_path / "p"), "--baseline", baseline]) == 0
    out = capsys.readouterr().out
    assert "protocol preset: openbmb-videomme for run p, none for" in out


def minicpm(**fields: Any) -> Manifest:
    """`manifest()` of a MiniCPM-V 2.6 run (local) on Video-MME, with `fields` changed."""
    base = manifest()
    spec = {**base.to_dict()["spec"], "benchmark": "videomme", "categories": [], "sample": None}
    defaults = {
        "backend": {"name": "local", "describe": {"model": "openbmb/MiniCPM-V-2_6"}},
        "benchmark": {"name": "videomme", "version": "1"},
        "samples_planned": 7,
    }
    return manifest(**{**defaults, **fields, "spec": {**spec, **fields.get("spec", {})}})


def test_a_whole_run_is_set_beside_the_published_number():
    summary = summarize(LOG, minicpm())
    published = summary.published
    assert published is not None and published["value"] == 0.609
    assert published["difference"] == pytest.approx(summary.accuracy["value"] - 0.609)
    ci = summary.accuracy["ci"]
    assert published["within_interval"] == (ci[0] <= 0.609 <= ci[1])
    line = next(x for x in render_markdown(summary).splitlines() if x.startswith("Published"))
    assert line.startswith("Published: 60.9% (OpenBMB's MiniCPM-V 2.6 model documentation")
    diff = (summary.accuracy["value"] - 0.609) * 100
    assert f"· this run: {summary.accuracy['value']:.1%} 95% CI [" in line
    assert f"· difference: {diff:+.1f} pp" in line


def test_with_subtitles_the_number_with_subtitles_applies():
    run = minicpm(spec={"benchmark_options": {"subtitles": True}})
    assert comparison(run, {"value": 0.5, "ci": [0.4, 0.6]}, 0)["value"] == 0.636


def test_a_partial_run_is_not_compared():
    for partial, reason in (
        (minicpm(spec={"limit": 3}), "a selection (--limit)"),
        (minicpm(samples_planned=9), "2 planned sample(s) without a record"),
    ):
        summary = summarize(LOG, partial)
        assert summary.published is not None and "difference" not in summary.published
        assert summary.published["partial"] == reason
        assert f"this run is partial ({reason}), so not compared." in render_markdown(summary)


def test_without_a_published_number_the_report_says_so():
    for run in (
        minicpm(benchmark={"name": "mvbench", "version": "1"}),
        manifest(),  # a backend that is not MiniCPM-V 2.6
    ):
        summary = summarize(LOG, run)
        assert summary.published == {"value": None}
        markdown = render_markdown(summary)
        assert "No published number for this model on this benchmark." in markdown
