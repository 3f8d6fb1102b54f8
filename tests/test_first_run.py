"""What a first run meets, as one line and exit 2, before any sample, in seconds.

Each failure names the thing, the cause and the fix: the Hub unreachable or offline
(one short attempt, no retries), a gated dataset without access, a repo or revision
that does not exist, model weights not in the cache, a device this machine lacks,
a missing fal or judge key. And everything cheap (options, the output directory,
the judge's key, a question file, categories) is checked before a backend is built:
the fakes here record whether they were, and whether the data was read.

The Hub is the emulator (`hub_emulator`), or a loopback port that refuses or
drops connections: nothing leaves this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from fakes import ScriptedBackend, TinyBenchmark
from hub_emulator import serving
from huggingface_hub import constants
from test_tempcompass import REPO, write_repo

from backends import minicpmv
from harness.cli import main
from harness.plugins import backends

TESTS = Path(__file__).parent
FAST = 5.0
"""Seconds a failure may take: retries took about 30."""
HUB_BENCHMARKS = {
    "videomme": "lmms-eval/Video-MME",
    "mvbench": "OpenGVLab/MVBench",
    "tempcompass": "lmms-eval/TempCompass",
    "nextqa": "lmms-eval/NExTQA",
    "activitynetqa": "lmms-eval/ActivityNetQA",
}
LOCAL = ["run", "--backend", "local", "--benchmark", "tiny"]
TEMPCOMPASS = ["run", "--backend", "scripted", "--benchmark", "tempcompass"]
SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")


# -- helpers ------------------------------------------------------------------------


def scripted(benchmark: str, out: Path, *extra: str) -> list[str]:
    """A run of `benchmark` with the scripted backend (which loads nothing) into `out`."""
    return ["run", "--backend", "scripted", "--benchmark", benchmark, *extra, "--out", str(out)]


def cli_error(*args: str, **env: str) -> tuple[str, float]:
    """The CLI in a real process, with `env` over an environment with no Hub settings,
    no keys and no fal login: its one error line, and how long it took to say it."""
    environ = {k: v for k, v in os.environ.items() if k not in (*SECRETS, "HF_HUB_OFFLINE")}
    environ |= {"HOME": "/nonexistent", **env}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(TESTS / "run_cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vqa-harness: error: ")
    return lines[0], elapsed


def error_line(capsys: pytest.CaptureFixture, *args: str) -> tuple[str, float]:
    """The CLI in this process: its one error line (exit 2), and how long it took."""
    capsys.readouterr()
    started = time.perf_counter()
    code = main(list(args))
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vqa-harness: error: ")
    return lines[0], elapsed


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dropping_port() -> Iterator[int]:
    """A loopback port whose server accepts each connection and closes it unanswered."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert not Path(constants.HF_TOKEN_PATH).exists()  # the tests' own HF_HOME


@pytest.fixture
def tempcompass(tmp_path: Path) -> Path:
    """TempCompass's fixture repo, as a folder the emulator serves."""
    write_repo(tmp_path / "repo")
    return tmp_path / "repo"


# -- the Hub: unreachable, offline, gated, missing ----------------------------------------


@pytest.mark.parametrize(("benchmark", "repo"), HUB_BENCHMARKS.items())
def test_an_unreachable_hub_is_one_line_at_once_for_every_hub_benchmark(
    benchmark, repo, refused_port, tmp_path
):
    endpoint = f"http://127.0.0.1:{refused_port}"
    line, seconds = cli_error(*scripted(benchmark, tmp_path), HF_ENDPOINT=endpoint)
    assert line == (
        f"vqa-harness: error: cannot reach the Hugging Face Hub at {endpoint} for dataset "
        f"{repo} (Connection refused): check the network and HF_ENDPOINT, or set "
        "HF_HUB_OFFLINE=1 to use the copy in the Hugging Face cache"
    )
    assert seconds < FAST
    assert list(tmp_path.iterdir()) == []


def test_a_hub_that_drops_connections_is_one_line_at_once(dropping_port, tmp_path):
    endpoint = f"http://127.0.0.1:{dropping_port}"
    line, seconds = cli_error(*scripted("videomme", tmp_path), HF_ENDPOINT=endpoint)
    assert f"Hugging Face Hub at {endpoint} for dataset lmms-eval/Video-MME" in line
    assert line.startswith("vqa-harness: error: cannot reach the ")
    assert line.endswith("or set HF_HUB_OFFLINE=1 to use the copy in the Hugging Face cache")
    assert seconds < FAST


