"""The stand-in's processor: prompt text and images in, token ids and image bounds out.

Written from OpenBMB's processing_minicpmv.py (openbmb/MiniCPM-V-2_6), keeping
its order of work: each `(<image>./</image>)` tag becomes the image's
placeholder text, the text is tokenised, the ids are cut to `max_length`, and
only then are image starts and ends paired. A cut inside an image's
placeholders leaves one more start than end, and pairing them raises
`RuntimeError: Sizes of tensors must match`; a cut after them silently drops
the end of the prompt. Like the published processor, it is loaded with
`AutoProcessor.from_pretrained(..., trust_remote_code=True)`.
"""

import torch
from transformers.processing_utils import ProcessorMixin

IMAGE_TAG = "(<image>./</image>)"


class StandInProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]  # noqa: RUF012  (as transformers declares it)
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None):
        super().__init__(image_processor, tokenizer)
        self.last_input_length = None  # before the cut: for tests to inspect

    def __call__(
        self, text, images=None, max_length=None, max_slice_nums=None, use_image_id=None, **kwargs
    ):
        ids, bounds = [], []
        for prompt, image_list in zip(text, images, strict=True):
            chunks = prompt.split(IMAGE_TAG)
            if len(chunks) != len(image_list) + 1:
                raise ValueError("one image tag per image")
            full = chunks[0]
            for index, (image, chunk) in enumerate(zip(image_list, chunks[1:], strict=True)):
                holder = self.image_processor.placeholder(
                    image.size, index, max_slice_nums, use_image_id
                )
                full += holder + chunk
            tokens = self.tokenizer.encode(full, add_special_tokens=False)
            self.last_input_length = len(tokens)
            if max_length is not None:
                tokens = tokens[:max_length]
            ids.append(torch.tensor(tokens))
            bounds.append(self._image_bounds(ids[-1]))
        return {
            "input_ids": ids,
            "image_bound": bounds,
            **self.image_processor.preprocess(images, max_slice_nums=max_slice_nums),
        }

    def _image_bounds(self, ids):
        """[start, end) of each image's and slice's `<unk>` run: starts and ends paired."""
        token = self.tokenizer.convert_tokens_to_ids
        starts = torch.where((ids == token("<image>")) | (ids == token("<slice>")))[0] + 1
        ends = torch.where((ids == token("</image>")) | (ids == token("</slice>")))[0]
        count = max(len(starts), len(ends))
        return torch.hstack([starts[:count].unsqueeze(-1), ends[:count].unsqueeze(-1)])
