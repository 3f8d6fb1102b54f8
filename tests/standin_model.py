"""Build the tiny MiniCPM-V 2.6 stand-in (`minicpmv_standin/`) as a model directory.

The directory looks like a Hub snapshot of a remote-code model: `config.json`
with `auto_map`, the modeling code beside it, safetensors weights (random, from
a seed) and a tokenizer (byte-level, with MiniCPM-V's special tokens). Nothing
is downloaded. `python tests/standin_model.py DIR` builds one for the bench demo.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CODE = Path(__file__).resolve().parent / "minicpmv_standin"
SPECIAL_TOKENS = [
    "<unk>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "</image>",
    "<slice>",
    "</slice>",
    "<image_id>",
    "</image_id>",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: one token per byte, plus MiniCPM-V's special tokens."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def build_standin(
    directory: Path,
    *,
    query_num: int = 4,
    image_size: int = 32,
    hidden_size: int = 32,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised stand-in model directory; return it."""
    sys.path.insert(0, str(CODE.parent))
    try:
        from minicpmv_standin.configuration_standin import StandInMiniCPMVConfig
        from minicpmv_standin.modeling_standin import StandInMiniCPMV
    finally:
        sys.path.remove(str(CODE.parent))
    tokenizer = build_tokenizer()
    config = StandInMiniCPMVConfig(
        query_num=query_num,
        image_size=image_size,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
    )
    config.auto_map = {
        "AutoConfig": "configuration_standin.StandInMiniCPMVConfig",
        "AutoModel": "modeling_standin.StandInMiniCPMV",
    }
    torch.manual_seed(seed)
    model = StandInMiniCPMV(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    for source in CODE.glob("*_standin.py"):
        shutil.copy(source, directory / source.name)
    return directory


if __name__ == "__main__":
    print(build_standin(Path(sys.argv[1])))
