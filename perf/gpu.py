"""`nox -s perf -- --gpu`: MiniCPM-V 2.6 at full size, random weights, timed on one GPU.

One question over 64 frames of 720p, as the `local` backend asks it (max_slice_nums=2,
use_image_id=False, greedy), in bf16 with sdpa and, where flash-attn is installed, with
flash_attention_2: `preprocess` (slicing, vision tower, resampler, embedding), `prefill`
(the LLM's first forward pass), `tpot` (decode time per decode step) and peak GPU memory,
each time set against the GPU's physical limit. Writes `results-gpu.md` and
`results-gpu.json` (default: perf/). Nothing is downloaded: the weights are random.

The model is OpenBMB's own code when `--remote-code DIR` holds a copy of it, else a
stand-in built from transformers' classes at the same dimensions. Without CUDA the files
say the measurement was not run, and why. `--tiny` runs the same code at tiny dimensions
on the CPU, a smoke test whose numbers measure nothing.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from gpu_model import (
    FULL,
    TINY,
    Dims,
    Limits,
    Setup,
    Workload,
    build_remote,
    build_standin,
    remote_chat,
    resampler_heads,
    standin_chat,
    synthetic_frames,
)
from PIL import Image
from results import Column, Section, table
from torch import nn

from backends.remote_code import first_line

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "results-gpu"


# First match wins; "\b" keeps GH200 (a different memory system) from matching H200.
GPU_LIMITS: list[tuple[str, Limits]] = [
    (r"\bH200 NVL\b", Limits("H200 NVL", 835.0, 4.8)),
    (r"\bH200\b", Limits("H200 SXM", 989.0, 4.8)),
    (r"\bH100 NVL\b", Limits("H100 NVL", 835.0, 3.9)),
    (r"\bH100 PCIe\b", Limits("H100 PCIe", 756.0, 2.0)),
    (r"\bH100\b.*\bHBM3\b|\bH100 SXM", Limits("H100 SXM", 989.0, 3.35)),
    (r"\bA100-SXM4-80GB\b", Limits("A100 SXM4 80GB", 312.0, 2.039)),
    (r"\bA100 80GB PCIe\b", Limits("A100 PCIe 80GB", 312.0, 1.935)),
]


# --- measuring --------------------------------------------------------------------------


class FirstInput:
    """The sequence length of the first forward pass of `llm` since `reset()` (the prompt)."""

    def __init__(self, llm: nn.Module) -> None:
        self.length: int | None = None
        llm.register_forward_pre_hook(self._before, with_kwargs=True)

    def reset(self) -> None:
        self.length = None

    def _before(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.length is not None:
            return
        for tensor in (kwargs.get("inputs_embeds"), kwargs.get("input_ids"), *args[:1]):
            if isinstance(tensor, torch.Tensor):
                self.length = int(tensor.shape[1])
                return


def measure(llm: nn.Module, chat: Callable[[int, int], None], setup: Setup) -> dict[str, Any]:
    """Warm up once (2 frames, 4 tokens), then time the question: the timer's numbers,
    the prompt's length and, on CUDA, peak memory."""
    from backends.minicpmv import ChatTimer  # torch and transformers: imported when measuring

    timer = ChatTimer(llm, setup.device)
    prompt = FirstInput(llm)
    with torch.inference_mode():
        timer.start()
        chat(min(2, setup.workload.frames), 4)
        timer.finish()
        prompt.reset()
        if setup.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(setup.device)
        timer.start()
        chat(setup.workload.frames, setup.workload.new_tokens)
        timings = timer.finish()
    steps = int(timings["decode_steps"])
    row: dict[str, Any] = {
        "input_tokens": prompt.length,
        "preprocess": timings["preprocess"],
        "prefill": timings["prefill"],
        "decode": timings["decode"],
        "decode_steps": steps,
        "tpot": timings.get("tpot"),  # the local backend's own: decode / decode steps
    }
    row["tpot_ms"] = row["tpot"] * 1e3 if row["tpot"] is not None else None
    if setup.device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(setup.device) / 2**30
    return row


def llm_counts(llm: nn.Module) -> dict[str, int]:
    """Parameters of the LLM: all, the input embedding table and the output head."""
    embedding = llm.get_input_embeddings().weight.numel()
    head = llm.get_output_embeddings().weight.numel()
    return {
        "params": sum(p.numel() for p in llm.parameters()),
        "embedding": embedding,
        "head": head,
    }


