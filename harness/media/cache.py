"""Where vqa-harness keeps files it can rebuild: generated videos, upload URLs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$VQA_HARNESS_CACHE`, else `$XDG_CACHE_HOME/vqa-harness`, else `~/.cache/vqa-harness`."""
    root = os.environ.get("VQA_HARNESS_CACHE")
    if root:
        base = Path(root)
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]) / "vqa-harness"
    else:
        base = Path.home() / ".cache" / "vqa-harness"
    return base.expanduser().absolute()
