"""The local backend through transformers' real generation path, on the tiny stand-in, on CPU."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
from fakes import ClipQuestions
from PIL import Image
from transformers import Qwen2Config, Qwen2ForCausalLM
from videos import write_video

from backends.local import LocalBackend
from backends.standin_model import never_ending
from harness.bench import run_bench
from harness.cli import main
from harness.media.video import sample_frames
from harness.plugins import backends
from harness.registry import RegistryError
from harness.run.runner import execute
from harness.run.settings import RunSettings
from harness.run.store import RunStore, read_records
from harness.types import Answer, BackendError, Query

TIMINGS = ("frames", "preprocess", "prefill", "decode", "tpot")
"""The backend's own timings; the runner adds `total`, its wall time."""


def local(standin: Path, **options) -> LocalBackend:
    options.setdefault("max_new_tokens", 6)
    return LocalBackend(model=str(standin), device="cpu", **options)


def ask(backend: LocalBackend, video: Path, prompt: str = "What is shown? A. bars B. dots"):
    return asyncio.run(backend.answer(Query("s1", str(video), prompt)))


def timed_ask(backend: LocalBackend, video: Path) -> tuple[Answer, float]:
    """The answer, and the wall time it took."""
    started = time.perf_counter()
    answer = ask(backend, video)
    return answer, time.perf_counter() - started


def test_frames_prompt_and_settings_reach_the_model_as_openbmb_documents(standin, video):
    backend = local(standin)
    answer = ask(backend, video)
    chat = backend._model.model.last_chat
    expected = sample_frames(video, fps=1.0, max_frames=64)
    assert chat["frames"] == len(expected.indices) == 5
    digests = [hashlib.sha256(frame.tobytes()).hexdigest() for frame in expected.frames]
    assert chat["frame_digests"] == digests
    assert answer.meta["frame_indices"] == expected.indices
    assert chat["question"] == "What is shown? A. bars B. dots"
    assert chat["use_image_id"] is False and chat["max_slice_nums"] == 2
    assert chat["generation"] == {"num_beams": 1, "repetition_penalty": 1.0}  # greedy
    assert chat["max_new_tokens"] == 6 and not chat["truncated"]
    assert isinstance(answer.text, str)
    assert 1 <= answer.usage["output_tokens"] <= 6 and answer.usage["decode_steps"] <= 5
    # What the model saw: when each frame is (10 fps: index / 10), and its slices (2x1).
    assert answer.meta["frame_times_s"] == [i / 10 for i in expected.indices]
    assert chat["slices"] == [(2, 1)] * 5 and answer.meta["slices_per_frame"] == 2


def test_timings_are_filled_and_consistent(standin, video):
    answer, wall = timed_ask(local(standin), video)
    timings = answer.timings
    assert set(TIMINGS) <= set(timings) and "total" not in timings
    assert all(timings[name] >= 0 for name in TIMINGS)
    assert timings["prefill"] > 0 and timings["preprocess"] > 0
    assert timings["prefill"] + timings["decode"] <= wall
    assert timings["tpot"] == pytest.approx(timings["decode"] / answer.usage["decode_steps"])


def test_a_long_input_raises_max_inp_length_instead_of_losing_the_question(standin, video):
    backend = local(standin)
    question = "Which bar is white? " * 500  # ~10,000 byte-level tokens
    answer = ask(backend, video, question)
    chat = backend._model.model.last_chat
    assert answer.meta["max_inp_length_raised"] is True
    assert answer.meta["max_inp_length"] > 8192
    assert not chat["truncated"] and question in chat["prompt_reaching_model"]

    # What chat()'s default would have done: the question silently cut.
    images = [Image.fromarray(frame) for frame in sample_frames(video).frames]
    model, tokenizer = backend._model.model, backend._model.tokenizer
    content = [*images, question]
    model.chat(None, [{"role": "user", "content": content}], tokenizer, max_new_tokens=1)
    assert model.last_chat["truncated"] and question not in model.last_chat["prompt_reaching_model"]


def test_frames_are_decoded_once_per_video_for_many_questions(standin, video):
    backend = local(standin)

    async def three_questions():
        queries = [Query(f"s{i}", str(video), f"Question {i}?") for i in range(3)]
        return await asyncio.gather(*(backend.answer(q) for q in queries))

    answers = asyncio.run(three_questions())
    assert backend._frames.decodes == 1
    assert sorted(a.meta["frames_decoded_here"] for a in answers) == [False, False, True]
    assert len({tuple(a.meta["frame_indices"]) for a in answers}) == 1


