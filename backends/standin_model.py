"""Write a MiniCPM-V 2.6 model directory as the Hub publishes it, with tiny random weights.

The directory holds what openbmb/MiniCPM-V-2_6's snapshot holds: `config.json`
with `auto_map`, `preprocessor_config.json` (the image processor's settings and
the processor's `auto_map`), a tokenizer with MiniCPM-V's special tokens and
Qwen2's ChatML template, the remote code beside them, and safetensors weights
(random, from a seed). The code is the stand-in in `minicpmv_standin/` by
default; given a folder holding OpenBMB's own seven .py files, it is that code,
unchanged. Nothing is downloaded.

    python -m backends.standin_model DIR                 # the stand-in (the bench demo)
    python -m backends.standin_model DIR --code REAL_DIR  # OpenBMB's code, tiny weights

It is package data of the `local` backend (its `bench --demo` model); the tests
build their model with it too.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModel
from transformers.tokenization_utils_fast import PreTrainedTokenizerFast

CODE = Path(__file__).resolve().parent / "minicpmv_standin"

# Qwen2's own special tokens, then those MiniCPM-V 2.6's tokenizer adds.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<unk>",
    "<image>",
    "</image>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<quad>",
    "</quad>",
    "<point>",
    "</point>",
    "<slice>",
    "</slice>",
    "<image_id>",
    "</image_id>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Dims:
    """The sizes a snapshot's config.json and preprocessor_config.json give."""

    hidden_size: int = 32
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 64
    vocab_size: int | None = None  # None: the tokenizer's own size
    query_num: int = 4
    image_size: int = 32  # frames above image_size^2 pixels are sliced
    vision_hidden_size: int = 16
    vision_layers: int = 1
    vision_heads: int = 2
    vision_intermediate_size: int = 32
    vision_image_size: int = 28
    patch_size: int = 14


PUBLISHED = Dims(
    hidden_size=3584,
    layers=28,
    heads=28,
    kv_heads=4,
    intermediate_size=18944,
    vocab_size=151666,
    query_num=64,
    image_size=448,
    vision_hidden_size=1152,
    vision_layers=27,
    vision_heads=16,
    vision_intermediate_size=4304,
    vision_image_size=980,
)
"""openbmb/MiniCPM-V-2_6's config.json."""


@dataclass(frozen=True)
class Code:
    """A folder of MiniCPM-V remote code and the classes its auto_map names."""

    directory: Path
    config: str
    model: str
    processor: str
    image_processor: str
    tokenizer: str | None  # None: transformers' PreTrainedTokenizerFast


STANDIN = Code(
    CODE,
    "configuration_standin.StandInMiniCPMVConfig",
    "modeling_standin.StandInMiniCPMV",
    "processing_standin.StandInProcessor",
    "image_processing_standin.StandInImageProcessor",
    None,
)


def published_code(directory: Path) -> Code:
    """OpenBMB's files for MiniCPM-V 2.6, as named on the Hub."""
    return Code(
        directory,
        "configuration_minicpm.MiniCPMVConfig",
        "modeling_minicpmv.MiniCPMV",
        "processing_minicpmv.MiniCPMVProcessor",
        "image_processing_minicpmv.MiniCPMVImageProcessor",
        "tokenization_minicpmv_fast.MiniCPMVTokenizerFast",
    )


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level: one token per byte (id 0 is "!", as in Qwen2's), then the special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(alphabet + SPECIAL_TOKENS)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def write_snapshot(directory: Path, code: Code = STANDIN, dims: Dims = Dims()) -> Path:
    """Everything of a snapshot but its weights: configs, tokenizer, remote code."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in code.directory.glob("*.py"):
        if source.name != "__init__.py":
            shutil.copy(source, directory / source.name)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(directory)
    if code.tokenizer is not None:
        _update_json(
            directory / "tokenizer_config.json",
            auto_map={"AutoTokenizer": [None, code.tokenizer]},
            tokenizer_class=code.tokenizer.rsplit(".", 1)[1],
        )
    ids = tokenizer.get_vocab()
    _write_json(directory / "config.json", _config(code, dims, ids, len(tokenizer)))
    _write_json(directory / "preprocessor_config.json", _preprocessor_config(code, dims))
    return directory


def build_standin(
    directory: Path, code: Code = STANDIN, dims: Dims = Dims(), *, seed: int = 0, **sizes: Any
) -> Path:
    """Write a snapshot with random weights from `seed`; `sizes` override fields of `dims`."""
    # Imported here: perf/gpu.py uses this module's snapshots on machines without the
    # project's other dependencies, which importing the backends package would need.
    from backends.remote_code import load_remote_code

    write_snapshot(directory, code, replace(dims, **sizes))
    config = AutoConfig.from_pretrained(directory, trust_remote_code=True)
    torch.manual_seed(seed)
    model, _ = load_remote_code(
        lambda: AutoModel.from_config(config, trust_remote_code=True, torch_dtype=torch.float32),
        str(directory),
    )
    published = (directory / "config.json").read_text()
    model.save_pretrained(directory)
    (directory / "config.json").write_text(published)  # as the Hub has it, not as re-saved
    return directory


def never_ending(backend: Any) -> None:
    """Keep a local backend's model from choosing a terminator: it generates until stopped."""
    tokenizer = backend._model.tokenizer
    terminators = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])

    def suppress(module, args, output):
        output.logits[..., terminators] = float("-inf")

    backend._model.model.llm.register_forward_hook(suppress)


