"""A run of a public benchmark on the Hub emulator, answered with one fixed reply by the
scripted backend, for tests of the official scoring beside ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.cli import main


def run_with_reply(
    tmp_path: Path, benchmark: str, reply: str, *args: str
) -> tuple[dict[str, Any], str]:
    """Run `benchmark` with every answer `reply`; its summary.json and report.md."""
    out = tmp_path / "runs"
    command = ["run", "--backend", "scripted", "-B", f"reply={reply}", "--benchmark", benchmark]
    command += [*args, "--out", str(out), "--run-id", "official", "--no-progress"]
    assert main(command) == 0
    run = out / "official"
    return json.loads((run / "summary.json").read_text()), (run / "report.md").read_text()
