"""A disk that fills up mid-run: one line naming the file, the manifest says how the
session ended, the records are whole lines, and the resume line finishes the run.

Two ways to make the kernel refuse a write, both through the real CLI in a subprocess:
`RLIMIT_FSIZE` (`ulimit -f`) caps every file's size, so `records.jsonl` is refused with
EFBIG, which the harness meets on the same path as ENOSPC; and a 64 KiB tmpfs mounted in
a private mount namespace (`unshare`) fills for real (ENOSPC on every file, the
manifest's too). That needs root or unprivileged user namespaces; without them that
test is skipped and says why."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.run.directory import Run
from harness.run.store import read_records

TESTS = Path(__file__).parent
SAMPLES = 150


def cli(*args: str) -> list[str]:
    return [sys.executable, str(TESTS / "run_cli.py"), *args]


def new_run(out: Path) -> list[str]:
    backend = ["--backend", "scripted", "--benchmark", "tiny", "-S", f"count={SAMPLES}"]
    return cli("run", *backend, "--out", str(out), "--run-id", "run", "--no-progress")


def check_failed_session(run_dir: Path, stderr: str, written_in: Path, problem: str) -> None:
    """What a session the disk stopped leaves: the one line naming `records.jsonl` (as
    written in `written_in`), the resume line, whole lines, the manifest saying so."""
    records = written_in / "run" / "records.jsonl"
    assert stderr.splitlines()[1:] == [
        f"vqa-harness: error: cannot write {records}: {problem}",
        f"resume with: vqa-harness run --resume {written_in / 'run'}",
    ]
    log = read_records(run_dir / "records.jsonl")
    assert log.skipped == [] and 0 < len(log.records) < SAMPLES
    (session,) = Run.open(run_dir).manifest.sessions
    assert session.status == "failed" and session.written == len(log.records)
    assert session.reason == f"cannot write {records}: {problem}"
    assert sorted(path.name for path in run_dir.iterdir()) == [
        ".lock",
        "manifest.json",
        "records.jsonl",
    ]


def resume_to_the_end(run_dir: Path) -> None:
    done = subprocess.run(
        cli("run", "--resume", str(run_dir), "--no-progress"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    log = read_records(run_dir / "records.jsonl")
    assert Counter(r.sample_id for r in log.records) == {f"tiny/{i:03d}": 1 for i in range(SAMPLES)}
    assert Run.open(run_dir).manifest.status == "completed"


def test_a_file_size_limit_stops_the_run_with_one_line_and_it_resumes(tmp_path):
    """Before: three chained tracebacks, exit 1, and no reason in the manifest."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    failed = subprocess.run(
        new_run(tmp_path), capture_output=True, text=True, preexec_fn=limit_file_size
    )
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr
    check_failed_session(tmp_path / "run", failed.stderr, tmp_path, "File too large")
    resume_to_the_end(tmp_path / "run")


FILL_THE_DISK = """
mount -t tmpfs -o size=64k tmpfs "$DISK" || exit 0
echo mounted
"$@" 2> "$OUT/run.err"
echo $? > "$OUT/run.code"
cp -a "$DISK/run" "$OUT/run"
head -c 1000000 /dev/zero > "$DISK/filler"
"$PYTHON" "$CLI" report "$DISK/run" > /dev/null 2> "$OUT/report.err"
echo $? > "$OUT/report.code"
"""


def test_a_full_disk_stops_the_run_with_one_line_the_manifest_says_so_and_it_resumes(
    tmp_path,
):
    """A 64 KiB disk, filled by the run itself. Before, the manifest stayed `running`:
    writing it needed room the records had taken."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1) to mount a private tmpfs")
    namespace = ["--mount"] if os.geteuid() == 0 else ["--mount", "--map-root-user"]
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    env = {**os.environ, "DISK": str(disk), "OUT": str(out)}
    env.update(PYTHON=sys.executable, CLI=str(TESTS / "run_cli.py"))
    shell = [unshare, *namespace, "sh", "-c", FILL_THE_DISK, "sh", *new_run(disk)]
    filled = subprocess.run(shell, capture_output=True, text=True, env=env)
    if "mounted" not in filled.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {filled.stderr.strip()}")

    stderr = (out / "run.err").read_text()
    assert (out / "run.code").read_text().strip() == "2", stderr
    assert "Traceback" not in stderr
    check_failed_session(out / "run", stderr, disk, "No space left on device")
    report = (out / "report.err").read_text()
    assert (out / "report.code").read_text().strip() == "2", report
    assert (
        report
        == f"vqa-harness: error: cannot write {disk}/run/summary.json: No space left on device\n"
    )
    resume_to_the_end(out / "run")
    assert json.loads((out / "run" / "manifest.json").read_text())["sessions"][0]["status"] == (
        "failed"
    )
