"""MiniCPM-V 2.6 in this process with Hugging Face transformers, by OpenBMB's video recipe.

Per sample: frames from `harness.media.video` (1 fps, at most 64, mid-bin indices;
decoded once per video and shared by its questions), then
`model.chat(image=None, msgs=[{"role": "user", "content": frames + [prompt]}],
use_image_id=False, max_slice_nums=2, ...)`. Greedy decoding by default: in
2.6's `chat()`, `sampling=False` alone means beam search with 3 beams and
repetition_penalty 1.2, so greedy passes `num_beams=1, repetition_penalty=1.0`.
`max_inp_length` is raised above chat()'s 8192 whenever the frames and prompt
could exceed it, so the question is never cut off; the record says when. The
processor is loaded once, with the model, at its revision, and passed to every
`chat()`. `usage.output_tokens` counts the answer's tokens, `usage.decode_steps`
the language model's forward passes after the prefill, and `tpot` is `decode`
per decode step.

One generation runs at a time (concurrency 1 by default), while the runner
has the next samples' frames decoded ahead (`prepare`, the `decode_ahead` run
setting): `frames` is then the time a sample waited for its frames (about 0),
and the run's `prepare` timing the time its decode took off the critical path.

torch, transformers and PyAV are imported on first use: pricing a finished run
(`estimate_cost`) or listing the backend loads none of them. Where CUDA or the
weights are missing, `bench --demo` runs a tiny random-weight stand-in of the model
on the CPU instead (`bench_standin`, built by `backends.standin_model`).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from harness.protocols import Cost, HttpMode, SessionSpan, StandIn, session_time
from harness.registry import option_specs, options_of
from harness.types import Answer, BackendError, Query, Record

DEFAULT_MODEL = "openbmb/MiniCPM-V-2_6"
_DTYPES = {"bfloat16", "float16", "float32"}
# How `bench --demo` runs the demo model: on the CPU, with short answers.
DEMO_OPTIONS = {"device": "cpu", "max_new_tokens": 8}
MAX_NEW_TOKENS = 2048
STANDIN_MAX_NEW_TOKENS = 16
"""The default answer length on a random-weight stand-in: its answers are noise, and at
2,048 tokens a sample takes a minute on a CPU."""


def local_file(video: str) -> str:
    """A local file as it is; an http(s) URL's file, downloaded once."""
    if video.startswith(("http://", "https://")):
        from harness.media.downloads import download_video

        return str(download_video(video))
    return video


def _device_and_attention(settings: Mapping[str, Any]) -> tuple[Any, str]:
    """The torch device and attention implementation `settings` (every option) ask for;
    a value out of range is a `ValueError`, a device or attention this machine lacks a
    `ModelLoadError`."""
    for option in ("max_frames", "max_slice_nums", "max_new_tokens", "num_beams", "top_k"):
        if (settings[option] or 1) < 1:  # max_new_tokens None: the model's default
            raise ValueError(f"{option} must be at least 1, got {settings[option]}")
    if settings["fps"] <= 0:
        raise ValueError(f"fps must be positive, got {settings['fps']}")
    from backends import minicpmv

    try:
        device = minicpmv.choose_device(settings["device"])
        return device, minicpmv.choose_attention(settings["attention"], device)
    except ValueError as exc:
        raise minicpmv.ModelLoadError(f"cannot load {settings['model']}: {exc}") from None


