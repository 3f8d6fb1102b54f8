"""The keys a sample is broken down by in reports: category, task, duration.

`category` is `Sample.category`; `task` is `meta["task"]`; `duration` is
`meta["duration"]` when that is a label (text) such as Video-MME's
short/medium/long, else the bucket of `meta["duration_s"]` (the video's length
in seconds): `short` under 2 minutes, `medium` from 2 to 15 minutes, `long`
over 15 minutes. Only text counts as a label (the synthetic suite's numeric
`meta["duration"]` is not one), and a key without a value is left out.
"""

from __future__ import annotations

import math
from typing import Any

from harness.types import Sample

SHORT_UNDER_S = 120.0
LONG_OVER_S = 900.0
DURATION_ORDER = ("short", "medium", "long")
"""Report order of the duration buckets; other labels follow, sorted."""


def sample_groups(sample: Sample) -> dict[str, str]:
    """The sample's breakdown keys that have a value."""
    duration = _label(sample.meta.get("duration"))
    if duration is None:
        seconds = _seconds(sample.meta.get("duration_s"))
        duration = None if seconds is None else duration_bucket(seconds)
    groups = {
        "category": sample.category or None,
        "task": _label(sample.meta.get("task")),
        "duration": duration,
    }
    return {key: value for key, value in groups.items() if value is not None}


def duration_bucket(seconds: float) -> str:
    """`short` (< 2 min), `medium` (2 to 15 min) or `long` (> 15 min)."""
    if seconds < SHORT_UNDER_S:
        return "short"
    return "long" if seconds > LONG_OVER_S else "medium"


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _seconds(value: Any) -> float | None:
    """A length in seconds (a number or its text), or None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
