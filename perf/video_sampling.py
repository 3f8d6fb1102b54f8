"""Frame sampling against OpenBMB's decord recipe: per video, and per question.

For each generated clip, one loop plays a Video-MME-like workload of three
questions about the video, side by side: a peer runs the decord recipe for each
question; we ask a `FrameCache` (one decode, then hits) and, after the second
and third questions, also time `sample_frames` alone. Per-video sampling time is
the median of the three decord runs against the median of our three decodes
(the cache's first, which decodes, and the two direct ones), and the frames of
the first decord run and of our first decode are compared.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from clips import Clip, ensure
from results import Column, Section

from harness.media.frames import FrameCache
from harness.media.video import SampledFrames, sample_frames

MAX_NUM_FRAMES = 64
QUESTIONS_PER_VIDEO = 3
PIXEL_TOLERANCE = 1  # max abs difference per channel counted as the same frame
CLIPS = [Clip(seconds, gop) for seconds in (10, 120, 1800) for gop in (2, 10)]
QUICK_CLIPS = [Clip(10, 2), Clip(10, 10)]
T = TypeVar("T")


def uniform_sample(items: list[int], n: int) -> list[int]:
    """The recipe's `uniform_sample`: the middle of `n` equal bins."""
    gap = len(items) / n
    idxs = [int(i * gap + gap / 2) for i in range(n)]
    return [items[i] for i in idxs]


def decord_recipe(path: Path) -> SampledFrames:
    """OpenBMB's `encode_video` for MiniCPM-V 2.6 as the model card has it, frames as one array."""
    from decord import VideoReader, cpu

    vr = VideoReader(str(path), ctx=cpu(0))
    sample_fps = round(vr.get_avg_fps() / 1)  # FPS
    frame_idx = list(range(0, len(vr), sample_fps))
    if len(frame_idx) > MAX_NUM_FRAMES:
        frame_idx = uniform_sample(frame_idx, MAX_NUM_FRAMES)
    return SampledFrames(vr.get_batch(frame_idx).asnumpy(), frame_idx)


