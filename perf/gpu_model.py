"""The model `gpu.py` measures: MiniCPM-V 2.6's image slicing, a stand-in built from
transformers' classes, and OpenBMB's own code loaded with random weights.

Both paths answer one question through `chat(frames, new_tokens)` with the LLM as
`model.llm`, so that `backends.minicpmv.ChatTimer` times them alike.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # the snapshot writer and its dimensions: backends.standin_model

from backends.standin_model import PUBLISHED, Dims  # noqa: E402

QUESTION = (
    "What happens in this video, from the first frame to the last? "
    "Answer in one sentence, naming the main objects and how they move."
)
MAX_INP_LENGTH = 32768  # above the ~12,800 tokens of 64 sliced frames: nothing is cut


# config.json's fields the snapshot writer does not vary.
ROPE_THETA = 1e6
MAX_POSITIONS = 32768
VISION_BATCH = 16  # vision_batch_size: images per pass of the vision tower

FULL = PUBLISHED
TINY = Dims(
    hidden_size=128,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate_size=256,
    vocab_size=1024,
    query_num=8,
    image_size=448,
    vision_hidden_size=32,
    vision_layers=2,
    vision_heads=2,
    vision_intermediate_size=64,
    vision_image_size=980,
)


def resampler_heads(dims: Dims) -> int:
    return max(dims.hidden_size // 128, 1)  # as the published code sets them


@dataclass(frozen=True)
class Workload:
    """The question asked: frames of one size, sliced, and a fixed number of new tokens."""

    frames: int = 64
    width: int = 1280
    height: int = 720
    max_slice_nums: int = 2
    new_tokens: int = 64


@dataclass(frozen=True)
class Limits:
    """A GPU's bf16 dense peak and its memory bandwidth (vendor datasheets)."""

    gpu: str
    bf16_tflops: float
    bandwidth_tbs: float


@dataclass
class Setup:
    """Everything one run is made of, as the results report it."""

    dims: Dims
    workload: Workload
    device: torch.device
    dtype: torch.dtype
    tiny: bool
    remote_code: Path | None
    limits: Limits | None
    not_measured: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return "remote code" if self.remote_code else "stand-in"


# --- MiniCPM-V's image slicing (its rule, written here from its description) ---------------


