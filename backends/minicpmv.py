"""MiniCPM-V 2.6 through its own remote code: loading, the chat call, and its timing.

Everything here needs torch and transformers; `backends.local` imports this
module only when a local backend is built, so the package works without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from huggingface_hub import snapshot_download
from PIL import Image
from transformers import AutoModel, PretrainedConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module
from transformers.utils import cached_file

from backends.remote_code import ModelLoadError, first_line, load_remote_code
from harness.hub import check_repo, offline

DEFAULT_MAX_INP_LENGTH = 8192  # chat()'s default: longer inputs are cut, question and all
_TEMPLATE_TOKENS = 64  # role markers and newlines around the user content
_CUDA_DEVICE = re.compile(r"cuda(?::(\d+))?")


class GenerationStopped(Exception):
    """Raised inside generation to stop it (the sample was cancelled)."""


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    device: torch.device
    commit: str | None
    workarounds: list[str]
    """What was changed about the published code to load it, one line each."""

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def attention(self) -> dict[str, str]:
        """The attention implementation each tower runs (the vision tower chooses its own)."""
        return {
            "llm": self.model.llm.config._attn_implementation,
            "vision": self.model.vpm.config._attn_implementation,
        }


def choose_device(requested: str) -> torch.device:
    """`auto`: this process's GPU (`cuda:$LOCAL_RANK` under torchrun/accelerate), else CPU.

    A device this machine lacks, or a string torch does not read, is a `ValueError`.
    """
    if requested != "auto":
        return _existing_device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _existing_device(requested: str) -> torch.device:
    match = _CUDA_DEVICE.fullmatch(requested)
    if requested != "cpu" and match is None:
        raise ValueError(f"device {requested!r} is not one of auto, cpu, cuda, cuda:N")
    if match is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {requested}: CUDA is not available here (torch {torch.__version__}); "
            "use -B device=cpu, or a CUDA build of torch on a machine with a GPU"
        )
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        last = f"cuda:{count - 1}"
        raise ValueError(
            f"device {requested}: this machine has {count} CUDA device(s), cuda:0 to {last}"
        )
    return torch.device(requested)


def choose_attention(requested: str, device: torch.device) -> str:
    """`auto`: flash-attention-2 on CUDA when installed, else sdpa (OpenBMB: "no eager")."""
    flash_attn = importlib.util.find_spec("flash_attn") is not None
    if requested == "auto":
        return "flash_attention_2" if device.type == "cuda" and flash_attn else "sdpa"
    if requested == "flash_attention_2" and not flash_attn:
        raise ValueError(
            "attention flash_attention_2 needs the flash-attn package, not installed here: "
            "pip install flash-attn --no-build-isolation, or -B attention=sdpa"
        )
    if requested == "flash_attention_2" and device.type != "cuda":
        raise ValueError(f"attention flash_attention_2 runs on CUDA only, not on {device}")
    return requested


def load(
    model: str, revision: str | None, device: torch.device, dtype: torch.dtype, attention: str
) -> LoadedModel:
    """Load a MiniCPM-V 2.6 checkpoint as OpenBMB documents, or raise `ModelLoadError`.

    The processor is built here, from the same model and revision, and handed to
    every `chat()`: left to itself, chat() loads one on its first call from
    `config._name_or_path`, at no revision, inside the first sample's timing.
    """
    check_hub(model, revision)  # fails in one short request, not after retries
    config = _config_dict(model, revision)
    if "AutoModel" not in (config.get("auto_map") or {}):
        raise ModelLoadError(
            f"{model} does not carry MiniCPM-V remote code: its config.json has no "
            "auto_map for AutoModel (expected openbmb/MiniCPM-V-2_6 or a copy of it)"
        )
    if Path(model).is_dir() and not _has_weights(Path(model)):
        raise ModelLoadError(f"{model} holds no weights (no *.safetensors or *.bin files)")
    try:
        network, network_fixes = load_remote_code(
            lambda: AutoModel.from_pretrained(
                model,
                revision=revision,
                trust_remote_code=True,
                attn_implementation=attention,
                torch_dtype=dtype,
            ),
            model,
        )
        processor, processor_fixes = load_remote_code(
            lambda: _load_processor(model, revision), model
        )
        network = network.eval().to(device)
    except torch.OutOfMemoryError as exc:
        raise ModelLoadError(
            f"{model} does not fit on {device}: {first_line(exc)} "
            "(free the GPU, or use a GPU with more memory)"
        ) from None
    except OSError as exc:
        raise ModelLoadError(f"cannot load {model}: {first_line(exc)}") from None
    if not all(hasattr(network, name) for name in ("chat", "llm", "vpm")):
        raise ModelLoadError(f"{model} loaded, but has no chat(), llm and vpm: not MiniCPM-V 2.6")
    workarounds = list(dict.fromkeys(network_fixes + processor_fixes))
    return LoadedModel(network, processor, device, config.get("_commit_hash"), workarounds)


def slices_per_frame(processor: Any, size: tuple[int, int], max_slice_nums: int) -> int:
    """How many slices chat() cuts a frame of `size` into besides the whole frame (0: none),
    by the processor's own rule (`get_sliced_grid`, as 2.6's image processor names it)."""
    grid = processor.image_processor.get_sliced_grid(size, max_slice_nums)
    return int(grid[0] * grid[1]) if grid else 0


def to_images(frames: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(frame) for frame in frames]


def input_budget(
    config: PretrainedConfig, sizes: Sequence[tuple[int, int]], text_tokens: int, max_slices: int
) -> int:
    """Upper bound of the tokens chat() builds for these frames and text.

    Each frame is `<image>` + `query_num` placeholders + `</image>`, and, when
    it is larger than the slicing resolution, up to `max_slices` more groups
    like it; `use_image_id=False` adds no id tokens.
    """
    group = config.query_num + 2
    resolution = _slice_resolution(config)
    total = text_tokens + _TEMPLATE_TOKENS
    for width, height in sizes:
        sliced = max_slices > 1 and width * height > resolution**2
        total += group * (1 + max_slices) + max_slices + 1 if sliced else group + 1
    return total


class ChatTimer:
    """Times the language model inside `chat()` with forward hooks on `model.llm`.

    The first forward pass is the prefill (it ends with the first token); each
    later one is a decode step, which appends one token to every sequence still
    generated (every beam, under beam search). Everything from the call until
    the prefill starts (image slicing, tokenising, the vision tower) is
    preprocessing. Setting `stop` makes the next forward pass raise
    `GenerationStopped`.
    """

    def __init__(self, llm: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.stop = threading.Event()
        self._reset(0.0)
        llm.register_forward_pre_hook(self._before_forward)
        llm.register_forward_hook(self._after_forward)

    def start(self) -> None:
        self.stop.clear()
        self._reset(self._now())

    def finish(self) -> dict[str, float]:
        """Seconds since `start()`: `preprocess`, `prefill`, `decode`, and `tpot` = decode
        time per decode step, when there was one; `decode_steps` counts them."""
        end = self._now()
        first_start = self.first_start or end
        first_end = self.first_end or end
        decode_steps = max(self.steps - 1, 0)
        timings = {
            "preprocess": first_start - self.started,
            "prefill": first_end - first_start,
            "decode": end - first_end,
            "decode_steps": float(decode_steps),
        }
        if decode_steps:
            timings["tpot"] = timings["decode"] / decode_steps
        return timings

    def _reset(self, started: float) -> None:
        self.started = started
        self.first_start: float | None = None
        self.first_end: float | None = None
        self.steps = 0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _before_forward(self, module: torch.nn.Module, args: Any) -> None:
        if self.stop.is_set():
            raise GenerationStopped
        if self.first_start is None:
            self.first_start = self._now()

    def _after_forward(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.steps += 1
        if self.first_end is None:
            self.first_end = self._now()


def _load_processor(model: str, revision: str | None) -> Any:
    """The processor named by preprocessor_config.json's auto_map, at `revision`.

    Not `AutoProcessor`: transformers 4.51's looks for the processor's config
    at `main` whatever the revision, and where `main` is not cached (offline,
    only the pinned snapshot) it silently returns the bare tokenizer instead.
    """
    path = cached_file(
        model,
        "preprocessor_config.json",
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
    )
    auto_map = json.loads(Path(path).read_text()).get("auto_map", {}) if path else {}
    if "AutoProcessor" not in auto_map:
        raise ModelLoadError(
            f"{model} has no MiniCPM-V processor: no preprocessor_config.json naming an "
            "AutoProcessor in its auto_map"
        )
    processor_class: Any = get_class_from_dynamic_module(
        auto_map["AutoProcessor"], model, revision=revision
    )
    return processor_class.from_pretrained(model, revision=revision, trust_remote_code=True)


class AnswerTokens:
    """The tokenizer as handed to `chat()`, counting the tokens of the answer it decodes.

    2.6's `chat()` decodes the chosen sequence once, with this tokenizer, after
    dropping id-0 tokens and the final terminator: those ids are the answer's
    tokens (re-tokenising the text can count others: a byte-level token that is
    not valid UTF-8 on its own decodes to U+FFFD, three bytes).
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._decoded: int | None = None

    def decode(self, ids: Any, *args: Any, **kwargs: Any) -> str:
        self._decoded = len(ids)
        return str(self._tokenizer.decode(ids, *args, **kwargs))

    def count(self, text: str) -> int:
        """Tokens of the answer `text`: as decoded, else (code decoding otherwise) re-tokenised."""
        if self._decoded is not None:
            return self._decoded
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def check_directory(model: str) -> None:
    """Raise now if `model` names a directory that is missing or not a model with weights
    (a Hub id passes: `check_hub` checks those)."""
    directory = _local_directory(model)
    if directory is not None and not _has_weights(directory):
        raise ModelLoadError(f"{model} holds no weights (no *.safetensors or *.bin files)")


