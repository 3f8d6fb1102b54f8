"""A tiny stand-in for MiniCPM-V 2.6's remote code: the same `chat()`, its quirks, random weights.

MiniCPM-V 2.6's own code may not be committed here and its 17 GB of weights
cannot be where the tests run, so this model stands in for them. It is loaded
the same way (`AutoModel.from_pretrained(dir, trust_remote_code=True)` through
the config's `auto_map`, its processor through `AutoProcessor`) and answers
through the call OpenBMB documents:

    model.chat(image=None, msgs=[{"role": "user", "content": frames + [question]}],
               tokenizer=tokenizer, processor=processor, sampling=False, max_new_tokens=...,
               max_inp_length=..., max_slice_nums=2, use_image_id=False, **generation_kwargs)

Checked against the seven .py files of openbmb/MiniCPM-V-2_6 as published (a
public GitHub copy, commit 8490e59 of 404805854/minicpmv2.6-onnx, "fork from
hugging face original code"), run on torch 2.13 and transformers 4.51.3 with
tiny random weights. It behaves as they do where a harness can go wrong:

1. it imports `torchvision` and never uses it, so transformers refuses to load
   it where torchvision cannot be imported (modeling_minicpmv.py);
2. its resampler uses `List` without importing it: `NameError` on torch >= 2.7
   (resampler.py);
3. `chat()` without `processor=` loads `AutoProcessor.from_pretrained(
   config._name_or_path, trust_remote_code=True)` on its first call: no
   revision, from the network unless cached (modeling_minicpmv.py);
4. the processor cuts the ids at `max_inp_length` before pairing image
   markers: a cut inside placeholders raises `Sizes of tensors must match`,
   a cut after them drops the end of the question silently
   (processing_minicpmv.py);
5. the answer is decoded after dropping id-0 tokens, without skipping special
   tokens, so `<ref>`, `<box>` and the like stay in the text;
6. generation is transformers' own `generate` on a `Qwen2ForCausalLM`
   (`self.llm`) from input embeddings, so beam search steps as it does there:
   on after the best beam has ended;
7. the vision tower (transformers' SigLIP) runs eager attention unless
   flash-attention-2 is asked for; only the language model follows
   `attn_implementation`.

`sampling=True` samples with top_p 0.8, top_k 100, temperature 0.7 and
repetition_penalty 1.05; `sampling=False` is beam search (3 beams, penalty
1.2); other kwargs override only those keys, as in 2.6's `chat()`. The last
call's inputs are kept in `last_chat` for tests to inspect.
"""

import hashlib

import torch
import torchvision  # noqa: F401  (as modeling_minicpmv.py: imported, never used)
from PIL import Image
from transformers import AutoProcessor, Qwen2ForCausalLM, Qwen2PreTrainedModel, SiglipVisionModel

from .configuration_standin import StandInMiniCPMVConfig
from .processing_standin import IMAGE_TAG
from .resampler_standin import Resampler, unbatch

TERMINATORS = ("<|im_end|>", "<|endoftext|>")


class StandInMiniCPMV(Qwen2PreTrainedModel):
    config_class = StandInMiniCPMVConfig

    def __init__(self, config):
        super().__init__(config)
        self.llm = Qwen2ForCausalLM(config)
        if config._attn_implementation != "flash_attention_2":
            config.vision_config._attn_implementation = "eager"  # the tower "does not support sdpa"
        else:
            config.vision_config._attn_implementation = "flash_attention_2"
        self.vpm = SiglipVisionModel(config.vision_config)
        self.resampler = Resampler(
            config.query_num, config.hidden_size, config.vision_config.hidden_size
        )
        self.processor = None
        self.last_chat = None
        self.post_init()

    def _embed(self, ids, pixels, bounds):
        """Token embeddings with each image's resampled vision states at its `<unk>` runs."""
        embeds = self.llm.get_input_embeddings()(ids.to(self.device))
        if not pixels:
            return embeds
        batch = torch.stack(pixels).to(self.device, self.dtype)
        patches = self.vpm(pixel_values=batch).last_hidden_state
        states = unbatch(self.resampler(patches))  # one per image and slice, in text order
        for state, (start, end) in zip(states, bounds.tolist(), strict=False):
            embeds[start:end] = state[: end - start]
        return embeds

    @torch.inference_mode()
    def chat(
        self,
        image,
        msgs,
        tokenizer,
        processor=None,
        vision_hidden_states=None,
        max_new_tokens=2048,
        min_new_tokens=0,
        sampling=True,
        max_inp_length=8192,
        system_prompt="",
        stream=False,
        max_slice_nums=None,
        use_image_id=None,
        **kwargs,
    ):
        if image is not None or len(msgs) != 1 or msgs[0]["role"] != "user":
            raise ValueError("the stand-in answers one user message with its images inline")
        if processor is None:
            if self.processor is None:
                self.processor = AutoProcessor.from_pretrained(
                    self.config._name_or_path, trust_remote_code=True
                )
            processor = self.processor

        content = msgs[0]["content"]
        images = [item for item in content if isinstance(item, Image.Image)]
        text = "\n".join(IMAGE_TAG if isinstance(item, Image.Image) else item for item in content)
        prompt = processor.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        inputs = processor(
            [prompt],
            [images],
            max_length=max_inp_length,
            max_slice_nums=max_slice_nums,
            use_image_id=use_image_id,
        )
        ids, bounds = inputs["input_ids"][0], inputs["image_bound"][0]
        embeds = self._embed(ids, inputs["pixel_values"][0], bounds).unsqueeze(0)

        if sampling:
            generation = {"top_p": 0.8, "top_k": 100, "temperature": 0.7, "do_sample": True}
            generation["repetition_penalty"] = 1.05
        else:
            generation = {"num_beams": 3, "repetition_penalty": 1.2}
        if min_new_tokens > 0:
            generation["min_new_tokens"] = min_new_tokens
        generation.update((k, kwargs[k]) for k in generation.keys() & kwargs.keys())

        holder = processor.image_processor
        self.last_chat = {
            "frames": len(images),
            "frame_sizes": [frame.size for frame in images],
            "frame_digests": [hashlib.sha256(frame.tobytes()).hexdigest() for frame in images],
            "question": "".join(item for item in content if isinstance(item, str)),
            "slices": [holder.get_sliced_grid(frame.size, max_slice_nums) for frame in images],
            "use_image_id": use_image_id,
            "max_slice_nums": max_slice_nums,
            "max_inp_length": max_inp_length,
            "input_length": processor.last_input_length,
            "truncated": processor.last_input_length > len(ids),
            "prompt_reaching_model": processor.tokenizer.decode(ids),
            "max_new_tokens": max_new_tokens,
            "generation": dict(generation),
        }
        terminators = [tokenizer.convert_tokens_to_ids(token) for token in TERMINATORS]
        output = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device),
            pad_token_id=0,
            eos_token_id=terminators,
            max_new_tokens=max_new_tokens,
            **generation,
        )
        return self._decode_text(output[0], tokenizer, terminators)

    @staticmethod
    def _decode_text(result, tokenizer, terminators):
        """As the published `_decode_text`: no special token is skipped, only id 0 dropped."""
        result = result[result != 0]
        if result[0] == tokenizer.bos_token_id:
            result = result[1:]
        if result[-1] in terminators:
            result = result[:-1]
        return tokenizer.decode(result).strip()
