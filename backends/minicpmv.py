"""MiniCPM-V 2.6 through its own remote code: loading, the chat call, and its timing.

Everything here needs torch and transformers; `backends.local` imports this
module only when a local backend is built, so the package works without them.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoModel, AutoTokenizer, PretrainedConfig

DEFAULT_MAX_INP_LENGTH = 8192  # chat()'s default: longer inputs are cut, question and all
_TEMPLATE_TOKENS = 64  # role markers and newlines around the user content


class ModelLoadError(ValueError):
    """The model cannot be loaded: bad path, missing weights, wrong code, no memory."""


class GenerationStopped(Exception):
    """Raised inside generation to stop it (the sample was cancelled)."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: torch.device
    commit: str | None


def choose_device(requested: str) -> torch.device:
    """`auto`: this process's GPU (`cuda:$LOCAL_RANK` under torchrun/accelerate), else CPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    warnings.warn(
        "CUDA is not available: the local backend runs on the CPU, which is far slower",
        RuntimeWarning,
        stacklevel=3,
    )
    return torch.device("cpu")


def choose_attention(requested: str, device: torch.device) -> str:
    """`auto`: flash-attention-2 on CUDA when installed, else sdpa (OpenBMB: "no eager")."""
    if requested != "auto":
        return requested
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load(
    model: str, revision: str | None, device: torch.device, dtype: torch.dtype, attention: str
) -> LoadedModel:
    """Load a MiniCPM-V 2.6 checkpoint as OpenBMB documents, or raise `ModelLoadError`."""
    config = _config_dict(model, revision)
    if "AutoModel" not in (config.get("auto_map") or {}):
        raise ModelLoadError(
            f"{model} does not carry MiniCPM-V remote code: its config.json has no "
            "auto_map for AutoModel (expected openbmb/MiniCPM-V-2_6 or a copy of it)"
        )
    if Path(model).is_dir() and not _has_weights(Path(model)):
        raise ModelLoadError(f"{model} holds no weights (no *.safetensors or *.bin files)")
    try:
        network = AutoModel.from_pretrained(
            model,
            revision=revision,
            trust_remote_code=True,
            attn_implementation=attention,
            torch_dtype=dtype,
        )
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=True)
        network = network.eval().to(device)
    except torch.OutOfMemoryError as exc:
        raise ModelLoadError(
            f"{model} does not fit on {device}: {_first_line(exc)} "
            "(free the GPU, or use a GPU with more memory)"
        ) from None
    except OSError as exc:
        raise ModelLoadError(f"cannot load {model}: {_first_line(exc)}") from None
    if not callable(getattr(network, "chat", None)) or not hasattr(network, "llm"):
        raise ModelLoadError(f"{model} loaded, but has no chat() and llm: not MiniCPM-V 2.6 code")
    return LoadedModel(network, tokenizer, device, config.get("_commit_hash"))


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
    later one decodes one token. Everything from the call until the prefill
    starts (image slicing, tokenising, the vision tower) is preprocessing.
    Setting `stop` makes the next forward pass raise `GenerationStopped`.
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

    def finish(self) -> dict[str, float | int]:
        """Timings of the call since `start()`, in seconds, and the generation steps."""
        end = self._now()
        first_start = self.first_start or end
        first_end = self.first_end or end
        timings: dict[str, float | int] = {
            "preprocess": first_start - self.started,
            "prefill": first_end - first_start,
            "decode": end - first_end,
            "output_tokens": self.steps,
        }
        if self.steps > 1:
            timings["tpot"] = timings["decode"] / (self.steps - 1)
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


def _config_dict(model: str, revision: str | None) -> dict[str, Any]:
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") != 1
    if looks_like_path and not path.exists():
        raise ModelLoadError(f"model {model!r}: no such directory, and not a Hub id (owner/name)")
    if path.exists() and not (path / "config.json").is_file():
        raise ModelLoadError(f"{model} has no config.json: not a transformers model directory")
    try:
        config, _ = PretrainedConfig.get_config_dict(model, revision=revision)
    except OSError as exc:
        where = f"{model} (revision {revision})" if revision else model
        raise ModelLoadError(
            f"cannot get {where}: not in the Hugging Face cache and not downloadable here "
            f"({_first_line(exc)})"
        ) from None
    return config


def _has_weights(directory: Path) -> bool:
    return any(directory.glob("*.safetensors")) or any(directory.glob("*.bin"))


def _slice_resolution(config: PretrainedConfig) -> int:
    slice_config = getattr(config, "slice_config", None)
    resolution = getattr(slice_config, "scale_resolution", None)
    return int(resolution or getattr(config, "image_size", 448))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def library_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__}
