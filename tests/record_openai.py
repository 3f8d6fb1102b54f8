"""Record the `openai` backend's replay set of the synthetic suite (`nox -s record`).

Against the vLLM emulator in `vllm_emulator.py` (no server is reachable from the
machines that record), at the base URL the backend's bench stand-in replays with;
the cassette's metadata says so. `nox -s bench` replays it when no server is named
in $VQA_HARNESS_OPENAI_BASE_URL.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from vllm_emulator import VLLMEmulator

from backends.openai_compat import RECORDED_BASE_URL, REPLAY_SETS
from harness.run.recording import http_recording
from harness.run.session import RunSpec, execute_run, start_run
from harness.run.settings import RunSettings

REPLAY_SET = REPLAY_SETS["synthetic"]
EMULATOR_SOURCE = (
    "emulator (tests/vllm_emulator.py, vLLM's OpenAI-compatible server): "
    "answers are stand-ins, not the model's"
)


def record_replay_set(
    directory: Path, runs: Path, *, limit: int | None = None, options: dict | None = None
) -> Path:
    """Record one `openai` run over the synthetic suite into `directory`; return the run dir."""
    backend_options = {"base_url": RECORDED_BASE_URL, **(options or {})}
    spec = RunSpec("openai", "synthetic", backend_options, limit=limit)
    with (
        VLLMEmulator(base_url=RECORDED_BASE_URL).installed(),
        http_recording("record", directory, source=EMULATOR_SOURCE) as recording,
    ):
        ready = start_run(spec, runs, recording=recording)
        asyncio.run(execute_run(ready, RunSettings(concurrency=8), show_progress=False))
    return ready.store.path


def main() -> int:
    from harness.plugins import backends

    if "openai" not in backends.names():  # before the package is reinstalled
        backends.add("openai", "backends.openai_compat:OpenAIBackend")
    shutil.rmtree(REPLAY_SET, ignore_errors=True)
    run_dir = record_replay_set(REPLAY_SET, Path("runs") / "record")
    print(f"recorded {REPLAY_SET} (emulator); run: {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