def test_offline_data_not_in_the_cache_is_one_line_and_asks_nothing(refused_port, tmp_path):
    line, seconds = cli_error(
        *scripted("videomme", tmp_path),
        HF_HUB_OFFLINE="1",
        HF_ENDPOINT=f"http://127.0.0.1:{refused_port}",
        HF_HOME=str(tmp_path / "hf"),
    )
    assert line == (
        "vqa-harness: error: dataset lmms-eval/Video-MME (videomme/test) is not in the Hugging "
        "Face cache, and HF_HUB_OFFLINE is set: run once without HF_HUB_OFFLINE to download it"
    )
    assert seconds < FAST


def test_a_gated_dataset_without_a_login_says_how_to_log_in(
    tempcompass, tmp_path, monkeypatch, capsys, no_token
):
    gated = {REPO: {"hf_granted"}}
    with serving({REPO: tempcompass}, tmp_path / "cache", monkeypatch, gated=gated) as hub:
        line, seconds = error_line(
            capsys,
            *TEMPCOMPASS,
            "--out",
            str(tmp_path / "runs"),
        )
    assert line == (
        f"vqa-harness: error: dataset {REPO} is gated and you are not logged in to the Hugging "
        f"Face Hub: accept its terms at https://huggingface.co/datasets/{REPO}, then log in "
        "with `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
    )
    assert seconds < FAST
    assert not any("/resolve/" in url for _, url in hub.requests)  # no file was asked for


