"""The `openai` backend against the vLLM emulator: frame modes, timings, faults, replicas,
recording, cost and the bench."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from key_scan import JUDGE_CANARY, key_like
from vllm_emulator import VLLMEmulator, vllm_frame_indices

from backends.openai_compat import REPLAY_SETS, OpenAIBackend, ServerError
from harness.cli import main
from harness.media.video import probe, sample_indices
from harness.plugins import backends
from harness.run.runner import _by
from harness.types import BackendError, Query, Record

ROOT = Path(__file__).resolve().parents[1]
URL = "http://localhost:8000/v1"


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """The `openai` entry point, for a test venv installed before it existed."""
    if "openai" not in backends.names():
        backends.add("openai", "backends.openai_compat:OpenAIBackend")


@pytest.fixture
def emulator():
    with VLLMEmulator(base_url=URL).installed() as emulator:
        yield emulator


@pytest.fixture
def clip(synthetic_cache):
    from benchmarks.synthetic import SyntheticSuite

    suite = SyntheticSuite(cache_dir=synthetic_cache)
    sample = next(iter(suite.samples()))
    return sample.video


def ask(backend: OpenAIBackend, video: str, prompt: str = "Which colour? A. red B. blue"):
    async def go():
        try:
            return await backend.answer(Query("s1", video, prompt))
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_recipe_frames_are_locals_indices_sent_as_one_jpeg_frame_list(emulator, clip):
    answer = ask(OpenAIBackend(), clip)
    info = probe(clip)
    expected = sample_indices(info.frame_count, info.fps)
    assert answer.meta["frame_indices"] == expected and answer.meta["frames"] == len(expected)
    assert answer.meta["encoded_bytes"] > 0 and answer.meta["frame_size"] == [256, 256]
    (received,) = emulator.received
    assert received.videos == [{"kind": "frames", "frames": len(expected), "size": (256, 256)}]
    assert answer.text.startswith("The answer is ")
    assert set(answer.timings) == {"ttft", "decode", "tpot", "inference", "encode"}
    assert answer.usage["output_tokens"] == 4
    assert answer.usage["input_tokens"] == 64 * len(expected) + 6  # frames + prompt words


def test_images_mode_sends_the_same_frames_as_image_parts(emulator, clip):
    answer = ask(OpenAIBackend(frames="images"), clip)
    (received,) = emulator.received
    assert received.videos == [] and len(received.images) == answer.meta["frames"]


def test_server_mode_sends_the_file_and_the_server_samples_it(emulator, clip):
    answer = ask(OpenAIBackend(frames="server", num_frames=8), clip)
    assert answer.meta["frames"].startswith("chosen by the server")
    (received,) = emulator.received
    (video,) = received.videos
    info = probe(clip)
    assert video["kind"] == "data" and video["indices"] == vllm_frame_indices(
        info.frame_count, info.duration, 8, -1
    )
    assert received.body["media_io_kwargs"] == {"video": {"num_frames": 8}}


def test_file_urls_need_the_servers_allowed_path(clip):
    with VLLMEmulator(allowed_local_media_path=str(Path(clip).parent)).installed() as emulator:
        ask(OpenAIBackend(frames="server", video_input="file"), clip)
        assert emulator.received[0].videos[0]["kind"] == "file"
    with VLLMEmulator().installed(), pytest.raises(BackendError) as failure:
        ask(OpenAIBackend(frames="server", video_input="file"), clip)
    assert failure.value.kind == "bad_request"
    assert "--allowed-local-media-path" in failure.value.message


def test_non_streaming_mode_has_usage_but_no_token_times(emulator, clip):
    answer = ask(OpenAIBackend(stream=False), clip)
    assert set(answer.timings) == {"inference", "encode"}
    assert answer.usage["output_tokens"] == 4 and answer.meta["finish_reason"] == "stop"


def test_describe_names_the_served_model_and_server_version_never_the_key(monkeypatch, clip):
    monkeypatch.setenv("MY_VLLM_KEY", JUDGE_CANARY)
    with VLLMEmulator(api_key=JUDGE_CANARY).installed():
        backend = OpenAIBackend(api_key_env="MY_VLLM_KEY", temperature=0.0, seed=7)
        described = backend.describe()
        assert ask(backend, clip).text
    assert described["model"] == "openbmb/MiniCPM-V-2_6"
    assert described["server_version"] == "0.11.0" and described["seed"] == 7
    assert JUDGE_CANARY not in json.dumps(described)


def test_a_wrong_key_or_no_server_is_one_line_before_any_sample(monkeypatch, tmp_path, capsys):
    with VLLMEmulator(api_key="right").installed(), pytest.raises(ServerError) as refused:
        OpenAIBackend()
    assert "refused the key (HTTP 401)" in str(refused.value)
    args = ["run", "--backend", "openai", "-B", "base_url=http://127.0.0.1:9/v1"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "cannot reach the server at http://127.0.0.1:9/v1" in line
    assert list(tmp_path.iterdir()) == []


def test_rate_limits_and_server_errors_are_retried_and_counted(emulator, clip):
    emulator.inject("rate_limit", retry_after=0)
    emulator.inject("server_error")
    answer = ask(OpenAIBackend(), clip)
    assert answer.meta["retries"] == 2 and answer.text


def test_errors_past_the_retries_fail_the_sample_with_the_servers_message(clip):
    with VLLMEmulator(max_model_len=1000).installed(), pytest.raises(BackendError) as failure:
        ask(OpenAIBackend(), clip)
    assert failure.value.kind == "bad_request" and failure.value.details["status_code"] == 400
    assert failure.value.message.startswith("This model's maximum context length is 1000")
    with VLLMEmulator().installed() as emulator, pytest.raises(BackendError) as failure:
        emulator.inject("server_error", times=2)
        ask(OpenAIBackend(max_retries=1), clip)
    assert failure.value.kind == "server_error" and failure.value.details["retries"] == 1


def test_a_stream_cut_mid_answer_fails_the_sample(emulator, clip):
    emulator.inject("stream_cut", after=2)
    with pytest.raises(BackendError) as failure:
        ask(OpenAIBackend(), clip)
    assert failure.value.kind == "stream_cut"


def test_the_deadline_closes_a_slow_stream(emulator, clip):
    emulator.inject("slow_first_token", delay=30)
    backend = OpenAIBackend()

    async def go():
        try:
            end = asyncio.get_running_loop().time() + 0.5  # the runner's sample deadline
            return await _by(end, backend.answer(Query("s1", clip, "Which?")), 0.5, "no answer")
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as failure:
        asyncio.run(go())
    assert failure.value.kind == "deadline" and emulator.in_flight == 0


def test_replicas_share_the_requests_and_each_record_names_its_own(tmp_path, synthetic_cache):
    urls = "http://gpu-a:8000/v1,http://gpu-b:8000/v1"
    with VLLMEmulator().installed() as emulator:
        args = ["run", "--backend", "openai", "-B", f"base_url={urls}", "--concurrency", "4"]
        args += ["-S", f"cache_dir={synthetic_cache}", "--limit", "8", "--run-id", "r"]
        assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    records = [json.loads(line) for line in (tmp_path / "r" / "records.jsonl").open()]
    assert {r["meta"]["replica"] for r in records} == set(urls.split(","))
    assert set(emulator.hosts) == {"gpu-a", "gpu-b"}


def test_replica_by_rank_pins_a_shard_to_one_replica(monkeypatch, emulator):
    monkeypatch.setenv("RANK", "3")
    backend = OpenAIBackend(base_url="http://a:8000/v1,http://b:8000/v1", replica_by_rank=True)
    assert [r["url"] for r in backend.describe()["replicas"]] == ["http://b:8000/v1"]


def test_a_recording_holds_no_frames_and_no_key_and_replays_offline(
    tmp_path, monkeypatch, synthetic_cache
):
    monkeypatch.setenv("MY_VLLM_KEY", JUDGE_CANARY)
    args = ["run", "--backend", "openai", "-B", "api_key_env=MY_VLLM_KEY", "--limit", "3"]
    args += ["-S", f"cache_dir={synthetic_cache}", "--no-progress", "--out", str(tmp_path)]
    with VLLMEmulator(api_key=JUDGE_CANARY).installed():
        assert main([*args, "--record", str(tmp_path / "rec"), "--run-id", "live"]) == 0
    cassette = (tmp_path / "rec" / "http.yaml").read_text()
    assert "base64," not in cassette and JUDGE_CANARY not in cassette and not key_like(cassette)
    flat = " ".join(cassette.split())  # YAML folds long lines
    assert "<data:video/jpeg, " in flat and ", not recorded>" in flat
    monkeypatch.delenv("MY_VLLM_KEY")
    assert main([*args, "--replay", str(tmp_path / "rec"), "--run-id", "again"]) == 0

    def answers(run: str) -> list:
        lines = (tmp_path / run / "records.jsonl").read_text().splitlines()
        return sorted((r["sample_id"], r["response"]) for r in map(json.loads, lines))

    assert answers("again") == answers("live") and len(answers("live")) == 3


def test_the_committed_recording_replays_and_says_it_was_made_against_the_emulator(
    tmp_path, monkeypatch, synthetic_cache
):
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(synthetic_cache.parent))
    monkeypatch.delenv("VQA_HARNESS_OPENAI_BASE_URL", raising=False)
    from harness.bench import run_bench

    monkeypatch.chdir(tmp_path)
    markdown = run_bench(["fal", "openai", "local"], "synthetic", tmp_path / "bench", limit=4)
    assert "replayed from the committed recording backends/recordings/openai-synthetic" in markdown
    assert "tests/vllm_emulator.py" in markdown
    (row,) = [line for line in markdown.splitlines() if line.startswith("| openai |")]
    assert "| replay |" in row and "| 0 |" in row
    committed = (REPLAY_SETS["synthetic"] / "http.yaml").read_text()
    assert "base64," not in committed and key_like(committed) == []


def test_cost_is_the_replicas_gpu_time_per_sample():
    from harness.run.manifest import Session

    def record(replica: str) -> Record:
        meta = {"replica": replica, "gpus_per_replica": 2}
        return Record("s", "ok", "c", "v", "p", "A", meta=meta)

    records = [record("http://a/v1"), record("http://b/v1")]
    sessions = [Session(started_at=0.0, finished_at=3600.0, written=1000)]
    cost = OpenAIBackend.estimate_cost(records, sessions, 2.0)
    assert cost.usd_per_1000 == pytest.approx(8.0)  # 4 GPU-hours at $2 for 1,000 samples
    assert "2 replica(s), 4 GPU(s)" in cost.basis
    assert OpenAIBackend.estimate_cost(records, sessions, None).usd_per_1000 is None


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