def _config(code: Code, dims: Dims, ids: dict[str, int], vocab: int) -> dict[str, Any]:
    return {
        "architectures": [code.model.rsplit(".", 1)[1]],
        "auto_map": {
            "AutoConfig": code.config,
            "AutoModel": code.model,
            "AutoModelForCausalLM": code.model,
        },
        "model_type": "minicpmv",
        "batch_vision_input": True,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "drop_vision_last_layer": False,
        "hidden_act": "silu",
        "hidden_size": dims.hidden_size,
        "image_size": dims.image_size,
        "initializer_range": 0.02,
        "intermediate_size": dims.intermediate_size,
        "max_position_embeddings": 32768,
        "max_window_layers": dims.layers,
        "num_attention_heads": dims.heads,
        "num_hidden_layers": dims.layers,
        "num_key_value_heads": dims.kv_heads,
        "patch_size": dims.patch_size,
        "query_num": dims.query_num,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "slice_config": {
            "max_slice_nums": 9,
            "model_type": "minicpmv",
            "patch_size": dims.patch_size,
            "scale_resolution": dims.image_size,
        },
        "slice_mode": True,
        "tie_word_embeddings": False,
        "use_cache": True,
        "use_image_id": True,
        "use_sliding_window": False,
        "vision_batch_size": 16,
        "vocab_size": dims.vocab_size or vocab,
        "vision_config": {
            "hidden_size": dims.vision_hidden_size,
            "image_size": dims.vision_image_size,
            "intermediate_size": dims.vision_intermediate_size,
            "model_type": "siglip",
            "num_attention_heads": dims.vision_heads,
            "num_hidden_layers": dims.vision_layers,
            "patch_size": dims.patch_size,
        },
    }


def _preprocessor_config(code: Code, dims: Dims) -> dict[str, Any]:
    return {
        "image_processor_type": code.image_processor.rsplit(".", 1)[1],
        "auto_map": {"AutoProcessor": code.processor, "AutoImageProcessor": code.image_processor},
        "processor_class": code.processor.rsplit(".", 1)[1],
        "max_slice_nums": 9,
        "scale_resolution": dims.image_size,
        "patch_size": dims.patch_size,
        "use_image_id": True,
        "image_feature_size": dims.query_num,
        "im_start": "<image>",
        "im_end": "</image>",
        "slice_start": "<slice>",
        "slice_end": "</slice>",
        "unk": "<unk>",
        "im_id_start": "<image_id>",
        "im_id_end": "</image_id>",
        "slice_mode": True,
        "norm_mean": [0.5, 0.5, 0.5],
        "norm_std": [0.5, 0.5, 0.5],
        "version": 2.6,
        "vision_size": dims.vision_image_size,  # the stand-in's; the published code ignores it
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _update_json(path: Path, **fields: Any) -> None:
    _write_json(path, {**json.loads(path.read_text()), **fields})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--code", type=Path, help="a folder of OpenBMB's MiniCPM-V 2.6 .py files")
    args = parser.parse_args(argv)
    if args.code is None:
        print(build_standin(args.directory))
    else:  # the published resampler needs hidden_size // 128 attention heads
        print(build_standin(args.directory, published_code(args.code), hidden_size=128))


if __name__ == "__main__":
    main()