@dataclass
class LocalBackend:
    """MiniCPM-V 2.6 run locally with transformers (trust_remote_code), on CUDA when present."""

    name: ClassVar[str] = "local"
    default_concurrency: ClassVar[int] = 1
    price_unit: ClassVar[str] = "GPU-hour (of the run's sessions, model loading included)"

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "Hub id or local directory"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch or sha)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda:$LOCAL_RANK, else cpu)"})
    dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={"help": "weights' dtype (OpenBMB: bfloat16)"}
    )
    attention: Literal["auto", "sdpa", "flash_attention_2"] = field(
        default="auto", metadata={"help": "auto: flash_attention_2 when installed, else sdpa"}
    )
    fps: float = field(default=1.0, metadata={"help": "frames sampled per second of video"})
    max_frames: int = field(default=64, metadata={"help": "frame cap (OpenBMB: 64)"})
    max_slice_nums: int = field(
        default=2, metadata={"help": "image slices per frame (1 saves memory)"}
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": f"longest answer in tokens (default {MAX_NEW_TOKENS}; "
            f"{STANDIN_MAX_NEW_TOKENS} on a random-weight stand-in)"
        },
    )
    sampling: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    num_beams: int = field(default=1, metadata={"help": "beams when not sampling (1: greedy)"})
    temperature: float = field(default=0.7, metadata={"help": "with sampling"})
    top_p: float = field(default=0.8, metadata={"help": "with sampling"})
    top_k: int = field(default=100, metadata={"help": "with sampling"})
    repetition_penalty: float | None = field(
        default=None, metadata={"help": "default: 1.0 greedy, 1.05 sampling, 1.2 beams"}
    )
    seed: int = field(default=0, metadata={"help": "sampling seed, mixed with the sample id"})
    frame_cache_mb: int = field(default=4096, metadata={"help": "memory for shared frames"})
    _model: Any = field(default=None, init=False, repr=False)
    _timer: Any = field(default=None, init=False, repr=False)
    _frames: Any = field(default=None, init=False, repr=False)  # FrameCache, made on load
    _gpu: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        from backends import minicpmv
        from harness.media.frames import FrameCache

        device, attention = _device_and_attention(options_of(self))
        dtype = getattr(minicpmv.torch, self.dtype)
        self._model = minicpmv.load(self.model, self.revision, device, dtype, attention)
        if self.max_new_tokens is None:
            standin = getattr(self._model.model.config, "standin", False)
            self.max_new_tokens = STANDIN_MAX_NEW_TOKENS if standin else MAX_NEW_TOKENS
        if self.device == "auto" and device.type == "cpu":
            warnings.warn(
                "CUDA is not available: the local backend runs on the CPU, which is far slower",
                RuntimeWarning,
                stacklevel=2,
            )
        self._timer = minicpmv.ChatTimer(self._model.model.llm, device)
        self._frames = FrameCache(
            fps=self.fps, max_frames=self.max_frames, max_bytes=self.frame_cache_mb * 2**20
        )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """What this machine tells without loading the model or asking the Hub
        (`ChecksOptions`): the options' ranges, the device and attention, and a model
        directory's config and weights. Whether a Hub model can be had is asked when the
        backend is built, in one short request, before the weights load."""
        from backends import minicpmv

        settings = {spec.name: spec.default for spec in option_specs(cls)} | dict(options)
        _device_and_attention(settings)
        minicpmv.check_directory(settings["model"])

    @classmethod
    def unavailable_reason(cls, mode: HttpMode = "live") -> str | None:
        """Its libraries missing; it makes no HTTP request to record or replay."""
        missing = [
            m for m in ("torch", "transformers", "PIL") if importlib.util.find_spec(m) is None
        ]
        if missing:
            return f"needs {', '.join(missing)}: pip install -e '.[local]' (from a checkout)"
        return None

    @classmethod
    def real_model_reason(cls, model: str = DEFAULT_MODEL) -> str | None:
        """Why the real model cannot run well here (no CUDA, weights not cached), or None."""
        import torch
        from huggingface_hub import try_to_load_from_cache

        if not torch.cuda.is_available():
            return "CUDA is not available"
        if not isinstance(try_to_load_from_cache(model, "model.safetensors.index.json"), str):
            return f"the weights of {model} are not in the Hugging Face cache"
        return None

    @classmethod
    def estimate_cost(
        cls, records: Sequence[Record], sessions: Sequence[SessionSpan], price: float | None
    ) -> Cost:
        """Price per GPU-hour times the sessions' summed wall time, per sample written."""
        if price is None:
            return Cost(None, "no GPU price given")
        gpu_seconds, written = session_time(sessions)
        if not written:
            return Cost(None, "no finished session wrote a sample")
        basis = f"{gpu_seconds:.1f} GPU-seconds for {written} samples at ${price:g}/GPU-hour"
        return Cost(1000 * price * gpu_seconds / 3600 / written, basis)

    @classmethod
    def bench_standin(cls, benchmark: str, demo_dir: Path | None) -> StandIn | str | None:
        """Without CUDA or the weights: the demo model, built into `demo_dir`, on the CPU."""
        reason = cls.unavailable_reason()
        if reason is not None:
            return reason
        reason = cls.real_model_reason()
        if reason is None or demo_dir is None:
            return reason
        from backends.standin_model import build_standin

        model = build_standin(demo_dir)
        note = (
            f"ran the tiny demo model {model} (random weights) on the CPU, because "
            f"{reason}: its answers and timings say nothing about MiniCPM-V 2.6"
        )
        return StandIn(note, options={"model": str(model), **DEMO_OPTIONS})

    def describe(self) -> dict[str, Any]:
        """Every option, with `auto` resolved, plus what the recipe fixes and the versions."""
        from backends import minicpmv

        loaded = self._model
        config = loaded.model.config
        return {
            **options_of(self),
            "device": str(loaded.device),
            "attention": loaded.attention(),
            "remote_code_workarounds": loaded.workarounds,
            "commit": loaded.commit,
            "standin": bool(getattr(config, "standin", False)),
            "frame_sampling": "OpenBMB: one frame per 1/fps s; above max_frames, mid-bin uniform",
            "use_image_id": False,
            "generation": self.generation_kwargs(),
            **minicpmv.library_versions(),
        }

    def generation_kwargs(self) -> dict[str, Any]:
        """The keys 2.6's chat() lets callers override, for this decoding mode."""
        if self.sampling:
            penalty = 1.05 if self.repetition_penalty is None else self.repetition_penalty
            return {
                "temperature": self.temperature,
                "top_p": self.top_p,
                "top_k": self.top_k,
                "repetition_penalty": penalty,
            }
        default_penalty = 1.0 if self.num_beams == 1 else 1.2
        penalty = default_penalty if self.repetition_penalty is None else self.repetition_penalty
        return {"num_beams": self.num_beams, "repetition_penalty": penalty}

    async def answer(self, query: Query) -> Answer:
        from harness.media.video import VideoError

        assert self._frames is not None
        try:
            frames = await asyncio.to_thread(self._frames_of, query.video)
        except VideoError as exc:
            raise BackendError("bad_video", str(exc)) from exc
        timer = self._timer
        try:
            return await asyncio.to_thread(self._generate, query, frames)
        except asyncio.CancelledError:
            timer.stop.set()  # the thread stops at its next forward pass
            raise

    def prepare(self, video: str) -> None:
        """Decode and sample the video's frames into the shared cache, ahead of its questions."""
        assert self._frames is not None
        self._frames.warm(local_file(video))

    def _frames_of(self, video: str) -> Any:
        assert self._frames is not None
        return self._frames.get(local_file(video))

    async def aclose(self) -> None:
        self._frames = None

    def _generate(self, query: Query, frames: Any) -> Answer:
        from backends import minicpmv

        loaded = self._model
        images = minicpmv.to_images(frames.sampled.frames)
        prompt_tokens = len(loaded.tokenizer(query.prompt, add_special_tokens=False)["input_ids"])
        sizes = [image.size for image in images]
        needed = minicpmv.input_budget(
            loaded.model.config, sizes, prompt_tokens, self.max_slice_nums
        )
        max_inp_length = max(minicpmv.DEFAULT_MAX_INP_LENGTH, needed)
        waited = time.perf_counter()
        with self._gpu:
            gpu_wait = time.perf_counter() - waited
            if self.sampling:
                seed = hashlib.sha256(f"{self.seed}:{query.sample_id}".encode()).digest()
                minicpmv.torch.manual_seed(int.from_bytes(seed[:8], "little"))
            if loaded.device.type == "cuda":
                minicpmv.torch.cuda.reset_peak_memory_stats(loaded.device)
            answer_tokens = minicpmv.AnswerTokens(loaded.tokenizer)
            self._timer.start()
            try:
                text = loaded.model.chat(
                    image=None,
                    msgs=[{"role": "user", "content": [*images, query.prompt]}],
                    tokenizer=answer_tokens,
                    processor=loaded.processor,
                    sampling=self.sampling,
                    max_new_tokens=self.max_new_tokens,
                    max_inp_length=max_inp_length,
                    max_slice_nums=self.max_slice_nums,
                    use_image_id=False,
                    **self.generation_kwargs(),
                )
            except minicpmv.GenerationStopped:
                raise BackendError("cancelled", "generation stopped: sample cancelled") from None
            except minicpmv.torch.OutOfMemoryError as exc:
                minicpmv.torch.cuda.empty_cache()
                raise BackendError(
                    "out_of_memory",
                    f"CUDA out of memory with {len(images)} frames of {sizes[0][0]}x{sizes[0][1]} "
                    f"at max_slice_nums={self.max_slice_nums}: try -B max_slice_nums=1 or fewer "
                    f"frames (-B max_frames=32)",
                ) from exc
            timings = self._timer.finish()
            peak = (
                minicpmv.torch.cuda.max_memory_allocated(loaded.device)
                if loaded.device.type == "cuda"
                else None
            )
        decode_steps = int(timings.pop("decode_steps"))
        timings["frames"] = frames.seconds
        meta: dict[str, Any] = {
            "frames": len(images),
            "frame_indices": frames.sampled.indices,
            "frame_times_s": frames.sampled.times,
            "frame_size": list(sizes[0]) if sizes else None,
            "slices_per_frame": minicpmv.slices_per_frame(
                loaded.processor, sizes[0], self.max_slice_nums
            ),
            "frames_decoded_here": frames.decoded,
            "max_inp_length": max_inp_length,
            "max_inp_length_raised": max_inp_length > minicpmv.DEFAULT_MAX_INP_LENGTH,
            "gpu_wait": gpu_wait,
        }
        if peak is not None:
            meta["peak_gpu_memory_bytes"] = peak
        return Answer(
            text=text,
            timings={k: float(v) for k, v in timings.items()},
            usage={"output_tokens": answer_tokens.count(text), "decode_steps": decode_steps},
            meta=meta,
        )
