"""MiniCPM-V 2.6's published remote code, as the stand-in reproduces it, and how `local` copes.

One test (or two) per behaviour of the published code (see the stand-in's
docstring, 1-7): each shows the stand-in doing what the published code does,
and the backend handling it, so that removing the handling fails a test.
"""

from __future__ import annotations

import asyncio
import builtins
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from fakes import ClipQuestions
from huggingface_hub import constants
from PIL import Image
from transformers import AutoModel
from videos import write_video

import backends.minicpmv
from backends.local import LocalBackend
from backends.remote_code import ModelLoadError
from backends.standin_model import build_standin, never_ending
from harness.cli import main
from harness.run.runner import execute
from harness.run.settings import RunSettings
from harness.run.store import RunStore, read_records
from harness.types import Query


def local(model: Path | str, **options) -> LocalBackend:
    options.setdefault("max_new_tokens", 6)
    options.setdefault("device", "cpu")
    return LocalBackend(model=str(model), **options)


def ask(backend: LocalBackend, video: Path, prompt: str = "What is shown? A. bars B. dots"):
    return asyncio.run(backend.answer(Query("s1", str(video), prompt)))


def run_cli(*args: str, out: Path) -> int:
    return main(["run", "--backend", "local", *args, "--out", str(out), "--no-progress"])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# 1. `import torchvision`, never used.


def test_the_standin_like_the_published_code_will_not_load_without_torchvision(standin):
    with pytest.raises(ImportError, match=r"requires the following packages.*torchvision"):
        AutoModel.from_pretrained(standin, trust_remote_code=True)


def test_an_empty_torchvision_stands_in_while_loading_and_the_manifest_says_so(standin, video):
    backend = local(standin)
    assert "torchvision" not in sys.modules  # the stand-in module is gone again
    (fix,) = [w for w in backend.describe()["remote_code_workarounds"] if "torchvision" in w]
    assert "empty module stood in" in fix and "No module named 'torchvision'" in fix
    assert isinstance(ask(backend, video).text, str)


def test_an_importable_torchvision_is_used_as_it_is(standin, tmp_path, monkeypatch):
    package = tmp_path / "site" / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("MARK = 'the installed torchvision'\n")
    monkeypatch.syspath_prepend(str(package.parent))
    backend = local(standin)
    assert not any("torchvision" in w for w in backend.describe()["remote_code_workarounds"])
    assert sys.modules["torchvision"].MARK == "the installed torchvision"


# 2. `List` used, never imported: NameError on torch >= 2.7.