def _timed(call: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds of the whole process, every thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _warm(path: Path) -> None:
    """Read the file once, so that neither reader pays for the disk."""
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass


def _video(clip: Clip, path: Path, cache: FrameCache) -> tuple[dict[str, Any], dict[str, Any]]:
    """The clip's sampling row and decode-per-question row."""
    _warm(path)
    decord: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    per_question: dict[str, list[float]] = {"decord": [], "ours": []}
    reference = first = None
    for question in range(QUESTIONS_PER_VIDEO):
        theirs, wall, cpu = _timed(lambda: decord_recipe(path))
        decord.append((wall, cpu))
        per_question["decord"].append(wall)
        got, wall, cpu = _timed(lambda: cache.get(path))
        per_question["ours"].append(wall)
        if question == 0:
            reference, first = theirs, got.sampled
            ours.append((wall, cpu))
        else:
            _, wall, cpu = _timed(lambda: sample_frames(path, max_frames=MAX_NUM_FRAMES))
            ours.append((wall, cpu))
    assert reference is not None and first is not None
    same_indices = reference.indices == first.indices
    diff = None
    if same_indices and reference.frames.shape == first.frames.shape:
        diff = int(np.abs(reference.frames.astype(np.int16) - first.frames).max())
    decord_s = statistics.median(w for w, _ in decord)
    ours_s = statistics.median(w for w, _ in ours)
    identical = diff is not None and diff <= PIXEL_TOLERANCE
    sampling = {
        "name": f"sampling, {clip.name}",
        "video": clip.name,
        "frames": len(first.indices),
        "decord_s": round(decord_s, 3),
        "ours_s": round(ours_s, 3),
        "ratio": round(ours_s / decord_s, 3),
        "decord_runs_s": [round(w, 3) for w, _ in decord],
        "ours_runs_s": [round(w, 3) for w, _ in ours],
        "decord_cpu_s": round(statistics.median(c for _, c in decord), 3),
        "ours_cpu_s": round(statistics.median(c for _, c in ours), 3),
        "indices_equal": same_indices,
        "max_abs_diff": diff,
        "target": f"<= 1.0x, same indices, max abs diff <= {PIXEL_TOLERANCE}",
        "met": identical and ours_s <= decord_s,
    }
    decode = {
        "name": f"decode per question, {clip.name}",
        "video": clip.name,
        "questions": QUESTIONS_PER_VIDEO,
        "decord_s": round(sum(per_question["decord"]), 3),
        "ours_s": round(sum(per_question["ours"]), 3),
        "decord_per_question_s": round(statistics.mean(per_question["decord"]), 3),
        "ours_per_question_s": round(statistics.mean(per_question["ours"]), 3),
        "ratio": round(sum(per_question["ours"]) / sum(per_question["decord"]), 3),
    }
    return sampling, decode


def measure(directory: Path, *, quick: bool = False) -> list[Section]:
    """Generation, sampling time and decode cost per question over the clips."""
    clips = QUICK_CLIPS if quick else CLIPS
    generation = Section(
        key="clip_generation",
        title="Generated videos",
        note=(
            "1280x720, 30 fps H.264 (libx264 superfast, CRF 23, 3 B-frames, an IDR frame"
            " every GOP exactly) of a textured pan under a moving box; the 30 min clips"
            " repeat the 2 min ones by copying packets (see perf/clips.py). Generated"
            f" once into {directory}; a clip found there shows no time."
        ),
        columns=[
            Column("video", "video"),
            Column("frames", "frames"),
            Column("size", "size_mb", "{:.0f} MB"),
            Column("generated in", "generation_s", "{:.1f} s"),
        ],
    )
    paths = {}
    for clip in clips:
        seconds = ensure(clip, directory)
        paths[clip] = path = clip.path(directory)
        generation.rows.append(
            {
                "name": clip.name,
                "video": clip.name,
                "frames": clip.seconds * 30,
                "size_mb": round(path.stat().st_size / 1e6, 1),
                "generation_s": None if seconds is None else round(seconds, 1),
            }
        )
    cache = FrameCache(fps=1.0, max_frames=MAX_NUM_FRAMES, max_bytes=4096 << 20)
    rows = [_video(clip, paths[clip], cache) for clip in clips]
    sampling = _sampling_section([s for s, _ in rows])
    decode = _decode_section([d for _, d in rows])
    return [generation, sampling, decode]


def _sampling_section(rows: list[dict[str, Any]]) -> Section:
    ratios = [row["ratio"] for row in rows]
    geomean = math.exp(statistics.mean(math.log(r) for r in ratios))
    decord_total = sum(row["decord_s"] for row in rows)
    ours_total = sum(row["ours_s"] for row in rows)
    summary = {
        "name": "sampling, over the set",
        "video": f"all {len(rows)} (geometric mean of ratios; totals)",
        "decord_s": round(decord_total, 3),
        "ours_s": round(ours_total, 3),
        "ratio": round(geomean, 3),
        "total_ratio": round(ours_total / decord_total, 3),
        "target": "<= 0.7x (aim)",
        "met": geomean <= 0.7,
    }
    return Section(
        key="frame_sampling",
        title="Frame sampling against the decord recipe",
        note=(
            "Wall time of sampling one video (1 frame per second, at most 64): OpenBMB's"
            " decord recipe (`VideoReader`, `get_batch(...).asnumpy()`) against"
            " `harness.media.video.sample_frames`, each the median of 3 runs in one process,"
            " alternating, file in the page cache. CPU is process CPU time over all threads."
            " Frames: the recipe's indices against ours, and the largest per-channel"
            f" difference of the RGB frames (same frame: at most {PIXEL_TOLERANCE})."
        ),
        columns=[
            Column("video", "video"),
            Column("frames", "frames"),
            Column("decord", "decord_s", "{:.2f} s"),
            Column("ours", "ours_s", "{:.2f} s"),
            Column("ratio", "ratio", "{:.2f}x"),
            Column("CPU decord", "decord_cpu_s", "{:.2f} s"),
            Column("CPU ours", "ours_cpu_s", "{:.2f} s"),
            Column("same indices", "indices_equal"),
            Column("max abs diff", "max_abs_diff"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[*rows, summary],
    )


def _decode_section(rows: list[dict[str, Any]]) -> Section:
    decord_total = sum(row["decord_s"] for row in rows)
    ours_total = sum(row["ours_s"] for row in rows)
    questions = sum(row["questions"] for row in rows)
    summary = {
        "name": "decode per question, workload",
        "video": f"workload: {len(rows)} videos, {questions} questions",
        "questions": questions,
        "decord_s": round(decord_total, 3),
        "ours_s": round(ours_total, 3),
        "decord_per_question_s": round(decord_total / questions, 3),
        "ours_per_question_s": round(ours_total / questions, 3),
        "ratio": round(ours_total / decord_total, 3),
        "target": "<= 0.4x",
        "met": ours_total / decord_total <= 0.4,
    }
    return Section(
        key="decode_per_question",
        title="Decode cost per question, 3 questions per video",
        note=(
            f"A Video-MME-like workload: {QUESTIONS_PER_VIDEO} questions per video. A peer runs"
            " the decord recipe for every question; we ask one `FrameCache` (the local"
            " backend's: the first question decodes, the others share its frames)."
        ),
        columns=[
            Column("video", "video"),
            Column("questions", "questions"),
            Column("decord / question", "decord_per_question_s", "{:.2f} s"),
            Column("ours / question", "ours_per_question_s", "{:.2f} s"),
            Column("ratio", "ratio", "{:.2f}x"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[*rows, summary],
    )