def ideal(row: dict[str, Any], counts: dict[str, int], setup: Setup) -> None:
    """Add the physical limits to a measured row: prefill FLOPs at the bf16 dense peak,
    decode bytes at the memory bandwidth, and measured / ideal as a ratio."""
    tokens = row.get("input_tokens")
    if not tokens or not row.get("prefill"):
        return
    layers, hidden = row["llm_layers"], row["llm_hidden"]
    body = counts["params"] - counts["embedding"] - counts["head"]
    # Every weight but the embedding table multiplies every prompt token (2 FLOPs each);
    # the head only the last (generate keeps its logits alone); attention: QK^T and AV
    # over the full T x T (the causal half would be 2 x L x T^2 x d).
    row["prefill_flops"] = 2 * body * tokens + 2 * counts["head"] + 4 * layers * tokens**2 * hidden
    # Per decoded token every weight is read once, but of the embedding table one row.
    row["weight_bytes"] = (counts["params"] - counts["embedding"]) * setup.dtype.itemsize
    row["kv_bytes"] = _kv_bytes(setup.dims, tokens + setup.workload.new_tokens // 2, setup.dtype)
    if setup.limits is None:
        return
    row["prefill_ideal"] = row["prefill_flops"] / (setup.limits.bf16_tflops * 1e12)
    row["tpot_ideal"] = row["weight_bytes"] / (setup.limits.bandwidth_tbs * 1e12)
    row["tpot_ideal_ms"] = row["tpot_ideal"] * 1e3
    row["prefill_ratio"] = row["prefill_ideal"] / row["prefill"]
    if row.get("tpot"):
        row["tpot_ratio"] = row["tpot_ideal"] / row["tpot"]


def _kv_bytes(dims: Dims, context: int, dtype: torch.dtype) -> int:
    """KV cache read per decode step at `context` tokens (keys and values, every layer)."""
    head_dim = dims.hidden_size // dims.heads
    return 2 * dims.layers * dims.kv_heads * head_dim * context * dtype.itemsize


def run_configuration(setup: Setup, attention: str, frames: list[Image.Image]) -> dict[str, Any]:
    """Build the model with this attention, measure it, free it: one row of results.

    Any failure (out of memory included) becomes the row's `error`: one configuration
    must not lose the others' numbers.
    """
    row: dict[str, Any] = {"path": setup.path, "attention": attention}
    try:
        with tempfile.TemporaryDirectory(prefix="vqa-harness-gpu-") as workdir:
            _measure_configuration(row, setup, attention, frames, Path(workdir))
    except torch.OutOfMemoryError as exc:
        row["error"] = f"CUDA out of memory: {first_line(exc)}"
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {first_line(exc)}"
    gc.collect()  # the model is unreachable once the call above has returned
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _measure_configuration(
    row: dict[str, Any], setup: Setup, attention: str, frames: list[Image.Image], workdir: Path
) -> None:
    """Fill `row` as the work goes (what was built, then the numbers)."""
    model, chat, fixes = _prepared(setup, attention, frames, workdir)
    row.update(_described_model(model, fixes))
    if setup.device.type == "cuda":
        row["weights_gib"] = torch.cuda.memory_allocated(setup.device) / 2**30
    row.update(measure(model.llm, chat, setup))
    ideal(row, llm_counts(model.llm), setup)


def _prepared(
    setup: Setup, attention: str, frames: list[Image.Image], workdir: Path
) -> tuple[Any, Callable[[int, int], None], list[str]]:
    """The model and a `chat(frames, new_tokens)` over the first frames, for either path."""
    if setup.remote_code is None:
        standin = build_standin(setup, attention)

        def chat_standin(count: int, tokens: int) -> None:
            standin_chat(standin, setup, frames[:count], tokens)

        return standin, chat_standin, []
    model, processor, fixes = build_remote(setup, attention, workdir)

    def chat(count: int, tokens: int) -> None:
        remote_chat(model, processor, setup, frames[:count], tokens)

    return model, chat, fixes


def _described_model(model: Any, fixes: list[str]) -> dict[str, Any]:
    """What was built: parameter counts, the LLM's shape, each tower's attention."""
    counts = llm_counts(model.llm)
    vision = getattr(model.vpm, "config", None)
    return {
        "llm_params": counts["params"],
        "vision_params": sum(p.numel() for p in model.vpm.parameters()),
        "resampler_params": sum(p.numel() for p in model.resampler.parameters()),
        "llm_layers": model.llm.config.num_hidden_layers,
        "llm_hidden": model.llm.config.hidden_size,
        "vision_layers": len(_vision_layers(model.vpm)),
        "vision_attention": getattr(vision, "_attn_implementation", None),
        "workarounds": fixes,
    }


def _vision_layers(vpm: nn.Module) -> nn.ModuleList:
    """The encoder layers of the published SigLIP (`vpm.encoder`) or of transformers' own."""
    tower = vpm if hasattr(vpm, "encoder") else vpm.vision_model
    return tower.encoder.layers


# --- results ----------------------------------------------------------------------------


def gpu_limits(name: str) -> Limits | None:
    """This GPU's peak and bandwidth from `GPU_LIMITS`, by its name; None if unknown."""
    return next((limits for pattern, limits in GPU_LIMITS if re.search(pattern, name)), None)


def environment(setup: Setup) -> dict[str, Any]:
    """The machine, the versions and the GPU that produced the numbers."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "packages": {name: _version(name) for name in ("transformers", "tokenizers", "flash-attn")},
        "device": str(setup.device),
    }
    if setup.device.type == "cuda":
        properties = torch.cuda.get_device_properties(setup.device)
        info["gpu"] = torch.cuda.get_device_name(setup.device)
        info["gpu_memory_gib"] = properties.total_memory / 2**30
        info["capability"] = f"{properties.major}.{properties.minor}"
    return info


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


TIMES = [
    Column("path", "path"),
    Column("attention (LLM)", "attention"),
    Column("attention (vision)", "vision_attention"),
    Column("input tokens", "input_tokens", "{:,}"),
    Column("preprocess", "preprocess", "{:.3f} s"),
    Column("prefill", "prefill", "{:.3f} s"),
    Column("decode steps", "decode_steps"),
    Column("TPOT", "tpot_ms", "{:.2f} ms"),
    Column("weights", "weights_gib", "{:.1f} GiB"),
    Column("peak memory", "peak_gib", "{:.1f} GiB"),
    Column("error", "error"),
]
LIMITS = [
    Column("attention (LLM)", "attention"),
    Column("prefill FLOPs", "prefill_flops", "{:.3g}"),
    Column("ideal prefill", "prefill_ideal", "{:.3f} s"),
    Column("measured", "prefill", "{:.3f} s"),
    Column("prefill ratio", "prefill_ratio", "{:.2f}"),
    Column("weight bytes per token", "weight_bytes", "{:.3g}"),
    Column("KV cache bytes per token", "kv_bytes", "{:.3g}"),
    Column("ideal TPOT", "tpot_ideal_ms", "{:.2f} ms"),
    Column("measured", "tpot_ms", "{:.2f} ms"),
    Column("TPOT ratio", "tpot_ratio", "{:.2f}"),
]


def write_results(out: Path, setup: Setup, rows: list[dict[str, Any]], started: float) -> str:
    """Write results-gpu.json and results-gpu.md under `out`; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "run": True,
        "tiny": setup.tiny,
        "written_at": _now(),
        "seconds": time.perf_counter() - started,
        "environment": environment(setup),
        "model": {"path": setup.path, "dims": asdict(setup.dims), "random_weights": True},
        "workload": asdict(setup.workload),
        "dtype": str(setup.dtype).removeprefix("torch."),
        "limits": asdict(setup.limits) if setup.limits else None,
        "not_measured": setup.not_measured,
        "rows": rows,
    }
    (out / f"{RESULTS}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = markdown(setup, rows, results)
    (out / f"{RESULTS}.md").write_text(text)
    return text


def markdown(setup: Setup, rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    times = Section("times", "Times", _times_note(setup), TIMES, rows)
    lines = [f"# {_title(setup)}", "", *_provenance(setup, results, rows), ""]
    lines += ["## Times", "", times.note, "", *table(times)]
    limits = Section("limits", "Against the physical limit", _limits_note(setup), LIMITS, rows)
    lines += ["", "## Against the physical limit", "", limits.note, "", *table(limits)]
    lines += ["", "## Not measured", ""]
    lines += [f"- {item}" for item in setup.not_measured] or ["Nothing was left out."]
    return "\n".join(lines) + "\n"


def _title(setup: Setup) -> str:
    if setup.tiny:
        return "TINY SMOKE RUN on the CPU: not a measurement of MiniCPM-V 2.6"
    return "MiniCPM-V 2.6 on one GPU: random weights, full size"


def _provenance(setup: Setup, results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    workload, dims, env = setup.workload, setup.dims, results["environment"]
    device = env.get("gpu", "the CPU")
    if "gpu" in env:
        device += f" ({env['gpu_memory_gib']:.0f} GiB, compute capability {env['capability']})"
    packages = env["packages"]
    flash = packages["flash-attn"] or "not installed"
    model = (
        f"OpenBMB's remote code from `{setup.remote_code}`, in a snapshot of the published "
        "layout (config.json, preprocessor and tokenizer files; no weights)"
        if setup.remote_code
        else "a stand-in built from transformers' classes (Qwen2ForCausalLM, SiglipVisionModel) "
        "and a one-layer cross-attention resampler, at the same dimensions"
    )
    built = next((r for r in rows if "llm_params" in r), None)
    lines = [
        f"Written {results['written_at']} by `python perf/gpu.py` on {device}, host {env['host']}: "
        f"torch {env['torch']} (CUDA {env['cuda']}), transformers {packages['transformers']}, "
        f"tokenizers {packages['tokenizers']}, flash-attn {flash}, Python {env['python']}.",
        "",
        f"**Model**: {model}. **Random weights** (nothing downloaded), "
        f"{str(setup.dtype).removeprefix('torch.')}. Dimensions: LLM hidden {dims.hidden_size}, "
        f"{dims.layers} layers, {dims.heads} heads, {dims.kv_heads} KV heads, intermediate "
        f"{dims.intermediate_size}, vocabulary {dims.vocab_size}; vision hidden "
        f"{dims.vision_hidden_size}, {dims.vision_layers} layers (config.json: "
        f"drop_vision_last_layer false), {dims.vision_heads} heads, intermediate "
        f"{dims.vision_intermediate_size}, patch {dims.patch_size}; "
        f"resampler {dims.query_num} queries, {resampler_heads(dims)} heads.",
    ]
    if built:
        lines[-1] += (
            f" As built: LLM {built['llm_params'] / 1e9:.3f} B parameters, vision tower "
            f"{built['vision_params'] / 1e6:.1f} M ({built['vision_layers']} layers), "
            f"resampler {built['resampler_params'] / 1e6:.1f} M."
        )
        if built.get("workarounds"):
            lines[-1] += " Workarounds applied to the code: " + "; ".join(built["workarounds"])
            lines[-1] += "."
    lines += [
        "",
        f"**Question**: one, over {workload.frames} synthetic frames of "
        f"{workload.width}x{workload.height} RGB, max_slice_nums={workload.max_slice_nums}, "
        "use_image_id=False (each frame: the source image resized to about "
        f"{dims.image_size}x{dims.image_size}, plus its slices), greedy decoding of "
        f"exactly {workload.new_tokens} new tokens (min_new_tokens = max_new_tokens). "
        "Warmed up once (2 frames, 4 tokens) before the timed run.",
    ]
    return lines


def _times_note(setup: Setup) -> str:
    timing = (
        "torch.cuda.synchronize() then perf_counter"
        if setup.device.type == "cuda"
        else ("perf_counter")
    )
    return (
        "`backends.minicpmv.ChatTimer` hooks the LLM's forward passes, as the `local` backend "
        "times them: preprocess = from the call to the first forward (slicing, vision tower, "
        "resampler, embedding), prefill = the first forward, TPOT = the rest / decode steps. "
        f"Each boundary: {timing}. Weights = memory allocated once built; peak = "
        "torch.cuda.max_memory_allocated over the timed run."
        + (
            " The stand-in batches the vision tower by image size (the source images, then "
            "the slices); the published code pads every image to the largest in one batch."
            if setup.remote_code is None
            else ""
        )
    )


def _limits_note(setup: Setup) -> str:
    limits = setup.limits
    if limits:
        where = f"{limits.gpu}: bf16 dense {limits.bf16_tflops:g} TFLOP/s, "
        where += f"{limits.bandwidth_tbs:g} TB/s"
    elif setup.tiny:
        where = "none, on the CPU: no ideal times or ratios"
    else:
        where = "unknown for this GPU: no ideal times or ratios (see --peak-tflops and "
        where += "--bandwidth-tbs)"
    return (
        f"Limits used: {where}. Ratio = ideal time / measured time (1.0 = at the limit). "
        "Prefill FLOPs = 2 x (LLM parameters - embedding - head) x T + 2 x head "
        "(generate computes the last position's logits only) + 4 x layers x T^2 x hidden "
        "(QK^T and AV over the full T x T; causal masking needs half of it), T = input "
        "tokens. Weight bytes per token = (LLM parameters - input embedding, of which one "
        "row is read) x bytes per parameter (2 in bf16); ideal TPOT = weight bytes / "
        "bandwidth. The KV cache read per step (listed, at the prompt plus half the new "
        "tokens) is not counted in the ideal, which is therefore a few percent low."
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_not_run(out: Path, reason: str) -> str:
    """The results files for a machine that cannot run the measurement: why not."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{RESULTS}.json").write_text(
        json.dumps({"run": False, "reason": reason, "written_at": _now()}, indent=2) + "\n"
    )
    text = (
        "# MiniCPM-V 2.6 on one GPU: random weights, full size\n\n"
        f"{reason}\n\nWritten {_now()} by `python perf/gpu.py` on host {platform.node()}; "
        "see perf/README.md (GPU measurement) for what it measures.\n"
    )
    (out / f"{RESULTS}.md").write_text(text)
    return text


# --- command line -----------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="results directory (default perf/; --tiny: temp)")
    parser.add_argument(
        "--remote-code", type=Path, help="a directory with OpenBMB's .py files of MiniCPM-V-2_6"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny dimensions on the CPU (smoke)")
    parser.add_argument("--frames", type=int, help="frames per question (default 64; --tiny 4)")
    parser.add_argument("--new-tokens", type=int, help="tokens decoded (default 64; --tiny 8)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak of an unknown GPU")
    parser.add_argument("--bandwidth-tbs", type=float, help="memory bandwidth of an unknown GPU")
    return parser.parse_args(argv)


def make_setup(args: argparse.Namespace) -> Setup:
    """The run the arguments ask for: full size in bf16 on cuda:0, or tiny on the CPU."""
    device = torch.device("cpu") if args.tiny else torch.device("cuda", 0)
    workload = Workload(
        frames=args.frames or (4 if args.tiny else 64),
        new_tokens=args.new_tokens or (8 if args.tiny else 64),
    )
    limits = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        limits = gpu_limits(name)
        if args.peak_tflops and args.bandwidth_tbs:
            limits = Limits(name, args.peak_tflops, args.bandwidth_tbs)
    setup = Setup(
        dims=TINY if args.tiny else FULL,
        workload=workload,
        device=device,
        dtype=torch.float32 if args.tiny else torch.bfloat16,
        tiny=args.tiny,
        remote_code=args.remote_code,
        limits=limits,
    )
    if args.tiny:
        setup.not_measured.append("GPU memory and the physical limits: a CPU run")
    elif limits is None:
        name = torch.cuda.get_device_name(device)
        setup.not_measured.append(f"ratios: {name} is not in the table of limits (GPU_LIMITS)")
    return setup


def attentions(setup: Setup) -> list[str]:
    """sdpa always; flash_attention_2 where it can run, else the reason goes in `not_measured`."""
    if setup.device.type != "cuda":
        setup.not_measured.append("flash_attention_2: runs on CUDA only (this run is on the CPU)")
        return ["sdpa"]
    if importlib.util.find_spec("flash_attn") is None:
        setup.not_measured.append("flash_attention_2: the flash-attn package is not installed")
        return ["sdpa"]
    return ["sdpa", "flash_attention_2"]


def main(argv: list[str] | None = None) -> int:
    """Measure, or say why not; 1 if no configuration could be measured."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded, ever
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    started = time.perf_counter()
    args = parse(argv)
    out = args.out or (
        Path(tempfile.gettempdir()) / "vqa-harness-gpu-tiny" if args.tiny else ROOT / "perf"
    )
    if not args.tiny and not torch.cuda.is_available():
        print(write_not_run(out, not_run_reason()))
        return 0
    if args.remote_code and not (args.remote_code / "modeling_minicpmv.py").is_file():
        print(f"--remote-code {args.remote_code}: no modeling_minicpmv.py there", file=sys.stderr)
        return 2
    setup = make_setup(args)
    frames = synthetic_frames(setup.workload.frames, setup.workload.width, setup.workload.height)
    rows = [run_configuration(setup, attention, frames) for attention in attentions(setup)]
    setup.not_measured += [f"{r['attention']}: {r['error']}" for r in rows if r.get("error")]
    print(write_results(out, setup, rows, started))
    print(f"results written to {out}")
    return 0 if any(not row.get("error") for row in rows) else 1


def not_run_reason() -> str:
    return (
        f"not run: CUDA is not available on this machine (torch {torch.__version__}); "
        "run `nox -s perf -- --gpu` on a CUDA machine"
    )


if __name__ == "__main__":
    sys.exit(main())
