"""The synthetic probe suite: size, determinism, caching, and answers checked from pixels.

The oracle below decodes every video with `harness.media.video.sample_frames` (the
MiniCPM-V 2.6 recipe a backend sees) and works out each answer from the
pixels alone; it must agree with every sample. The same oracle given only the
first two sampled frames must do badly, which is what makes the suite a probe
of whole-timeline understanding.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import synthetic as synthetic_module
from benchmarks.synthetic import (
    COLORS,
    FPS,
    GENERATOR_VERSION,
    SyntheticSuite,
    default_cache_dir,
    ensure_video,
    ground_truth,
    video_key,
)
from harness.media.video import probe, sample_frames
from harness.plugins import benchmarks as registry
from harness.types import Sample

LETTERS = "ABCD"


@pytest.fixture(scope="module")
def samples(synthetic_cache: Path) -> list[Sample]:
    return list(SyntheticSuite(cache_dir=synthetic_cache).samples())


@pytest.fixture(scope="module")
def decoded(samples: list[Sample]) -> dict[str, np.ndarray]:
    """Each video's frames as the recipe samples them, decoded once."""
    return {video: sample_frames(video).frames for video in {s.video for s in samples}}


# --- shape and spread ---------------------------------------------------------------


def test_suite_size_and_categories(samples):
    assert len(samples) >= 36
    per_category = collections.Counter(s.category for s in samples)
    assert set(per_category) == {"color_order", "counting", "motion", "shape_order"}
    assert min(per_category.values()) >= 6
    assert len({s.id for s in samples}) == len(samples)
    per_video = collections.Counter(s.video for s in samples)
    assert max(per_video.values()) >= 3
    assert sum(1 for n in per_video.values() if n > 1) >= 10


def test_samples_are_well_formed(samples):
    for sample in samples:
        family, number, kind = sample.id.split("/")
        assert family == sample.category and number.isdigit() and kind == sample.meta["kind"]
        assert Path(sample.video).is_absolute() and Path(sample.video).is_file()
        assert Path(sample.video).name == f"{sample.meta['video_key']}.mp4"
        assert len(sample.options) == 4 == len(set(sample.options))
        assert sample.answer in LETTERS
        assert sample.options[LETTERS.index(sample.answer)] == sample.meta["answer_text"]
        json.dumps(sample.to_dict())  # records must be able to hold it


def test_answers_are_spread_over_the_letters(samples):
    letters = collections.Counter(s.answer for s in samples)
    assert set(letters) == set(LETTERS)
    assert max(letters.values()) - min(letters.values()) <= 2
    for category in {s.category for s in samples}:
        assert len({s.answer for s in samples if s.category == category}) >= 3


def test_prompt_lists_the_options(samples):
    suite = SyntheticSuite()
    sample = samples[0]
    prompt = suite.prompt(sample)
    assert prompt.startswith(sample.question)
    for letter, option in zip(LETTERS, sample.options, strict=True):
        assert f"{letter}. {option}" in prompt


def test_scoring_uses_the_answer_letter(samples):
    suite = SyntheticSuite()
    for sample in samples[:8]:
        assert suite.score(sample, sample.answer).correct
        wrong = next(letter for letter in LETTERS if letter != sample.answer)
        assert not suite.score(sample, wrong).correct


# --- determinism and caching ----------------------------------------------------------


def test_same_seed_same_samples(samples, synthetic_cache):
    again = list(SyntheticSuite(seed=0, cache_dir=synthetic_cache).samples())
    assert [s.to_dict() for s in again] == [s.to_dict() for s in samples]


def test_a_different_seed_is_a_different_suite():
    zero, one = ground_truth(0), ground_truth(1)
    assert [v.spec for v in zero] != [v.spec for v in one]
    assert {v.key for v in zero}.isdisjoint(v.key for v in one)
    assert [q.answer for v in zero for q in v.questions] != [
        q.answer for v in one for q in v.questions
    ]
    assert [v.spec for v in ground_truth(1)] == [v.spec for v in one]


