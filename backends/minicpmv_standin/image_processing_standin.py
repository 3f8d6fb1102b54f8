"""The stand-in's image processor: MiniCPM-V 2.6's slicing rule and its placeholders.

Written from OpenBMB's image_processing_minicpmv.py (openbmb/MiniCPM-V-2_6): an
image larger than `scale_resolution`^2 is cut into a grid of at most
`max_slice_nums` slices, chosen among the grids of `n - 1`, `n` and `n + 1`
cells (n = its area over `scale_resolution`^2, capped) whose aspect ratio is
closest to the image's; its text is `<image>` + `image_feature_size` x `<unk>` +
`</image>` (after `<image_id>i</image_id>` when `use_image_id`), then one row of
`<slice>...</slice>` groups per grid row, rows joined by newlines. Unlike the
published code, each image and slice is squeezed to the vision tower's square
input instead of keeping its aspect ratio: the tower here is a toy.
"""

import math

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor


class StandInImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]  # noqa: RUF012  (as transformers declares it)

    def __init__(
        self,
        max_slice_nums=9,
        scale_resolution=448,
        patch_size=14,
        image_feature_size=64,
        use_image_id=False,
        slice_mode=True,
        vision_size=28,
        version=2.6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.max_slice_nums = max_slice_nums
        self.scale_resolution = scale_resolution
        self.patch_size = patch_size
        self.image_feature_size = image_feature_size
        self.use_image_id = use_image_id
        self.slice_mode = slice_mode
        self.vision_size = vision_size
        self.version = version

    def get_sliced_grid(self, image_size, max_slice_nums, nerver_split=False):
        """(columns, rows) of the slices of an image of `image_size`, or None when it is not
        cut (the published name and signature, typo included)."""
        limit = self.max_slice_nums if max_slice_nums is None else int(max_slice_nums)
        width, height = image_size
        cells = min(math.ceil(width * height / self.scale_resolution**2), limit)
        if not self.slice_mode or cells <= 1 or nerver_split:
            return None
        counts = [n for n in (cells - 1, cells, cells + 1) if 1 < n <= limit]
        grids = [(m, n // m) for n in counts for m in range(1, n + 1) if n % m == 0]
        return min(grids, key=lambda g: abs(math.log(width / height) - math.log(g[0] / g[1])))

    def placeholder(self, size, index, max_slice_nums=None, use_image_id=None):
        unk = "<unk>" * self.image_feature_size
        text = f"<image>{unk}</image>"
        if self.use_image_id if use_image_id is None else use_image_id:
            text = f"<image_id>{index}</image_id>{text}"
        grid = self.get_sliced_grid(size, max_slice_nums)
        if grid is not None:
            columns, rows = grid
            text += "\n".join(f"<slice>{unk}</slice>" * columns for _ in range(rows))
        return text

    def slices(self, image, max_slice_nums=None):
        """The image itself, then its grid's cells, left to right and top to bottom."""
        parts = [image]
        grid = self.get_sliced_grid(image.size, max_slice_nums)
        if grid is not None:
            columns, rows = grid
            width, height = image.width // columns, image.height // rows
            for row in range(rows):
                for column in range(columns):
                    box = (column * width, row * height, (column + 1) * width, (row + 1) * height)
                    parts.append(image.crop(box))
        return parts

    def preprocess(self, images, max_slice_nums=None, **kwargs):
        """Per image list: one (3, vision_size, vision_size) tensor per image and slice."""
        side = (self.vision_size, self.vision_size)
        pixels = []
        for image_list in images:
            tensors = []
            for image in image_list:
                for part in self.slices(image.convert("RGB"), max_slice_nums):
                    array = np.asarray(part.resize(side), dtype=np.float32) / 255.0
                    tensors.append(torch.from_numpy((array - 0.5) / 0.5).permute(2, 0, 1))
            pixels.append(tensors)
        return {"pixel_values": pixels}