def test_sampling_is_seeded_per_sample_and_described(standin, video):
    first = local(standin, sampling=True, max_new_tokens=8)
    again = local(standin, sampling=True, max_new_tokens=8)
    other_seed = local(standin, sampling=True, max_new_tokens=8, seed=1)
    text = ask(first, video).text
    assert text == ask(again, video).text
    assert text != ask(other_seed, video).text
    chat = first._model.model.last_chat
    assert chat["generation"] == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 100,
        "repetition_penalty": 1.05,
    }


def test_describe_names_every_setting(standin):
    backend = local(standin, num_beams=3)
    described = backend.describe()
    options = {f.name for f in dataclasses.fields(LocalBackend) if f.init}
    assert options <= set(described)
    assert described["generation"] == {"num_beams": 3, "repetition_penalty": 1.2}
    assert described["device"] == "cpu"
    assert described["attention"] == {"llm": "sdpa", "vision": "eager"}
    assert described["standin"] is True
    assert described["transformers"].startswith("4.")
    json.dumps(described)  # goes into the manifest as it is


def test_cuda_out_of_memory_fails_the_sample_with_advice_and_the_next_runs(
    standin, video, monkeypatch
):
    backend = local(standin)
    llm = backend._model.model.llm
    real_generate = llm.generate
    calls = []

    def generate_once_out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(llm, "generate", generate_once_out_of_memory)
    with pytest.raises(BackendError) as error:
        ask(backend, video)
    assert error.value.kind == "out_of_memory"
    assert "max_slice_nums=1" in error.value.message and "max_frames" in error.value.message
    assert isinstance(ask(backend, video).text, str)


def test_a_cancelled_sample_stops_generating(standin, video):
    backend = local(standin, max_new_tokens=5000)
    never_ending(backend)

    async def give_up():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await backend.answer(Query("s1", str(video), "Go on"))

    asyncio.run(give_up())
    started = time.monotonic()
    assert backend._gpu.acquire(timeout=5)  # the generating thread let go
    backend._gpu.release()
    assert time.monotonic() - started < 5
    assert backend._timer.steps < 5000


def test_an_unreadable_video_is_a_per_sample_error(standin, tmp_path):
    backend = local(standin)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(BackendError) as bad:
        ask(backend, broken)
    assert bad.value.kind == "bad_video" and "broken.mp4" in bad.value.message


def plain_qwen2(directory: Path) -> Path:
    config = Qwen2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    return directory


def without_weights(directory: Path, standin: Path) -> Path:
    directory.mkdir()
    for item in standin.iterdir():
        if item.suffix != ".safetensors":
            (directory / item.name).write_bytes(item.read_bytes())
    return directory


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("./no/such/dir", "no such directory, and not a Hub id"),
        ("openbmb/MiniCPM-V-2_6", "are not in the Hugging Face cache, and HF_HUB_OFFLINE is"),
        ("PLAIN", "does not carry MiniCPM-V remote code"),
        ("NOWEIGHTS", "holds no weights"),
    ],
)
def test_model_problems_are_clear_errors(standin, tmp_path, model, message):
    if model == "PLAIN":
        model = str(plain_qwen2(tmp_path / "qwen2"))
    elif model == "NOWEIGHTS":
        model = str(without_weights(tmp_path / "empty", standin))
    with pytest.raises(RegistryError, match=message):
        backends.create("local", model=model, device="cpu")


