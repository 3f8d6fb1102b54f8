"""Dataset repos that stay put: the `repo` option, and the commit a run records and keeps to.

TempCompass's fixture repo (see test_tempcompass) is served by the Hub emulator,
whose commit id hashes the repo's files, so adding a file moves `main`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_emulator import loaded, serving
from test_tempcompass import REPO, write_repo

from benchmarks.hub import HubDataset
from harness.cli import main
from harness.plugins import benchmarks as registry

OLD_REPO = "lmms-lab/TempCompass"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    write_repo(tmp_path / "repo")
    with serving({REPO: tmp_path / "repo"}, tmp_path / "cache", monkeypatch) as emulator:
        yield emulator


def run(out: Path, *extra: str) -> Path:
    """A run of TempCompass into `out`; its run directory."""
    args = ["run", "--backend", "scripted", "--benchmark", "tempcompass", "--limit", "4"]
    assert main([*args, "--out", str(out), *extra, "--no-progress"]) == 0
    [run_dir] = out.iterdir()
    return run_dir


def recorded(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["data"]


def move_main(tmp_path: Path) -> None:
    (tmp_path / "repo" / "NOTES.md").write_text("a new commit\n")


def refused(capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run the CLI expecting its one-line error (exit 2); return that line."""
    capsys.readouterr()
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("name", "repo"),
    [
        ("videomme", "lmms-eval/Video-MME"),
        ("videomme-subtitles", "lmms-eval/Video-MME"),
        ("nextqa", "lmms-eval/NExTQA"),
        ("activitynetqa", "lmms-eval/ActivityNetQA"),
        ("tempcompass", "lmms-eval/TempCompass"),
        ("mvbench", "OpenGVLab/MVBench"),
    ],
)
def test_every_hub_adapter_has_a_repo_option_defaulting_to_the_new_id(name, repo):
    assert registry.create(name).repo == repo
    assert registry.create(name, repo="someone/mirror").repo == "someone/mirror"


def test_the_old_id_still_reads_through_the_repo_option(tmp_path, monkeypatch):
    write_repo(tmp_path / "repo")
    with serving({OLD_REPO: tmp_path / "repo"}, tmp_path / "cache", monkeypatch) as hub:
        benchmark, samples = loaded("tempcompass", repo=OLD_REPO)
        assert len(samples) == 7
        assert benchmark.data_revisions() == {OLD_REPO: hub.sha(OLD_REPO)}
    assert hub.requests and not any(REPO in url for _, url in hub.requests)


def test_a_run_records_the_commit_and_resumes_only_on_it(hub, tmp_path, capsys):
    run_dir = run(tmp_path / "runs")
    commit = hub.sha(REPO)
    assert recorded(run_dir) == {REPO: commit}
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0  # the same commit
    move_main(tmp_path)
    line = refused(capsys, "run", "--resume", str(run_dir), "--no-progress")
    assert line == (
        f"vqa-harness: error: dataset {REPO} is now at commit {hub.sha(REPO)}, "
        f"but {run_dir} was run on {commit}; start a new run"
    )


def test_a_pinned_commit_is_recorded_and_read(hub, tmp_path):
    commit = hub.sha(REPO)
    move_main(tmp_path)  # the emulator serves any revision; the pin is what is recorded
    run_dir = run(tmp_path / "runs", "-S", f"revision={commit}")
    assert recorded(run_dir) == {REPO: commit}
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0


def test_a_commit_that_cannot_be_told_is_recorded_as_unknown(hub, tmp_path, monkeypatch):
    """Offline with nothing cached, say: the run goes on, and a resume has nothing to refuse."""
    with monkeypatch.context() as patched:
        patched.setattr(HubDataset, "commit", lambda self: None)
        run_dir = run(tmp_path / "runs")
    assert recorded(run_dir) == {REPO: None}
    move_main(tmp_path)
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0


def test_merge_keeps_the_commit_and_refuses_shards_on_two(hub, tmp_path, capsys):
    first = run(tmp_path / "a", "--shard", "0/2")
    second = run(tmp_path / "b", "--shard", "1/2")
    merged = tmp_path / "merged"
    assert main(["merge", str(first), str(second), "--out", str(merged), "--run-id", "m"]) == 0
    assert recorded(merged / "m") == {REPO: hub.sha(REPO)}
    commit = hub.sha(REPO)
    move_main(tmp_path)
    moved = run(tmp_path / "c", "--shard", "1/2")
    line = refused(capsys, "merge", str(first), str(moved), "--out", str(tmp_path / "no"))
    assert line == (
        f"vqa-harness: error: {first} and {moved} are not shards of one run: "
        f"dataset {REPO} commit {commit} vs {hub.sha(REPO)}"
    )
    assert not (tmp_path / "no").exists()
