"""Configuration of the MiniCPM-V 2.6 stand-in (see modeling_standin.py).

Its fields are those of OpenBMB's `MiniCPMVConfig` (configuration_minicpm.py of
openbmb/MiniCPM-V-2_6): a `Qwen2Config` plus `query_num`, `image_size`,
`slice_config`, `vision_config` (SigLIP), `use_image_id`, `slice_mode`,
`patch_size`, `drop_vision_last_layer` and `vision_batch_size`, so one
config.json layout serves the stand-in and the published code. `standin`
marks a model that is not MiniCPM-V 2.6, so reports can say so.
"""

from transformers import PretrainedConfig, Qwen2Config, SiglipVisionConfig


class StandInSliceConfig(PretrainedConfig):
    model_type = "minicpmv"

    def __init__(self, patch_size=14, max_slice_nums=9, scale_resolution=448, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.max_slice_nums = max_slice_nums
        self.scale_resolution = scale_resolution


class StandInMiniCPMVConfig(Qwen2Config):
    model_type = "minicpmv"

    def __init__(
        self,
        query_num=64,
        image_size=448,
        drop_vision_last_layer=True,
        slice_config=None,
        vision_config=None,
        use_image_id=True,
        vision_batch_size=16,
        standin=True,
        **kwargs,
    ):
        self.query_num = query_num
        self.image_size = image_size
        self.drop_vision_last_layer = drop_vision_last_layer
        self.use_image_id = use_image_id
        self.vision_batch_size = vision_batch_size
        self.standin = standin
        self.slice_config = StandInSliceConfig(**(slice_config or {"max_slice_nums": 1}))
        self.slice_mode = True
        self.vision_config = SiglipVisionConfig(**(vision_config or {}))
        self.patch_size = self.vision_config.patch_size
        kwargs.setdefault("use_sliding_window", False)
        super().__init__(**kwargs)
