"""Named presets: the settings behind a published number, with their source.

A preset fixes the benchmark and the `local` backend's options that a
publisher stated, and says which settings it left unstated and what this
harness uses for them. `--preset NAME` applies one; the run's spec names it
and its manifest records it in full (`Preset.to_dict`). Only the `local`
backend exposes these settings: the fal endpoint sets frames and decoding
itself, so a preset on any other backend is refused rather than half applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import UsageError

OPENBMB_SOURCE = (
    "OpenBMB's MiniCPM-V 2.6 model documentation (model card openbmb/MiniCPM-V-2_6, "
    "github.com/OpenBMB/MiniCPM-V README): Video-MME, at most 64 frames, max_slice_nums=1"
)
_OPENBMB_UNSTATED = {
    "decoding": "not stated by OpenBMB; used: greedy (num_beams=1, sampling=false)",
    "answer extraction": "not stated by OpenBMB; used: this harness's multiple-choice extractor",
}


@dataclass(frozen=True)
class Preset:
    """A benchmark and backend settings as a publisher evaluated them."""

    name: str
    benchmark: str
    backend: str
    backend_options: dict[str, Any]
    source: str
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    unstated: dict[str, str] = field(default_factory=dict)
    """Settings the source does not state -> what is used for them."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(
        self,
        backend: str,
        benchmark: str | None,
        backend_options: dict[str, Any],
        benchmark_options: dict[str, Any],
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Benchmark, backend options and benchmark options with the preset's settings in;
        a choice that contradicts them is a `UsageError`."""
        if backend != self.backend:
            raise UsageError(
                f"--preset {self.name} sets {self.backend} backend options "
                f"({_pairs(self.backend_options)}) that backend {backend!r} does not expose; "
                f"use --backend {self.backend}, or --benchmark {self.benchmark} without the preset"
            )
        if benchmark is not None and benchmark != self.benchmark:
            raise UsageError(
                f"--preset {self.name} runs --benchmark {self.benchmark}; "
                f"drop --benchmark {benchmark}"
            )
        for flag, given, fixed in (
            ("-B", backend_options, self.backend_options),
            ("-S", benchmark_options, self.benchmark_options),
        ):
            for key, value in given.items():
                if key in fixed and str(value).lower() != str(fixed[key]).lower():
                    raise UsageError(
                        f"--preset {self.name} sets {key}={_text(fixed[key])}; "
                        f"drop {flag} {key}={value}"
                    )
        return (
            self.benchmark,
            {**backend_options, **self.backend_options},
            {**benchmark_options, **self.benchmark_options},
        )


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _pairs(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_text(value)}" for key, value in options.items())


_OPENBMB_LOCAL = {"max_frames": 64, "max_slice_nums": 1, "num_beams": 1, "sampling": False}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="openbmb-videomme",
            benchmark="videomme",
            benchmark_options={"subtitles": False},
            backend="local",
            backend_options=_OPENBMB_LOCAL,
            source=OPENBMB_SOURCE + "; without subtitles",
            unstated=_OPENBMB_UNSTATED,
        ),
        Preset(
            name="openbmb-videomme-subtitles",
            benchmark="videomme-subtitles",
            benchmark_options={"subtitles": True},
            backend="local",
            backend_options=_OPENBMB_LOCAL,
            source=OPENBMB_SOURCE + "; with subtitles",
            unstated=_OPENBMB_UNSTATED,
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; an unknown name is a `UsageError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"no preset {name!r} (presets: {', '.join(PRESETS)})") from None