def test_the_standin_like_the_published_code_lacks_list_on_current_torch(standin, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    for name in [m for m in sys.modules if m.startswith(f"transformers_modules.{standin.name}.")]:
        monkeypatch.delitem(sys.modules, name)  # imported by earlier tests: import afresh
    with pytest.raises(NameError, match="name 'List' is not defined"):
        AutoModel.from_pretrained(standin, trust_remote_code=True)


def test_list_is_supplied_while_the_code_imports_and_recorded_on_every_load(standin):
    for _ in range(2):  # the second load finds the code imported already
        backend = local(standin)
        fixes = backend.describe()["remote_code_workarounds"]
        assert any(w.startswith("typing.List: supplied") for w in fixes), fixes
    assert not hasattr(builtins, "List")


# 3. chat() loads its own processor from `_name_or_path`, at no revision.

REPO = "vqa-harness/tiny-minicpmv"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def cached_snapshot(standin) -> str:
    """The stand-in as the only snapshot of a Hub repo in the (offline) cache: no refs/main."""
    snapshot = Path(constants.HF_HUB_CACHE) / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(standin, snapshot / "snapshots" / COMMIT)
    return REPO


def test_a_pinned_revision_holds_for_the_processor_too(cached_snapshot, video):
    backend = local(cached_snapshot, revision=COMMIT)
    answer = ask(backend, video)
    assert isinstance(answer.text, str)
    assert backend._model.model.processor is None  # chat() never loaded one of its own
    assert backend.describe()["commit"] == COMMIT
    # Left to itself, chat() asks for the processor at `main`, which is not cached.
    model, frames = backend._model.model, [Image.new("RGB", (32, 32))]
    with pytest.raises(OSError, match=r"offline|cannot find|connect"):
        model.chat(None, [{"role": "user", "content": [*frames, "Hi"]}], backend._model.tokenizer)


def test_a_model_without_a_processor_is_a_load_error(standin, tmp_path):
    copy = shutil.copytree(standin, tmp_path / "noprocessor")
    (copy / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError, match="noprocessor has no MiniCPM-V processor"):
        local(copy)


# 4. The processor cuts the ids at max_inp_length before pairing image markers.


@pytest.fixture(scope="module")
def wide_standin(tmp_path_factory) -> Path:
    """128 tokens per frame and no slicing: 64 frames take more than chat()'s 8192."""
    return build_standin(tmp_path_factory.mktemp("wide") / "model", query_num=128, image_size=256)


def test_a_cut_inside_image_placeholders_raises_in_the_standin(wide_standin):
    backend = local(wide_standin)
    frames = [Image.new("RGB", (64, 48), (i, i, i)) for i in range(64)]
    msgs = [{"role": "user", "content": [*frames, "Which frame is brightest?"]}]
    model, tokenizer = backend._model.model, backend._model.tokenizer
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        model.chat(None, msgs, tokenizer, processor=backend._model.processor, max_new_tokens=1)


def test_the_backend_raises_max_inp_length_so_64_wide_frames_and_the_question_fit(
    wide_standin, tmp_path
):
    clip = write_video(tmp_path / "long.mp4", 70, fps=10)
    backend = local(wide_standin, fps=10, max_new_tokens=2)
    answer = ask(backend, clip, "Which frame is brightest?")
    chat = backend._model.model.last_chat
    assert chat["frames"] == 64 and chat["input_length"] > 8192
    assert answer.meta["max_inp_length_raised"] and not chat["truncated"]
    ending = "Which frame is brightest?<|im_end|>\n<|im_start|>assistant\n"
    assert chat["prompt_reaching_model"].endswith(ending)


# 5. Answers are decoded without skipping special tokens.


def scripted_generate(backend: LocalBackend, text: str) -> None:
    """The language model "generates" `text` then `<|im_end|>`, whatever it is asked."""
    tokenizer = backend._model.tokenizer
    ids = tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
    backend._model.model.llm.generate = lambda *args, **kwargs: torch.tensor([ids])


def test_the_standin_like_the_published_code_keeps_special_tokens_and_drops_id_0(standin, video):
    backend = local(standin)
    scripted_generate(backend, "<ref>B</ref>!")  # "!" is id 0, as in Qwen2's vocabulary
    answer = ask(backend, video)
    assert answer.text == "<ref>B</ref>"
    assert answer.usage["output_tokens"] == 3  # <ref>, B, </ref>: what the answer was decoded from


def test_records_keep_the_text_as_produced_and_scores_read_it_without_markup(
    standin, video, tmp_path
):
    backend = local(standin)
    scripted_generate(backend, "<ref>A</ref><|reserved_special_token_0|>")
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    benchmark = ClipQuestions([str(video)])
    samples = list(benchmark.samples())
    asyncio.run(execute(backend, benchmark, samples, store, RunSettings(), show_progress=False))
    (record,) = read_records(store.records_path).records
    assert record.response == "<ref>A</ref><|reserved_special_token_0|>"
    assert record.score.correct and record.score.prediction == "A"
    assert record.score.rule.endswith(
        "(read with special-token text removed: <ref>, </ref>, <|reserved_special_token_0|>)"
    )


# 6. Beam search steps on after the best beam has ended.


def test_output_tokens_count_the_answer_and_decode_steps_the_forward_passes(standin, video):
    backend = local(standin, num_beams=3, max_new_tokens=8)
    never_ending(backend)  # no beam ends by itself ...
    end = backend._model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    passes = []

    def end_the_first_beam_at_the_third_token(module, args, output):
        passes.append(1)
        if len(passes) == 3:  # ... but the best one ends here, after two tokens
            output.logits[0, -1, end] = 1e4

    backend._model.model.llm.register_forward_hook(end_the_first_beam_at_the_third_token)
    answer = ask(backend, video)
    assert answer.usage["output_tokens"] == 2
    assert len(passes) == 8 and answer.usage["decode_steps"] == 7  # the other beams went on
    assert answer.timings["tpot"] == pytest.approx(answer.timings["decode"] / 7)


# 7. The vision tower runs eager attention unless flash-attention-2 is asked for.


def test_describe_reports_each_towers_attention_as_loaded(standin):
    backend = local(standin, attention="sdpa")
    model = backend._model.model
    assert model.vpm.config._attn_implementation == "eager"
    assert backend.describe()["attention"] == {"llm": "sdpa", "vision": "eager"}


# Load failures: one line naming the model, what failed and the fix, exit 2, before any sample.


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "import vqa_harness_missing_package",
            "its remote code needs vqa_harness_missing_package, not installed here: "
            "pip install vqa_harness_missing_package",
        ),
        ("UNDEFINED_NAME.attribute", "its remote code raised NameError: name 'UNDEFINED_NAME'"),
        ("raise RuntimeError('no such kernel')", "its remote code raised RuntimeError: no such"),
    ],
)
def test_remote_code_that_cannot_import_is_one_line(tmp_path, capsys, line, message):
    model = build_standin(tmp_path / "broken")
    modeling = model / "modeling_standin.py"
    modeling.write_text(f"{line}\n{modeling.read_text()}")
    assert run_cli("-B", f"model={model}", out=tmp_path / "runs") == 2
    error = one_error_line(capsys)
    assert str(model) in error and message in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("device", "cuda", "message"),
    [
        ("cuda", 0, "device cuda: CUDA is not available here"),
        ("cuda:1", 0, "device cuda:1: CUDA is not available here"),
        ("cuda:3", 2, "device cuda:3: this machine has 2 CUDA device(s), cuda:0 to cuda:1"),
        ("gpu0", 2, "device 'gpu0' is not one of auto, cpu, cuda, cuda:N"),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(
    standin, tmp_path, capsys, monkeypatch, device, cuda, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    assert run_cli("-B", f"model={standin}", "-B", f"device={device}", out=tmp_path) == 2
    assert f"cannot load {standin}: {message}" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_flash_attention_without_flash_attn_is_one_line(standin, tmp_path, capsys, monkeypatch):
    real_find_spec = backends.minicpmv.importlib.util.find_spec
    monkeypatch.setattr(
        backends.minicpmv.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "flash_attn" else real_find_spec(name, *a),
    )
    args = ("-B", f"model={standin}", "-B", "attention=flash_attention_2")
    assert run_cli(*args, out=tmp_path) == 2
    error = one_error_line(capsys)
    assert f"cannot load {standin}: attention flash_attention_2 needs the flash-attn" in error
    assert "pip install flash-attn --no-build-isolation, or -B attention=sdpa" in error