def slice_grid(width: int, height: int, max_slices: int, resolution: int) -> tuple[int, int] | None:
    """Columns x rows an image is cut into, or None when it is not cut.

    The count wanted is the image's area in units of `resolution`² rounded up,
    at most `max_slices`; of the grids of that count and its neighbours (more
    than 1, at most `max_slices`), the one nearest the image's aspect ratio
    (in log scale) wins, the first on a tie.
    """
    wanted = min(math.ceil(width * height / resolution**2), max_slices)
    if wanted <= 1:
        return None
    counts = [n for n in (wanted - 1, wanted, wanted + 1) if 1 < n <= max_slices]
    grids = [(cols, n // cols) for n in counts for cols in range(1, n + 1) if n % cols == 0]
    aspect = math.log(width / height)
    return min(grids, key=lambda grid: abs(aspect - math.log(grid[0] / grid[1])))


def fit_area(
    width: float, height: float, resolution: int, patch: int, upscale: bool
) -> tuple[int, int]:
    """The size of about `resolution`² pixels with this aspect ratio (if larger, or
    `upscale`), each side rounded to a multiple of `patch`."""
    if width * height > resolution**2 or upscale:
        ratio = width / height
        height = int(resolution / math.sqrt(ratio))
        width = int(height * ratio)
    return _multiple(width, patch), _multiple(height, patch)


def _multiple(length: float, step: int) -> int:
    return max(round(length / step) * step, step)


def slice_image(
    image: Image.Image, max_slices: int, resolution: int, patch: int
) -> list[Image.Image]:
    """The source image resized to about `resolution`², then its slices, row by row."""
    width, height = image.size
    grid = slice_grid(width, height, max_slices, resolution)
    bicubic = Image.Resampling.BICUBIC
    if grid is None:
        return [image.resize(fit_area(width, height, resolution, patch, True), bicubic)]
    source = image.resize(fit_area(width, height, resolution, patch, False), bicubic)
    cols, rows = grid
    tile_w, tile_h = fit_area(
        _multiple(width, cols) / cols, _multiple(height, rows) / rows, resolution, patch, True
    )
    refined = image.resize((tile_w * cols, tile_h * rows), bicubic)
    tiles = [
        refined.crop((c * tile_w, r * tile_h, (c + 1) * tile_w, (r + 1) * tile_h))
        for r in range(rows)
        for c in range(cols)
    ]
    return [source, *tiles]


def to_pixels(image: Image.Image) -> torch.Tensor:
    """CHW float32, normalised with mean and std 0.5 as MiniCPM-V's processor does."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy((array - 0.5) / 0.5).permute(2, 0, 1)


def synthetic_frames(count: int, width: int, height: int) -> list[Image.Image]:
    """Deterministic RGB frames: gradients shifted per frame (content does not change time)."""
    x = np.arange(width, dtype=np.int64)[None, :]
    y = np.arange(height, dtype=np.int64)[:, None]
    frames = []
    for i in range(count):
        rgb = np.stack([(x + 3 * i) % 256 + 0 * y, (y + 5 * i) % 256 + 0 * x, (x + y + i) % 256])
        frames.append(Image.fromarray(rgb.transpose(1, 2, 0).astype(np.uint8)))
    return frames


# --- the stand-in: MiniCPM-V 2.6's parts from transformers' own classes ---------------------


class Resampler(nn.Module):
    """Stand-in for the perceiver resampler: learned queries, one cross-attention."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(dims.query_num, dims.hidden_size) * 0.02)
        self.ln_q = nn.LayerNorm(dims.hidden_size)
        self.ln_kv = nn.LayerNorm(dims.vision_hidden_size)
        self.attn = nn.MultiheadAttention(
            dims.hidden_size,
            resampler_heads(dims),
            kdim=dims.vision_hidden_size,
            vdim=dims.vision_hidden_size,
            batch_first=True,
        )
        self.ln_post = nn.LayerNorm(dims.hidden_size)
        self.proj = nn.Linear(dims.hidden_size, dims.hidden_size, bias=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        kv = self.ln_kv(patches)
        query = self.ln_q(self.query).unsqueeze(0).expand(patches.shape[0], -1, -1)
        out, _ = self.attn(query, kv, kv, need_weights=False)
        return self.proj(self.ln_post(out))


class StandIn(nn.Module):
    """Vision tower (SigLIP), resampler and LLM (Qwen2) at MiniCPM-V 2.6's dimensions."""

    def __init__(self, llm: nn.Module, vpm: nn.Module, resampler: Resampler) -> None:
        super().__init__()
        self.llm = llm
        self.vpm = vpm
        self.resampler = resampler


def build_standin(setup: Setup, attention: str) -> StandIn:
    """Random weights, created on the device. The vision tower runs eager attention unless
    flash_attention_2, as MiniCPM-V 2.6's own SigLIP does (it has no sdpa path)."""
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        Qwen2Config,
        SiglipVisionConfig,
    )

    dims = setup.dims
    llm_config = Qwen2Config(
        vocab_size=dims.vocab_size,
        hidden_size=dims.hidden_size,
        intermediate_size=dims.intermediate_size,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=ROPE_THETA,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_sliding_window=False,
        sliding_window=None,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=dims.vision_hidden_size,
        intermediate_size=dims.vision_intermediate_size,
        num_hidden_layers=dims.vision_layers,
        num_attention_heads=dims.vision_heads,
        image_size=dims.vision_image_size,
        patch_size=dims.patch_size,
        vision_use_head=False,
    )
    vision_attention = attention if attention == "flash_attention_2" else "eager"
    torch.manual_seed(0)
    with torch.device(setup.device):
        llm = AutoModelForCausalLM.from_config(
            llm_config, torch_dtype=setup.dtype, attn_implementation=attention
        )
        vpm = AutoModel.from_config(
            vision_config, torch_dtype=setup.dtype, attn_implementation=vision_attention
        )
        resampler = Resampler(dims).to(setup.dtype)
    return StandIn(llm, vpm, resampler).eval()


def standin_chat(model: StandIn, setup: Setup, frames: list[Image.Image], new_tokens: int) -> None:
    """What `chat()` does, with the stand-in: slice, encode, embed, generate greedily."""
    dims, workload = setup.dims, setup.workload
    pieces = [
        slice_image(frame, workload.max_slice_nums, dims.image_size, dims.patch_size)
        for frame in frames
    ]
    images = [image for frame_pieces in pieces for image in frame_pieces]
    features = encode_images(model, images, setup)
    ids, positions = prompt_ids([len(p) for p in pieces], dims)
    ids_tensor = torch.tensor([ids], device=setup.device)
    embeds = model.llm.get_input_embeddings()(ids_tensor)
    embeds[0, torch.tensor(positions, device=setup.device)] = features.reshape(-1, dims.hidden_size)
    model.llm.generate(
        inputs_embeds=embeds,
        attention_mask=torch.ones_like(ids_tensor),
        do_sample=False,
        num_beams=1,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=0,
        eos_token_id=[_END, _EOS],
    )


def encode_images(model: StandIn, images: list[Image.Image], setup: Setup) -> torch.Tensor:
    """Vision tower then resampler, `vision_batch` images of one size at a time:
    (images, queries, hidden), in the order given."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(image.size, []).append(index)
    features: list[torch.Tensor | None] = [None] * len(images)
    for indices in by_size.values():
        for start in range(0, len(indices), VISION_BATCH):
            batch = indices[start : start + VISION_BATCH]
            pixels = torch.stack([to_pixels(images[i]) for i in batch])
            pixels = pixels.to(setup.device, setup.dtype)
            hidden = model.vpm(pixel_values=pixels, interpolate_pos_encoding=True)
            for i, feature in zip(batch, model.resampler(hidden.last_hidden_state), strict=True):
                features[i] = feature
    return torch.stack([f for f in features if f is not None])


# Token ids of the stand-in's prompt; their values do not change the work done.
_UNK, _IM_START, _IM_END, _SLICE_START, _SLICE_END, _NEWLINE, _END, _EOS = range(1, 9)
_TEXT_IDS = 16  # ids of ordinary text start here


def prompt_ids(pieces_per_frame: list[int], dims: Dims) -> tuple[list[int], list[int]]:
    """Token ids laid out as 2.6's processor lays them out, and the placeholder positions.

    Each frame is `<image>` + queries x `<unk>` + `</image>`, then per slice
    `<slice>` + queries x `<unk>` + `</slice>`, then a newline; around them the
    chat template's turn markers and the question (about 4 bytes of English per
    token, as Qwen2's tokenizer gets).
    """
    rng = np.random.default_rng(0)
    question = math.ceil(len(QUESTION.encode()) / 4)
    text = [int(t) for t in rng.integers(_TEXT_IDS, dims.vocab_size, size=question + 8)]
    ids = [*text[:3]]  # <|im_start|>user\n
    positions: list[int] = []
    for count in pieces_per_frame:
        for piece in range(count):
            start, end = (_IM_START, _IM_END) if piece == 0 else (_SLICE_START, _SLICE_END)
            ids.append(start)
            positions += range(len(ids), len(ids) + dims.query_num)
            ids += [_UNK] * dims.query_num + [end]
        ids.append(_NEWLINE)
    ids += text[3:]  # the question, <|im_end|>\n<|im_start|>assistant\n
    return ids, positions


# --- the remote-code path ---------------------------------------------------------------


def build_remote(setup: Setup, attention: str, workdir: Path) -> tuple[Any, Any, list[str]]:
    """OpenBMB's code in a snapshot of the published layout (no weights), random weights
    created on the device: (model, processor, workarounds applied to the code)."""
    from transformers import AutoProcessor

    from backends import standin_model as snapshots
    from backends.remote_code import load_remote_code

    assert setup.remote_code is not None
    code = snapshots.published_code(setup.remote_code)
    snapshot = snapshots.write_snapshot(workdir, code, snapshots.PUBLISHED)
    processor, processor_fixes = load_remote_code(
        lambda: AutoProcessor.from_pretrained(snapshot, trust_remote_code=True), str(snapshot)
    )
    model, model_fixes = load_remote_code(
        lambda: _remote_model(snapshot, setup, attention, processor), str(snapshot)
    )
    return (
        model.to(setup.device).eval(),
        processor,
        list(dict.fromkeys(model_fixes + processor_fixes)),
    )


def _remote_model(snapshot: Path, setup: Setup, attention: str, processor: Any) -> Any:
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(snapshot, trust_remote_code=True)
    if setup.tiny:
        _shrink(config, setup.dims, len(processor.tokenizer))
        processor.image_processor.image_feature_size = setup.dims.query_num
    torch.manual_seed(0)
    with torch.device(setup.device):
        return AutoModel.from_config(
            config, trust_remote_code=True, torch_dtype=setup.dtype, attn_implementation=attention
        )


def _shrink(config: Any, dims: Dims, tokens: int) -> None:
    """Tiny runs only: the published config cut down to `dims` (vocabulary: the tokenizer's)."""
    config.update(
        {
            "hidden_size": dims.hidden_size,
            "num_hidden_layers": dims.layers,
            "num_attention_heads": dims.heads,
            "num_key_value_heads": dims.kv_heads,
            "intermediate_size": dims.intermediate_size,
            "vocab_size": max(dims.vocab_size, tokens),
            "query_num": dims.query_num,
        }
    )
    config.vision_config.update(
        {
            "hidden_size": dims.vision_hidden_size,
            "num_hidden_layers": dims.vision_layers,
            "num_attention_heads": dims.vision_heads,
            "intermediate_size": dims.vision_intermediate_size,
        }
    )


def remote_chat(
    model: Any, processor: Any, setup: Setup, frames: list[Image.Image], tokens: int
) -> None:
    """The call the `local` backend makes, greedy, with a fixed number of new tokens."""
    model.chat(
        image=None,
        msgs=[{"role": "user", "content": [*frames, QUESTION]}],
        tokenizer=processor.tokenizer,
        processor=processor,
        sampling=False,
        num_beams=1,
        repetition_penalty=1.0,
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        max_inp_length=MAX_INP_LENGTH,
        max_slice_nums=setup.workload.max_slice_nums,
        use_image_id=False,
    )