def test_second_build_reuses_the_cache(samples, synthetic_cache, monkeypatch):
    files = sorted(synthetic_cache.glob("*.mp4"))
    assert len(files) == len({s.video for s in samples})
    before = {f: f.stat().st_mtime_ns for f in files}

    def must_not_generate(*args, **kwargs):
        raise AssertionError("a cached video was generated again")

    monkeypatch.setattr(synthetic_module, "write_video", must_not_generate)
    again = list(SyntheticSuite(cache_dir=synthetic_cache).samples())
    assert len(again) == len(samples)
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert not [p for p in synthetic_cache.iterdir() if not p.name.endswith(".mp4")]


def test_a_missing_video_is_generated_once(tmp_path, monkeypatch):
    spec = ground_truth(0)[0].spec
    calls = []
    real = synthetic_module.write_video
    monkeypatch.setattr(synthetic_module, "write_video", lambda s, p: (calls.append(p), real(s, p)))
    path = ensure_video(spec, tmp_path / "cache")
    assert path == tmp_path / "cache" / f"{video_key(spec)}.mp4"
    assert ensure_video(spec, tmp_path / "cache") == path
    assert len(calls) == 1
    assert calls[0] != path  # written elsewhere, then renamed into place
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(spec, path):
        Path(path).write_bytes(b"half a video")
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic_module, "write_video", broken)
    with pytest.raises(RuntimeError):
        ensure_video(ground_truth(0)[0].spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_file_name_is_a_content_key():
    spec = ground_truth(0)[0].spec
    text = json.dumps({"generator": GENERATOR_VERSION, "spec": spec}, sort_keys=True)
    assert video_key(spec) == hashlib.sha256(text.encode()).hexdigest()
    assert video_key({**spec, "duration": spec["duration"] + 1}) != video_key(spec)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert default_cache_dir() == tmp_path / "a" / "synthetic"
    monkeypatch.delenv("VQA_HARNESS_CACHE")
    assert default_cache_dir() == tmp_path / "b" / "vqa-harness" / "synthetic"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "vqa-harness" / "synthetic"


def test_registered_with_typed_options(tmp_path):
    suite = registry.create("synthetic", seed="3", cache_dir=str(tmp_path))
    assert isinstance(suite, SyntheticSuite)
    assert (suite.seed, suite.cache_dir) == (3, tmp_path)
    assert (SyntheticSuite.name, SyntheticSuite.version) == ("synthetic", "1")
    assert [o.name for o in registry.options("synthetic")] == ["seed", "cache_dir"]
    assert all(o.help for o in registry.options("synthetic"))


# --- timing rules -------------------------------------------------------------------


def _events(spec) -> list[tuple[int, int]]:
    """Every event of a spec as (start, end) in seconds, empty screens and pauses included."""
    duration = spec["duration"]
    family = spec["family"]
    if family == "motion":
        times = [t for t, _ in spec["keyframes"]]
        return [(a, b) for a, b in itertools.pairwise(times) if b > a]
    if family == "counting":
        timelines = [obj["on"] for obj in spec["objects"]]
    else:
        timelines = [
            [[s, e] for _, s, e in spec["segments" if family == "color_order" else "shapes"]]
        ]
    events = []
    for shown in timelines:
        edges = [0, *[t for start, end in shown for t in (start, end)], duration]
        gaps = [(edges[k], edges[k + 1]) for k in range(0, len(edges), 2)]
        events += [(start, end) for start, end in shown] + [g for g in gaps if g[1] > g[0]]
    return events


def test_every_event_lasts_two_whole_seconds_and_videos_fit_the_sampler():
    for video in ground_truth(0):
        spec = video.spec
        assert spec["fps"] == FPS
        assert 8 <= spec["duration"] <= 20 < 64
        for start, end in _events(spec):
            assert isinstance(start, int) and isinstance(end, int), spec
            assert end - start >= 2, (video.family, video.index, start, end)


def test_videos_are_what_the_spec_says(samples):
    for video in {s.video: s for s in samples}.values():
        info = probe(video.video)
        assert info.fps == FPS
        assert info.frame_count == video.meta["duration"] * FPS
        assert (info.width, info.height, info.codec) == (256, 256, "h264")


# --- the oracle ---------------------------------------------------------------------


def _nearest_colour(frame: np.ndarray) -> str:
    mean = frame[32:-32, 32:-32].reshape(-1, 3).mean(axis=0)
    return min(COLORS, key=lambda name: float(np.sum((np.array(COLORS[name]) - mean) ** 2)))


def _shape(mask: np.ndarray) -> str | None:
    """circle, square, triangle or cross, from a mask's fill of its box and its taper."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 200:
        return None
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    fill = box.mean()
    if fill > 0.9:
        return "square"
    if fill > 0.68:
        return "circle"
    band = max(1, box.shape[0] // 6)
    top, bottom = box[:band].sum(axis=1).mean(), box[-band:].sum(axis=1).mean()
    return "triangle" if bottom > 2 * top else "cross"


def _runs(items: list[str | None]) -> list[str]:
    """The distinct things seen, in order, with repeats and empty frames dropped."""
    order: list[str] = []
    for item in items:
        if item is not None and (not order or order[-1] != item):
            order.append(item)
    return order


def _ordered_answer(order: list[str], kind: str, target: str | None) -> str | None:
    if kind == "last":
        return order[-1] if order else None
    if target not in order:
        return None
    k = order.index(target)
    if kind == "after":
        return order[k + 1] if k + 1 < len(order) else None
    return order[k - 1] if k > 0 else None


def _ball_positions(frames: np.ndarray) -> list[tuple[float, float]]:
    positions = []
    for frame in frames:
        r, g, b = (frame[..., c].astype(int) for c in range(3))
        ys, xs = np.nonzero((r > 150) & (g > 150) & (b < 100))
        positions.append((float(xs.mean()), float(ys.mean())))
    return positions


def _moves(positions: list[tuple[float, float]]) -> list[str]:
    steps = []
    for (x0, y0), (x1, y1) in itertools.pairwise(positions):
        dx, dy = x1 - x0, y1 - y0
        if max(abs(dx), abs(dy)) > 4:
            steps.append(
                ("right" if dx > 0 else "left")
                if abs(dx) > abs(dy)
                else ("down" if dy > 0 else "up")
            )
    return _runs(steps)


def oracle(sample: Sample, frames: np.ndarray) -> str | None:
    """The answer letter that `frames` support, or None when they do not settle it."""
    kind, facts = sample.meta["kind"], sample.meta["facts"]
    text: str | None
    if sample.category == "color_order":
        order = _runs([_nearest_colour(f) for f in frames])
        text = _ordered_answer(order, kind, facts.get("target"))
    elif sample.category == "shape_order":
        order = _runs([_shape(f.max(axis=2) > 128) for f in frames])
        text = _ordered_answer(order, kind, facts.get("target"))
    elif sample.category == "counting":
        half = frames.shape[2] // 2
        seen = [
            kind in (_shape(f[:, :half].max(axis=2) > 128), _shape(f[:, half:].max(axis=2) > 128))
            for f in frames
        ]
        text = str(sum(1 for k, on in enumerate(seen) if on and (k == 0 or not seen[k - 1])))
    else:
        positions = _ball_positions(frames)
        moves = _moves(positions)
        if kind == "end":
            x, y = positions[-1]
            text = f"{'top' if y < 128 else 'bottom'}-{'left' if x < 128 else 'right'} corner"
        elif kind in ("direction", "first_move"):
            text = moves[0] if moves else None
        else:
            text = moves[-1] if len(moves) >= 2 else None
    if text not in sample.options:
        return None
    return LETTERS[sample.options.index(text)]


def test_the_oracle_reads_every_answer_from_the_sampled_frames(samples, decoded):
    wrong = [
        (s.id, s.answer, oracle(s, decoded[s.video]))
        for s in samples
        if oracle(s, decoded[s.video]) != s.answer
    ]
    assert wrong == []


def test_the_first_frames_alone_do_not_answer(samples, decoded):
    first = [oracle(s, decoded[s.video][:2]) == s.answer for s in samples]
    assert sum(first) / len(first) < 0.25
    for category in {s.category for s in samples}:
        hits = [ok for ok, s in zip(first, samples, strict=True) if s.category == category]
        assert sum(hits) / len(hits) < 0.5, category


def test_the_recipe_sees_one_frame_per_second(samples, decoded):
    for sample in samples:
        assert len(decoded[sample.video]) == sample.meta["duration"]
