"""Published results, and how a run compares with them.

`PUBLISHED` holds the numbers a model's makers published, keyed by (model
family, benchmark), each with its source. A run is compared with one only when
it covers the whole benchmark: its spec selects nothing (no `--category`,
`--sample`, `--limit` or `--shard`) and every planned sample has a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.run.manifest import Manifest

MINICPM_V_2_6 = "MiniCPM-V 2.6"
_OPENBMB_DOCS = "OpenBMB's MiniCPM-V 2.6 model documentation (model card, OpenBMB/MiniCPM-V README)"


@dataclass(frozen=True)
class Published:
    """An accuracy (a fraction) as published, and where."""

    value: float
    source: str


PUBLISHED: dict[tuple[str, str], Published] = {
    (MINICPM_V_2_6, "videomme"): Published(0.609, f"{_OPENBMB_DOCS}, without subtitles"),
    (MINICPM_V_2_6, "videomme-subtitles"): Published(0.636, f"{_OPENBMB_DOCS}, with subtitles"),
}
"""No official MiniCPM-V 2.6 number exists for MVBench, TempCompass, NExT-QA or ActivityNet-QA."""


def model_family(describe: dict[str, Any]) -> str | None:
    """The published model a backend ran, from its `describe()`; None for a stand-in or other."""
    if describe.get("standin"):
        return None
    model = str(describe.get("model", ""))
    if model == "openbmb/MiniCPM-V-2_6" or model.startswith(MINICPM_V_2_6):
        return MINICPM_V_2_6
    return None


def benchmark_key(manifest: Manifest) -> str:
    """The benchmark as published numbers name it: Video-MME with subtitles is apart."""
    name = manifest.benchmark.name
    if name == "videomme" and manifest.spec.benchmark_options.get("subtitles"):
        return "videomme-subtitles"
    return name


def partial_reason(manifest: Manifest, missing: int) -> str | None:
    """Why the run does not cover its whole benchmark, or None when it does."""
    spec = manifest.spec
    chosen = [
        flag
        for flag, value in (
            ("--category", spec.categories),
            ("--sample", spec.sample),
            ("--limit", spec.limit),
            ("--shard", spec.shard),
        )
        if value
    ]
    if chosen:
        return f"a selection ({', '.join(chosen)})"
    return f"{missing} planned sample(s) without a record" if missing else None


def comparison(manifest: Manifest, accuracy: dict[str, Any], missing: int) -> dict[str, Any]:
    """The run beside its published number: `value` None when none is published; `partial`
    (why) instead of a difference when the run does not cover the whole benchmark."""
    family = model_family(manifest.backend.describe)
    published = PUBLISHED.get((family, benchmark_key(manifest))) if family else None
    if published is None:
        return {"value": None}
    entry: dict[str, Any] = {"value": published.value, "source": published.source}
    partial = partial_reason(manifest, missing)
    if partial or accuracy["value"] is None:
        return {**entry, "partial": partial or "no samples"}
    ci = accuracy["ci"]
    return {
        **entry,
        "difference": accuracy["value"] - published.value,
        "within_interval": bool(ci and ci[0] <= published.value <= ci[1]),
    }
