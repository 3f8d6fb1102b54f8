"""Re-record the committed fal cassettes (`nox -s record`).

Against the real service when FAL_KEY is set, otherwise against the protocol
emulator in `fal_emulator.py`; every cassette's metadata says which. Records:
- the replay set of the synthetic suite that `nox -s bench` replays when
  FAL_KEY is absent (`backends/recordings/fal-synthetic/`, package data), and its summary,
  the baseline `test_fal_regression.py` gates its replay against
  (`tests/baselines/fal-synthetic-summary.json`);
- the per-test cassettes of `test_fal_cassettes.py` (pytest-recording);
- the per-test cassettes of `test_judge.py`, always against its OpenAI-compatible emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from unittest.mock import patch

from fal_emulator import FalEmulator

from backends.fal import REPLAY_SETS
from harness.analysis.summary import summarize_run
from harness.files import write_json_atomic
from harness.run.recording import http_recording
from harness.run.session import RunSpec, execute_run, start_run
from harness.run.settings import RunSettings

TESTS = Path(__file__).resolve().parent
REPLAY_SET = REPLAY_SETS["synthetic"]
BASELINE = TESTS / "baselines" / "fal-synthetic-summary.json"
EMULATOR_SOURCE = "emulator (tests/fal_emulator.py): answers are stand-ins, not the model's"
LIVE_SOURCE = "live fal service"


def guessing_reply(arguments: dict) -> str:
    """The emulator's stand-in answer: a letter chosen by hashing the prompt."""
    letter = "ABCD"[hashlib.sha256(arguments["prompt"].encode()).digest()[0] % 4]
    return f"The answer is {letter}."


def live() -> bool:
    return bool(os.environ.get("FAL_KEY") or os.environ.get("FAL_KEY_ID"))


def record_replay_set(directory: Path, runs: Path, *, limit: int | None = None) -> Path:
    """Record one fal run over the synthetic suite into `directory`; return the run dir."""
    emulator = None if live() else FalEmulator(reply=guessing_reply)
    source = LIVE_SOURCE if emulator is None else EMULATOR_SOURCE
    with (
        emulator.installed() if emulator else nullcontext(),
        # fal-client insists on a key; the emulator's must not leak into the environment,
        # where it would make later recordings (the pytest subprocess) look live.
        nullcontext() if emulator is None else patch.dict(os.environ, FAL_KEY="emulator-key"),
        http_recording("record", directory, source=source) as recording,
    ):
        ready = start_run(RunSpec("fal", "synthetic", limit=limit), runs, recording=recording)
        asyncio.run(execute_run(ready, RunSettings(concurrency=8)))
    return ready.store.path


def write_baseline(run_dir: Path, path: Path = BASELINE) -> None:
    """The run's summary, computed afresh, as the baseline a replay of it is gated against."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, summarize_run(run_dir).to_dict())


def main() -> int:
    shutil.rmtree(REPLAY_SET, ignore_errors=True)
    run_dir = record_replay_set(REPLAY_SET, Path("runs") / "record")
    write_baseline(run_dir)
    print(f"recorded {REPLAY_SET} ({'live' if live() else 'emulator'}); run: {run_dir}")
    print(f"wrote its summary to {BASELINE}")
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            str(TESTS / "test_fal_cassettes.py"),
            str(TESTS / "test_judge.py"),
            "--record-mode=rewrite",
            "-q",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