def test_a_gated_dataset_with_a_token_not_granted_says_to_accept_its_terms(
    tempcompass, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_TOKEN", "hf_someone_else")
    gated = {REPO: {"hf_granted"}}
    with serving({REPO: tempcompass}, tmp_path / "cache", monkeypatch, gated=gated):
        line, _ = error_line(
            capsys,
            *TEMPCOMPASS,
            "--out",
            str(tmp_path / "runs"),
        )
    assert line == (
        f"vqa-harness: error: dataset {REPO} is gated and your Hugging Face token has no access "
        f"to it: accept its terms at https://huggingface.co/datasets/{REPO} with that token's "
        "account (and wait for approval if it asks), or use another token (HF_TOKEN)"
    )


def test_a_gated_dataset_with_a_granted_token_runs(tempcompass, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    gated = {REPO: {"hf_granted"}}
    with serving({REPO: tempcompass}, tmp_path / "cache", monkeypatch, gated=gated) as hub:
        args = ["run", "--backend", "scripted", "--benchmark", "tempcompass", "--limit", "2"]
        assert main([*args, "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert any("/resolve/" in url for _, url in hub.requests)  # its files, with the token


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "repo=nobody/nothing",
            "dataset nobody/nothing is not on the Hugging Face Hub at https://huggingface.co, "
            "or is private: check the name (-S repo=OWNER/NAME); if it is private, log in with "
            "`hf auth login` (or `huggingface-cli login`) or set HF_TOKEN",
        ),
        (
            "revision=v9",
            f"dataset {REPO} has no revision 'v9' on the Hub: give a branch, tag or commit it "
            "has (-S revision=...)",
        ),
        (
            "repo=a/b/c",
            "'a/b/c' is not a Hub dataset id: give one as OWNER/NAME (-S repo=...)",
        ),
    ],
)
def test_a_repo_or_revision_the_hub_lacks_is_one_line(
    option, message, tempcompass, tmp_path, monkeypatch, capsys, no_token
):
    revisions = {REPO: {"main"}}
    with serving({REPO: tempcompass}, tmp_path / "cache", monkeypatch, revisions=revisions):
        line, seconds = error_line(
            capsys,
            *TEMPCOMPASS,
            "-S",
            option,
            "--out",
            str(tmp_path / "runs"),
        )
    assert line == f"vqa-harness: error: {message}"
    assert seconds < FAST


# -- the local backend: its model and device ----------------------------------------------


@pytest.fixture
def weights_loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Models whose weights `transformers` was asked to load, recorded and refused."""
    loaded: list[str] = []

    def from_pretrained(model: str, *args, **kwargs):
        loaded.append(model)
        raise AssertionError(f"{model} was loaded")

    monkeypatch.setattr(minicpmv.AutoModel, "from_pretrained", from_pretrained)
    return loaded


def test_model_weights_not_in_the_cache_offline_is_one_line(tmp_path, capsys, weights_loaded):
    assert constants.HF_HUB_OFFLINE  # the tests run offline, with an empty HF cache
    line, seconds = error_line(capsys, *LOCAL, "--out", str(tmp_path))
    assert line == (
        "vqa-harness: error: backend 'local': the weights of openbmb/MiniCPM-V-2_6 are not in "
        "the Hugging Face cache, and HF_HUB_OFFLINE is set: download them once with "
        "`hf download openbmb/MiniCPM-V-2_6` (or `huggingface-cli download`), or unset "
        "HF_HUB_OFFLINE"
    )
    assert seconds < FAST and weights_loaded == []


def test_a_model_revision_not_in_the_cache_offline_names_the_revision(tmp_path, capsys):
    line, _ = error_line(
        capsys,
        *LOCAL,
        "-B",
        "revision=abc123",
        "--out",
        str(tmp_path),
    )
    assert "the weights of openbmb/MiniCPM-V-2_6 at revision abc123 are not in the" in line
    assert "`hf download openbmb/MiniCPM-V-2_6 --revision abc123`" in line


def test_the_model_behind_an_unreachable_hub_is_one_line_at_once(
    refused_port, tmp_path, capsys, monkeypatch, weights_loaded
):
    endpoint = f"http://127.0.0.1:{refused_port}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    line, seconds = error_line(capsys, *LOCAL, "--out", str(tmp_path))
    assert line == (
        f"vqa-harness: error: backend 'local': cannot reach the Hugging Face Hub at {endpoint} "
        "for model openbmb/MiniCPM-V-2_6 (Connection refused): check the network and "
        "HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the copy in the Hugging Face cache"
    )
    assert seconds < FAST and weights_loaded == []


def test_a_model_the_hub_lacks_is_one_line(
    tempcompass, tmp_path, monkeypatch, capsys, weights_loaded, no_token
):
    with serving({REPO: tempcompass}, tmp_path / "cache", monkeypatch, models=("openbmb/x",)):
        line, seconds = error_line(
            capsys,
            *LOCAL,
            "-B",
            "model=nobody/nothing",
            "--out",
            str(tmp_path / "runs"),
        )
    assert line == (
        "vqa-harness: error: backend 'local': model nobody/nothing is not on the Hugging Face "
        "Hub at https://huggingface.co, or is private: check the name (-B model=OWNER/NAME); "
        "if it is private, log in with `hf auth login` (or `huggingface-cli login`) or set "
        "HF_TOKEN"
    )
    assert seconds < FAST and weights_loaded == []


def test_a_device_this_machine_lacks_is_one_line_before_the_data_is_read(
    standin, tmp_path, capsys, monkeypatch, weights_loaded
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    read = watch_samples(monkeypatch)
    line, seconds = error_line(
        capsys,
        *LOCAL,
        *["-B", f"model={standin}", "-B", "device=cuda", "--out", str(tmp_path)],
    )
    assert line == (
        f"vqa-harness: error: backend 'local': cannot load {standin}: device cuda: CUDA is not "
        f"available here (torch {torch.__version__}); use -B device=cpu, or a CUDA build of "
        "torch on a machine with a GPU"
    )
    assert seconds < FAST and weights_loaded == [] and read == []


# -- keys ---------------------------------------------------------------------------------


def test_no_fal_key_is_one_line(tmp_path):
    line, seconds = cli_error("run", "--backend", "fal", "--out", str(tmp_path))
    assert line == (
        "vqa-harness: error: backend 'fal' cannot run here: no fal credentials: set FAL_KEY "
        "(or FAL_KEY_ID and FAL_KEY_SECRET)"
    )
    assert seconds < FAST


# -- cheap checks first: nothing is built, nothing read ---------------------------------


@dataclass
class LoadingBackend(ScriptedBackend):
    """A backend whose building stands for loading a model: each build is recorded."""

    name: ClassVar[str] = "loading"
    built: ClassVar[list[str]] = []

    def __post_init__(self) -> None:
        LoadingBackend.built.append(self.reply)


def watch_samples(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each time a benchmark's samples are read (the tiny benchmark's)."""
    read: list[str] = []
    samples = TinyBenchmark.samples

    def recorded(self):
        read.append(self.name)
        return samples(self)

    monkeypatch.setattr(TinyBenchmark, "samples", recorded)
    return read


@pytest.fixture
def loading(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The `loading` backend registered; the list of its builds."""
    LoadingBackend.built.clear()
    backends.register(LoadingBackend)
    try:
        yield LoadingBackend.built
    finally:
        backends.unregister("loading")


RUN = ("run", "--backend", "loading", "--benchmark", "tiny")


def test_a_bad_out_fails_before_the_backend_is_built_or_the_data_read(
    loading, tmp_path, capsys, monkeypatch
):
    read = watch_samples(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line, seconds = error_line(capsys, *RUN, "--out", str(blocker / "runs"))
    assert f"cannot create run directory {blocker}/runs/" in line
    assert line.endswith(f": {blocker}: Not a directory; give --out a folder you can write in")
    assert loading == [] and read == [] and seconds < FAST


def test_an_existing_run_directory_fails_before_the_backend_is_built(loading, tmp_path, capsys):
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / "manifest.json").write_text("{}")
    line, _ = error_line(capsys, *RUN, "--out", str(tmp_path), "--run-id", "same")
    assert line.endswith(
        f"run directory {tmp_path / 'same'} already exists (use --resume {tmp_path / 'same'})"
    )
    assert loading == []


def test_a_bad_category_fails_before_the_backend_is_built(loading, tmp_path, capsys):
    line, seconds = error_line(capsys, *RUN, "--category", "nosuchcat", "--out", str(tmp_path))
    assert line == (
        "vqa-harness: error: unknown category 'nosuchcat' (known categories: 'cat0', 'cat1')"
    )
    assert loading == [] and seconds < FAST
    assert list(tmp_path.iterdir()) == []


def test_a_bad_category_with_the_local_model_fails_before_the_model_loads(
    standin, tmp_path, capsys, weights_loaded
):
    line, seconds = error_line(
        capsys,
        *LOCAL,
        *["-B", f"model={standin}", "-B", "device=cpu", "--category", "nosuchcat"],
        *["--out", str(tmp_path)],
    )
    assert "unknown category 'nosuchcat'" in line
    assert weights_loaded == [] and seconds < FAST


def test_no_judge_key_fails_before_the_backend_is_built_or_the_data_read(
    loading, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("JUDGE_API_KEY", raising=False)
    read = watch_samples(monkeypatch)
    line, _ = error_line(capsys, *RUN, "--judge-model", "gpt-4o-2024-08-06", "--out", str(tmp_path))
    assert line == (
        "vqa-harness: error: judge: no judge API key: set JUDGE_API_KEY to the API key of "
        "https://api.openai.com/v1, or name the variable that holds it with --judge-key-env"
    )
    assert loading == [] and read == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-B", "delay=soon"), "backend 'loading' option 'delay': 'soon' is not a valid float"),
        (("-S", "count=many"), "benchmark 'tiny' option 'count': 'many' is not a valid int"),
    ],
)
def test_bad_options_fail_before_the_backend_is_built(loading, tmp_path, capsys, args, message):
    line, _ = error_line(capsys, *RUN, *args, "--out", str(tmp_path))
    assert line == f"vqa-harness: error: {message}"
    assert loading == []


def test_a_missing_question_file_fails_before_the_backend_is_built(loading, tmp_path, capsys):
    line, _ = error_line(
        capsys,
        *["run", "--backend", "loading", "--benchmark"],
        f"manifest:{tmp_path}/nope.csv",
        "--out",
        str(tmp_path),
    )
    assert "nope.csv" in line
    assert loading == []


def test_a_recording_directory_in_use_fails_before_the_backend_is_built(loading, tmp_path, capsys):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "http.yaml").write_text("interactions: []\n")
    line, _ = error_line(capsys, *RUN, "--record", str(tmp_path / "rec"), "--out", str(tmp_path))
    assert line.endswith("http.yaml already exists; record into a new directory")
    assert loading == []


def test_with_every_check_passed_the_backend_is_built_once(loading, tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path), "--no-progress"]) == 0
    assert loading == ["The answer is A."]
