"""The command line: run, report, list, and one clear line for bad input."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

TESTS = Path(__file__).parent


def cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a real process (with the test doubles registered)."""
    return subprocess.run(
        [sys.executable, str(TESTS / "run_cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_writes_a_run_directory_that_report_renders(tmp_path, capsys):
    code = main(
        [
            "run",
            "--backend",
            "scripted",
            "--benchmark",
            "tiny",
            "-S",
            "count=6",
            "--out",
            str(tmp_path),
            "--run-id",
            "r1",
            "--no-progress",
        ]
    )
    assert code == 0
    run_dir = tmp_path / "r1"
    assert {p.name for p in run_dir.iterdir()} >= {
        "manifest.json",
        "records.jsonl",
        "summary.json",
        "report.md",
    }
    assert "accuracy 33.3% (2/6)" in capsys.readouterr().out

    assert main(["report", str(run_dir)]) == 0
    markdown = capsys.readouterr().out
    assert markdown == (run_dir / "report.md").read_text()
    assert "**33.3%** (2 correct of 6 samples" in markdown
    assert "| cat0 | 3 | 2 | 0 | 66.7% |" in markdown
    assert "| total |" in markdown
    summary = json.loads((run_dir / "summary.json").read_text())
    accuracy = summary["accuracy"]
    assert {key: accuracy[key] for key in ("value", "correct", "n")} == {
        "value": 2 / 6,
        "correct": 2,
        "n": 6,
    }
    assert accuracy["ci"][0] <= 2 / 6 <= accuracy["ci"][1]


def test_run_over_the_synthetic_suite(tmp_path, capsys, synthetic_cache):
    code = main(
        [
            "run",
            "--backend",
            "scripted",
            "-S",
            f"cache_dir={synthetic_cache}",
            "--out",
            str(tmp_path),
            "--run-id",
            "syn",
            "--no-progress",
            "--concurrency",
            "8",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "syn" / "summary.json").read_text())
    assert summary["benchmark"] == "synthetic"
    assert summary["samples"]["ok"] == summary["samples"]["planned"] >= 36
    assert len(summary["categories"]) >= 4
    assert main(["report", str(tmp_path / "syn")]) == 0
    assert "## Latency (seconds)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "concurrency", "decode_ahead"),
    [([], 3, 4), (["--concurrency", "2", "--decode-ahead", "0"], 2, 0)],
)
def test_run_settings_default_to_the_backends_own_concurrency(
    tmp_path, flags, concurrency, decode_ahead
):
    args = ["run", "--backend", "scripted", "--benchmark", "tiny", "--out", str(tmp_path)]
    assert main([*args, "--run-id", "r", "--no-progress", *flags]) == 0
    (session,) = json.loads((tmp_path / "r" / "manifest.json").read_text())["sessions"]
    assert session["settings"]["concurrency"] == concurrency  # the scripted backend's: 3
    assert session["settings"]["decode_ahead"] == decode_ahead


def test_list_shows_entries_and_their_options(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "scripted - Test double" in out
    assert "-B delay=float  (default: 0.0) seconds per answer" in out
    assert "synthetic v1" in out
    assert "-S seed=int  (default: 0)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--backend", "nope"],
            "unknown backend 'nope' (available: fal, local, openai, scripted)",
        ),
        (["run", "--backend", "scripted", "--benchmark", "nope"], "unknown benchmark 'nope'"),
        (
            ["run", "--backend", "scripted", "-B", "colour=red"],
            "backend 'scripted' has no option 'colour'",
        ),
        (["run", "--backend", "scripted", "-B", "delay=soon"], "'soon' is not a valid float"),
        (
            ["run", "--backend", "scripted", "-B", "delay"],
            "--backend-opt 'delay' is not of the form key=value",
        ),
        (
            ["run", "--backend", "scripted", "--concurrency", "0"],
            "argument --concurrency: must be at least 1",
        ),
        (
            ["run", "--backend", "scripted", "--decode-ahead", "-1"],
            "argument --decode-ahead: must be 0 or more, got -1",
        ),
        (["run", "--benchmark", "tiny"], "--backend is required"),
        (["run", "--resume", "nowhere"], "nowhere is not a run directory"),
        (
            ["run", "--backend", "scripted", "--retry-failed"],
            "--retry-failed only makes sense with --resume",
        ),
        (["report", "nowhere"], "nowhere is not a run directory"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vqa-harness: error: ")
    assert message in lines[0]


def test_unwritable_output_directory_is_one_clear_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = cli(
        "run", "--backend", "scripted", "--benchmark", "tiny", "--out", str(blocker / "runs")
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"vqa-harness: error: cannot create run directory {blocker}/runs/")
    assert line.endswith(f": {blocker}: Not a directory; give --out a folder you can write in")


def test_existing_run_directory_is_not_overwritten(tmp_path):
    args = (
        "run",
        "--backend",
        "scripted",
        "--benchmark",
        "tiny",
        "--out",
        str(tmp_path),
        "--run-id",
        "same",
        "--no-progress",
    )
    assert cli(*args).returncode == 0
    again = cli(*args)
    assert again.returncode == 2
    assert "already exists (use --resume" in again.stderr


def test_python_dash_m_harness_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "harness", "list"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "synthetic v1" in result.stdout


def test_every_error_a_user_can_meet_derives_from_one_root():
    from backends.remote_code import ModelLoadError
    from benchmarks.hub import HubError
    from harness.analysis.compare import CompareError
    from harness.analysis.gate import GateError
    from harness.errors import HarnessError, UsageError
    from harness.hub import HubAccessError
    from harness.media.video import VideoError
    from harness.registry import RegistryError
    from harness.run.merge import MergeError
    from harness.run.recording import RecordingError
    from harness.run.selection import SelectionError
    from harness.run.store import RunDirError
    from harness.scoring.judge import JudgeError
    from harness.types import BackendError

    errors = [ModelLoadError, HubError, CompareError, GateError, UsageError, VideoError]
    errors += [RegistryError, MergeError, RecordingError, SelectionError, RunDirError]
    errors += [JudgeError, BackendError, HubAccessError]
    assert all(issubclass(error, HarnessError) for error in errors)
    assert not any(issubclass(error, ValueError) for error in errors)


def test_a_bug_prints_its_traceback_and_says_so(monkeypatch, capsys):
    def broken(args):
        raise KeyError("oops")

    monkeypatch.setattr("harness.cli.cmd_list", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == "vqa-harness: internal error, a bug: KeyError: 'oops'"


def test_version_is_the_package_version_and_the_checkouts_commit():
    """From this checkout, as git itself describes it; from a copy that is not one (an
    sdist, say), the version alone."""
    root = TESTS.parent
    expected = f"vqa-harness {importlib.metadata.version('vqa-harness')}"
    if (root / ".git").exists():

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
            ).stdout.strip()

        changed = git("status", "--porcelain", "--untracked-files=no")
        expected += f" (git {git('rev-parse', 'HEAD')[:7]}{'+dirty' if changed else ''})"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "--version"], capture_output=True, text=True, cwd=root
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, expected + "\n", "")


@pytest.mark.parametrize(
    ("git", "line"),
    [
        (None, "vqa-harness 0.1.0"),
        ({"commit": "3159cf1d3179b2d4", "dirty": False}, "vqa-harness 0.1.0 (git 3159cf1)"),
        ({"commit": "3159cf1d3179b2d4", "dirty": True}, "vqa-harness 0.1.0 (git 3159cf1+dirty)"),
    ],
)
def test_version_line_says_the_commit_only_from_a_checkout(monkeypatch, capsys, git, line):
    monkeypatch.setattr("importlib.metadata.version", {"vqa-harness": "0.1.0"}.__getitem__)
    monkeypatch.setattr("harness.run.environment.git_state", lambda: git)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert (stop.value.code, capsys.readouterr().out) == (0, line + "\n")
