"""`compare`: runs joined on sample id, paired statistics by hand, costs, the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import chromium, visit

from backends.fal import FalBackend
from backends.local import LocalBackend
from harness.analysis.compare import agreement, compare_runs
from harness.analysis.stats import paired_bootstrap_ci
from harness.cli import main
from harness.report.compare_tables import render_markdown
from harness.report.html import render_html
from harness.run.manifest import Manifest, Session
from harness.run.store import RunStore, read_records
from harness.types import ErrorInfo, Record, Score

HOSTILE = '<img src="https://example.invalid/x.png" onerror="alert(1)">'


def answered(sample, video, category, correct, prediction, *, total=1.0, warmup=False, **more):
    return Record(
        sample_id=sample,
        status="ok",
        category=category,
        video=video,
        prompt="p",
        target="A",
        response=f"The answer is {prediction}." if prediction else "I cannot tell.",
        score=Score(correct=correct, prediction=prediction),
        timings={"total": total, **more},
        warmup=warmup,
    )


def failed(sample):
    return Record(
        sample_id=sample,
        status="failed",
        category="c1",
        video="v9",
        prompt="p",
        target="A",
        error=ErrorInfo("validation_error", "rejected"),
    )


def write_run(path, records, *, backend="scripted", benchmark=("synthetic", "1"), **manifest):
    name, version = benchmark
    store = RunStore.create(
        path,
        Manifest.from_dict(
            {
                "run_id": path.name,
                "mode": "live",
                "spec": {"backend": backend, "benchmark": name},
                "backend": {"name": backend},
                "benchmark": {"name": name, "version": version},
                "sessions": [],
                **manifest,
            }
        ),
    )
    for record in records:
        store.append(record)
    store.close()
    return path


# (sample, video, category, baseline right, its choice, other right, its choice)
PAIRS = [
    ("s1", "v1", "c1", True, "A", True, "A"),
    ("s2", "v1", "c1", True, "B", False, "C"),
    ("s3", "v2", "c1", True, "C", False, "A"),
    ("s4", "v2", "c2", False, "A", False, "A"),
    ("s5", "v3", "c2", True, "B", False, None),
    ("s6", "v3", "c2", True, "D", False, "B"),
    ("s7", "v4", "c2", True, "C", True, "C"),
]


@pytest.fixture
def pair(tmp_path):
    """Baseline A and run B: 7 samples answered by both, 1 missing from B, 1 failed in each."""
    a = [
        answered(s, v, c, ok, pick, total=float(i), upload=0.5)
        for i, (s, v, c, ok, pick, _, _) in enumerate(PAIRS, start=1)
    ]
    b = [
        answered(s, v, c, ok, pick, total=2.0 * i, warmup=i == 1)
        for i, (s, v, c, _, _, ok, pick) in enumerate(PAIRS, start=1)
    ]
    b[0] = answered("s1", "v1", "c1", True, "A", total=100.0, warmup=True)
    a += [answered("s8", "v5", "c1", True, "A"), answered("s9", "v5", "c1", True, "A")]
    a += [failed("s10")]
    b += [failed("s9"), answered("s10", "v5", "c1", True, "A")]
    return write_run(tmp_path / "a", a), write_run(tmp_path / "b", b)


def test_paired_statistics_match_hand_computed_values(pair):
    comparison = compare_runs(pair)
    assert comparison.joined == [f"s{i}" for i in range(1, 8)]
    assert comparison.seen == 10
    cover_a, cover_b = comparison.coverage
    assert (cover_a.recorded, cover_a.missing, cover_a.failed) == (10, 0, 1)
    assert (cover_b.recorded, cover_b.missing, cover_b.failed) == (9, 1, 1)  # s8; s9

    (only,) = comparison.pairs
    acc = only.accuracy
    assert (acc.n, acc.baseline, acc.other) == (7, 6 / 7, 2 / 7)
    assert acc.delta == pytest.approx(-4 / 7)
    assert (acc.only_baseline, acc.only_other) == (4, 0)
    assert acc.p_value == pytest.approx(2 / 16)  # 2 * P[Binomial(4, 1/2) <= 0]
    first = [1.0, 1, 1, 0, 1, 1, 1]
    second = [1.0, 0, 0, 0, 0, 0, 1]
    videos = ["v1", "v1", "v2", "v2", "v3", "v3", "v4"]
    assert acc.interval == paired_bootstrap_ci(first, second, videos)
    assert -1 <= acc.interval[0] <= acc.delta <= acc.interval[1] <= 0

    # same choice: s1, s4, s7; s5's unreadable answer agrees with nothing
    assert (only.agreement.choice_n, only.agreement.choice_same) == (7, 3)
    assert only.agreement.open_n == 0

    # B's s1 is a warm-up: left out. A: totals 1..7; B: 4, 6, ..., 14. `upload` is A's only.
    (key,) = only.latency
    latency = only.latency[key]
    assert key == "total"
    assert (latency.baseline_p50, latency.other_p50) == (4.0, 9.0)
    assert (latency.baseline_p90, latency.other_p90) == pytest.approx((6.4, 13.0))
    assert latency.p50_ratio == 2.25
    assert latency.p90_ratio == pytest.approx(13.0 / 6.4)

    c1, c2 = comparison.categories
    assert (c1.name, c1.n, c1.accuracy) == ("c1", 3, [1.0, 1 / 3])
    assert (c2.name, c2.n, c2.accuracy) == ("c2", 4, [0.75, 0.25])
    assert c1.delta(1) == pytest.approx(-2 / 3)
    assert c1.intervals[0] == (1.0, 1.0)  # every c1 answer of A is right


def test_latency_leaves_out_each_sessions_cold_start(tmp_path):
    records = [answered(f"s{i}", "v1", "c1", True, "A", total=float(i)) for i in range(1, 6)]
    a = write_run(tmp_path / "a", records)
    cold = {"started_at": 0.0, "cold_start": {"sample_id": "s5", "started_at": 0.0}}
    b = write_run(tmp_path / "b", records, sessions=[cold])
    comparison = compare_runs([a, b])
    assert [r.sample_id for r in comparison.timed(1)] == ["s1", "s2", "s3", "s4"]
    latency = comparison.pairs[0].latency["total"]
    assert (latency.baseline_p50, latency.other_p50) == (3.0, 2.5)


def test_the_markdown_shows_the_join_the_delta_and_the_categories(pair):
    markdown = render_markdown(compare_runs(pair))
    assert "over the **7** samples answered in every run, of 10" in markdown
    assert "| a (baseline) | scripted | live | 10 | 0 | 1 |" in markdown
    assert "| b | scripted | live | 9 | 1 | 1 |" in markdown
    (row,) = [line for line in markdown.splitlines() if line.startswith("| b | scripted | 28.6%")]
    assert "| -57.1 pp [" in row and "| 4 | 0 | 0.125 | 42.9% (3/7) |" in row
    assert "| b | total | 9.000 | 4.000 | 2.25x | 13.000 | 6.400 | 2.03x |" in markdown
    assert "| c1 | 3 | 100.0% | 33.3% | -66.7 pp |" in markdown
    assert "Not estimated: no prices given" in markdown


def test_open_ended_agreement_is_the_mean_wer_between_the_two_answers():
    def said(sample, text):
        return Record(
            sample_id=sample,
            status="ok",
            category="c",
            video="v",
            prompt="p",
            target="red ball",
            response=text,
            score=Score(correct=False, prediction=text, metrics={"wer": 0.0}),
        )

    baseline = [said("1", "a red ball"), said("2", "two dogs")]
    other = [said("1", "The red ball."), said("2", "three cats")]
    result = agreement(baseline, other)
    assert (result.open_n, result.open_same, result.choice_n) == (2, 1, 0)
    assert result.open_mean_wer == pytest.approx(0.5)  # 0 (same words) and 1 (both replaced)


def test_fal_cost_bills_inference_seconds_and_falls_back_to_total():
    records = [
        answered("1", "v", "c", True, "A", total=9.0, inference=2.0),
        answered("2", "v", "c", True, "A", total=9.0, inference=4.0),
        answered("3", "v", "c", True, "A", total=6.0),
        failed("4"),
    ]
    cost = FalBackend.estimate_cost(records, [], 0.0005)
    assert cost.usd_per_1000 == pytest.approx(1000 * 4.0 * 0.0005)  # mean (2 + 4 + 6) / 3 s
    assert "1 of 3 without `inference`: `total` used" in cost.basis


def test_gpu_cost_is_the_sessions_gpu_time_per_sample_written():
    sessions = [
        Session(started_at=0.0, finished_at=1800.0, written=100),
        Session(started_at=5000.0, finished_at=6800.0, written=50),
        Session(started_at=7000.0, written=0),  # still running: not counted
    ]
    cost = LocalBackend.estimate_cost
    assert cost([], sessions, 2.5).usd_per_1000 == pytest.approx(1000 * 2.5 / 150)
    # A merged run's shards ran at once, each on its own GPU: their times add up.
    shards = [Session(started_at=0.0, finished_at=3600.0, written=100)] * 2
    assert cost([], shards, 2.0).usd_per_1000 == pytest.approx(1000 * 2 * 2.0 / 200)
    assert cost([], [], 2.0).usd_per_1000 is None


def test_cost_per_backend_from_the_manifest(tmp_path, capsys):
    records = [answered("s1", "v1", "c1", True, "A", total=3.0, inference=2.0)]
    fal = write_run(tmp_path / "fal", records, backend="fal")
    session = {"started_at": 0.0, "finished_at": 360.0, "written": 1}
    local = write_run(tmp_path / "local", records, backend="local", sessions=[session])
    assert main(["compare", str(fal), str(local), "--price", "fal=0.001"]) == 0
    out = capsys.readouterr().out
    # 1000 samples x 2 s x $0.001/s
    assert "| fal (baseline) | fal | 2.00 | mean 2.000 s of fal inference" in out
    assert "| local | local | n/a | no GPU price given |" in out
    assert main(["compare", str(fal), str(local), "--price", "local=3"]) == 0
    assert "| local | local | 300.00 | 360.0 GPU-seconds for 1 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (("tiny", "1"), "is benchmark tiny v1 but"),
        (("synthetic", "2"), "is benchmark synthetic v2 but"),
    ],
)
def test_runs_of_another_benchmark_or_version_are_refused(tmp_path, capsys, other, message):
    records = [answered("s1", "v1", "c1", True, "A")]
    a = write_run(tmp_path / "a", records)
    b = write_run(tmp_path / "b", records, benchmark=other)
    assert main(["compare", str(a), str(b)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vqa-harness: error: ") and message in line
    assert "only runs of one benchmark version can be compared" in line
    assert not (tmp_path / "report.html").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    a = str(write_run(tmp_path / "a", [answered("s1", "v1", "c1", True, "A")]))
    unwritable = str(tmp_path / "no" / "such" / "report.html")
    for args in ([a, str(tmp_path / "nowhere")], [a, a, "--html", unwritable]):
        assert main(["compare", *args]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("vqa-harness: error: "), args
    for args in ([a], [a, a, "--price", "local=-1"]):
        with pytest.raises(SystemExit) as stop:
            main(["compare", *args])
        assert stop.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("vqa-harness: error: "), args


def test_runs_without_a_sample_in_common_still_compare(tmp_path):
    a = write_run(tmp_path / "a", [answered("s1", "v1", "c1", True, "A")])
    b = write_run(tmp_path / "b", [failed("s1"), answered("s2", "v2", "c1", True, "A")])
    comparison = compare_runs([a, b])
    assert comparison.joined == [] and comparison.pairs[0].accuracy.delta is None
    assert "| b | scripted | n/a | n/a | 0 | 0 | 1 |" in render_markdown(comparison)
    page = render_html(comparison)
    assert 'id="latency-cdf-total"' in page and page.count(">no data<") == 3


def test_the_html_escapes_what_records_and_manifests_say(tmp_path):
    records = [answered("s1", "v1", HOSTILE, True, "A")]
    a = write_run(tmp_path / "a", records, run_id=HOSTILE)
    b = write_run(tmp_path / "b", records)
    page = render_html(compare_runs([a, b]))
    assert "<img" not in page and "&lt;img src=&quot;https://example.invalid" in page


def synthetic_run(out: Path, run_id: str, cache: Path, *options: str) -> Path:
    args = ["run", "--backend", "scripted", "-S", f"cache_dir={cache}", "--out", str(out)]
    assert main([*args, "--run-id", run_id, "--no-progress", *options]) == 0
    return out / run_id


def test_compare_two_synthetic_runs_renders_in_a_headless_browser(
    tmp_path, capsys, synthetic_cache
):
    a = synthetic_run(tmp_path, "says-a", synthetic_cache, "-B", "delay=0.002")
    first = read_records(a / "records.jsonl").records[0].sample_id
    b_options = ["-B", "reply=The answer is B.", "-B", f"fail={first}", "--sample", "40"]
    b = synthetic_run(tmp_path, "says-b", synthetic_cache, *b_options)
    capsys.readouterr()

    assert main(["compare", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    html = tmp_path / "report.html"  # next to the first run
    assert captured.err.strip().endswith(f"HTML report: {html}")
    markdown = captured.out
    assert "# Side by side: `synthetic` v1" in markdown
    assert "over the **39** samples answered in every run, of 63" in markdown
    assert "| says-b | scripted | live | 40 | 23 | 1 |" in markdown
    assert "| says-b | scripted |" in markdown.split("## Accuracy and agreement")[1]
    assert "| says-b | total |" in markdown and "| color_order |" in markdown
    summary = json.loads((b / "summary.json").read_text())
    assert summary["samples"]["failed"] == 1

    with chromium() as browser, visit(browser, html) as (page, seen):
        assert page.title() == "Side by side: synthetic v1"
        assert page.locator("table#comparison tbody tr").count() == 2
        assert page.locator("table#categories tbody tr").count() == 4
        plots = {
            "latency-cdf-total": "Latency CDF: total",
            "latency-cdf-inference": "Latency CDF: inference",
            "category-accuracy": "Accuracy by category (95% cluster-bootstrap intervals)",
            "agreement": "Agreement with the baseline",
        }
        for plot_id, title in plots.items():
            svg = page.locator(f"svg#{plot_id}")
            assert svg.locator(":scope > title").text_content() == title
            assert svg.bounding_box()["width"] > 300, plot_id
        assert page.locator("svg#latency-cdf-total polyline").count() == 2
        assert page.locator("svg#category-accuracy rect[fill]").count() >= 8  # 4 categories x 2
        assert seen.errors == [] and seen.external == []


def test_the_browser_check_catches_errors_and_requests_that_leave_the_page(tmp_path):
    page_path = tmp_path / "bad.html"
    page_path.write_text(
        "<!DOCTYPE html><title>bad</title><img src='https://example.invalid/x.png'>"
        "<script>console.error('boom'); undefined_function();</script>"
    )
    with chromium() as browser, visit(browser, page_path) as (_, seen):
        assert seen.external == ["https://example.invalid/x.png"]
        assert "console: boom" in seen.errors
        assert any(e.startswith("page: ") and "undefined_function" in e for e in seen.errors)