def check_hub(model: str, revision: str | None) -> None:
    """Raise now, loading nothing, if the Hub id `model` cannot be had: the Hub does not
    have it, will not let this machine read it, or cannot be reached
    (`harness.hub.check_repo`, one short request); or, with HF_HUB_OFFLINE set, its
    weights are not in the Hugging Face cache. A directory passes."""
    if _local_directory(model) is not None:
        return
    if not offline():
        check_repo(model, "model", revision, repo_flag="-B model", revision_flag="-B revision")
        return
    try:
        folder: str | None = snapshot_download(model, revision=revision, local_files_only=True)
    except (OSError, ValueError):  # LocalEntryNotFoundError: that revision was never fetched
        folder = None
    if folder is None or not _has_weights(Path(folder)):
        at = f" at revision {revision}" if revision else ""
        flag = f" --revision {revision}" if revision else ""
        raise ModelLoadError(
            f"the weights of {model}{at} are not in the Hugging Face cache, and "
            f"HF_HUB_OFFLINE is set: download them once with `hf download {model}{flag}` "
            "(or `huggingface-cli download`), or unset HF_HUB_OFFLINE"
        )


def _local_directory(model: str) -> Path | None:
    """`model` as a model directory; None for a Hub id. Neither is a `ModelLoadError`."""
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") != 1
    if looks_like_path and not path.exists():
        raise ModelLoadError(f"model {model!r}: no such directory, and not a Hub id (owner/name)")
    if not path.exists():
        return None
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{model} has no config.json: not a transformers model directory")
    return path


def _config_dict(model: str, revision: str | None) -> dict[str, Any]:
    _local_directory(model)
    try:
        config, _ = PretrainedConfig.get_config_dict(model, revision=revision)
    except OSError as exc:
        where = f"{model} (revision {revision})" if revision else model
        raise ModelLoadError(
            f"cannot get {where}: not in the Hugging Face cache and not downloadable here "
            f"({first_line(exc)})"
        ) from None
    return config


def _has_weights(directory: Path) -> bool:
    return any(directory.glob("*.safetensors")) or any(directory.glob("*.bin"))


def _slice_resolution(config: PretrainedConfig) -> int:
    slice_config = getattr(config, "slice_config", None)
    resolution = getattr(slice_config, "scale_resolution", None)
    return int(resolution if resolution is not None else getattr(config, "image_size", 448))


def library_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__}
