"""What a run's manifest, and `--version`, say of the harness's own git checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.run.environment import SOURCE_ROOT, git_state


def git(where: Path, *args: str) -> str:
    command = ["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def checkout(root: Path) -> str:
    """A git repository at `root` holding harness/cli.py, committed: its commit."""
    (root / "harness").mkdir(parents=True)
    (root / "harness" / "cli.py").write_text("# one\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return git(root, "rev-parse", "HEAD")


def test_a_checkout_gives_its_commit_and_whether_tracked_files_changed(tmp_path):
    commit = checkout(tmp_path)
    (tmp_path / "notes.txt").write_text("untracked files are not changes\n")
    assert git_state(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "harness" / "cli.py").write_text("# two\n")
    assert git_state(tmp_path) == {"commit": commit, "dirty": True}


def test_a_copy_inside_another_repository_is_no_checkout(tmp_path):
    """An installed copy (a virtual environment inside some project's repository) must not
    report that project's commit as its own."""
    checkout(tmp_path)
    site_packages = tmp_path / ".venv" / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    assert git_state(site_packages) is None


def test_outside_any_repository_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) is None


def test_the_source_root_is_the_directory_holding_the_harness():
    assert (SOURCE_ROOT / "harness" / "run" / "environment.py").is_file()