def test_a_cli_run_with_the_tiny_model_writes_complete_records(
    standin, tmp_path, synthetic_cache, capsys
):
    args = ["run", "--backend", "local", "-B", f"model={standin}", "-B", "device=cpu"]
    args += ["-B", "max_new_tokens=4", "-S", f"cache_dir={synthetic_cache}", "--limit", "4"]
    code = main([*args, "--out", str(tmp_path), "--run-id", "tiny", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    records = read_records(tmp_path / "tiny/records.jsonl").records
    assert len(records) == 4 and all(r.ok for r in records)
    for record in records:
        assert set(TIMINGS) - {"tpot"} | {"total"} <= set(record.timings)
        assert ("tpot" in record.timings) == (record.usage["decode_steps"] > 0)
        assert record.timings["prefill"] + record.timings["decode"] <= record.timings["total"]
        assert record.usage["output_tokens"] >= 1
    manifest = json.loads((tmp_path / "tiny/manifest.json").read_text())
    described = manifest["backend"]["describe"]
    assert described["standin"] is True
    assert described["generation"] == {"num_beams": 1, "repetition_penalty": 1.0}


def test_a_bad_model_path_fails_the_cli_once_before_any_work(tmp_path, capsys):
    code = main(["run", "--backend", "local", "-B", "model=/nowhere", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nowhere" in err[0] and "no such directory" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_bench_without_cuda_runs_the_demo_model_says_so_and_compares(
    tmp_path, synthetic_cache, monkeypatch
):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)  # fal replays its committed recording
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(synthetic_cache.parent))
    monkeypatch.chdir(tmp_path)  # the bench's recording and demo model are package data
    out = tmp_path / "bench"
    markdown = run_bench(["fal", "local"], "synthetic", out, limit=2, demo=True)
    top = markdown.split("| backend |")[0]
    demo_model = out / "demo-model"
    assert "**Not live:**" in top and f"ran the tiny demo model {demo_model}" in top
    assert "because CUDA is not available" in top
    (row,) = [line for line in markdown.splitlines() if line.startswith("| local |")]
    assert "| live |" in row and "| 0 |" in row  # no failed samples
    # It ends with the backends side by side, the first that ran as the baseline.
    compared = markdown.split("## Side by side: `synthetic` v1")[1]
    assert "over the **2** samples answered in every run, of 2" in compared
    assert "(baseline) | fal | replay |" in compared and "| local | live |" in compared
    html = out / "report.html"
    assert markdown.endswith(f"HTML report: {html}\n") and html.is_file()


@pytest.mark.gpu
def test_on_cuda_timings_are_synchronised_and_peak_memory_is_recorded(standin, video):
    backend = LocalBackend(model=str(standin), device="cuda", max_new_tokens=4)
    answer, wall = timed_ask(backend, video)
    assert answer.meta["peak_gpu_memory_bytes"] > 0
    assert answer.timings["prefill"] + answer.timings["decode"] <= wall


def test_shards_of_a_tiny_model_run_merge_into_the_unsharded_run(
    standin, tmp_path, synthetic_cache
):
    args = ["run", "--backend", "local", "-B", f"model={standin}", "-B", "device=cpu"]
    args += ["-B", "max_new_tokens=3", "-S", f"cache_dir={synthetic_cache}", "--limit", "6"]
    args += ["--no-progress"]
    assert main([*args, "--out", str(tmp_path / "whole"), "--run-id", "whole"]) == 0
    for index in range(2):
        shard = ["--shard", f"{index}/2", "--run-id", "part"]
        assert main([*args, *shard, "--out", str(tmp_path / "shards")]) == 0
    parts = sorted(str(p) for p in (tmp_path / "shards").iterdir())
    assert main(["merge", *parts, "--out", str(tmp_path), "--run-id", "merged"]) == 0

    def outcome(run_dir: Path) -> dict:
        records = read_records(run_dir / "records.jsonl").records
        return {r.sample_id: (r.response, r.score) for r in records}

    whole = outcome(tmp_path / "whole" / "whole")
    assert len(whole) == 6
    assert outcome(tmp_path / "merged") == whole


def test_the_runners_preparation_decodes_each_video_once_so_answers_find_frames_ready(
    standin, video, tmp_path
):
    other = write_video(tmp_path / "other.mp4", 30, fps=10)
    questions = [(clip, q) for clip in (video, other) for q in range(3)]  # as in Video-MME
    benchmark = ClipQuestions([str(clip) for clip, _ in questions])
    backend = local(standin)
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    settings = RunSettings(concurrency=1, decode_ahead=4)
    samples = list(benchmark.samples())
    asyncio.run(execute(backend, benchmark, samples, store, settings, show_progress=False))
    records = read_records(store.records_path).records
    assert len(records) == 6 and all(r.ok for r in records)
    assert backend._frames.decodes == 2  # once per video, by the runner's preparation
    assert not any(r.meta["frames_decoded_here"] for r in records)
    assert {r.meta["frames"] for r in records} == {5, 3}


def test_a_stand_in_answers_briefly_unless_asked_and_the_real_default_stays(standin):
    """The random-weight demo model defaults to 16 new tokens (its answers are noise);
    an explicit max_new_tokens is kept, and the real model's default is 2,048."""
    from backends.local import MAX_NEW_TOKENS, STANDIN_MAX_NEW_TOKENS

    brief = LocalBackend(model=str(standin), device="cpu")
    assert brief.describe()["max_new_tokens"] == STANDIN_MAX_NEW_TOKENS == 16
    assert local(standin, max_new_tokens=40).describe()["max_new_tokens"] == 40
    assert MAX_NEW_TOKENS == 2048
    assert LocalBackend.__dataclass_fields__["max_new_tokens"].default is None
