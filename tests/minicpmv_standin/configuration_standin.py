"""Configuration of the MiniCPM-V 2.6 stand-in (see modeling_standin.py)."""

from transformers import Qwen2Config


class StandInMiniCPMVConfig(Qwen2Config):
    """A Qwen2 config plus the vision fields MiniCPM-V 2.6's own config carries.

    Like OpenBMB's `MiniCPMVConfig`, it extends `Qwen2Config`; `standin` marks
    a model that is not MiniCPM-V 2.6, so reports can say so.
    """

    model_type = "minicpmv"

    def __init__(
        self,
        query_num: int = 64,
        image_size: int = 448,
        slice_mode: bool = True,
        standin: bool = True,
        **kwargs,
    ):
        self.query_num = query_num
        self.image_size = image_size
        self.slice_mode = slice_mode
        self.standin = standin
        kwargs.setdefault("use_sliding_window", False)
        super().__init__(**kwargs)
