"""The synthetic probe suite: generated videos whose answers need the whole timeline.

Four families of small videos (256x256, 8 fps, 8-20 s, H.264 in MP4), each
with multiple-choice questions about what happens over time:

- `color_order`: the whole screen shows a sequence of colours; which colour
  is shown last, right after X, right before Y?
- `counting`: a white circle and a white square blink on and off on either
  side of the screen; how many times does each appear?
- `motion`: a yellow ball waits in a corner, then moves along one or two edges;
  which way does it move (first, after it turns), and where does it end up?
- `shape_order`: four white shapes appear one at a time; which appears last,
  right after X, right before Y?

Everything is drawn from `random.Random(seed)`, so a seed names one suite.
Every event (a colour, a blink or a pause, a shape, a leg of motion) starts on
a whole second and lasts at least 2 s, and no video is longer than 64 s, so
MiniCPM-V 2.6's 1-frame-per-second sampling (`harness.media.video.sample_indices`)
sees every event at least twice. The first frames alone never answer a
question; a backend that only looks at the beginning scores near zero.

Videos are cached by content: a file's name is the SHA-256 of its generation
spec and `GENERATOR_VERSION`, written to a temporary file and renamed into
place, so concurrent runs share the cache safely and existing files are reused.
`ground_truth(seed)` gives the specs and the questions' facts for checking.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.files import atomic_path
from harness.media.cache import cache_root
from harness.scoring.choice import option_letters
from harness.scoring.prompts import multiple_choice_prompt
from harness.scoring.rules import score_multiple_choice
from harness.types import Sample, Score

__all__ = [
    "COLORS",
    "CORNERS",
    "DIRECTIONS",
    "FPS",
    "GENERATOR_VERSION",
    "SHAPES",
    "SIZE",
    "SyntheticQuestion",
    "SyntheticSuite",
    "SyntheticVideo",
    "default_cache_dir",
    "ensure_video",
    "ground_truth",
    "render_frames",
    "video_key",
    "write_video",
]

GENERATOR_VERSION = 1
"""Bump whenever rendering changes, so cached videos are regenerated."""

FPS = 8
SIZE = 256
VIDEOS_PER_FAMILY = 6

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 30),
    "orange": (255, 140, 0),
    "yellow": (255, 225, 0),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "purple": (130, 40, 190),
    "pink": (255, 110, 190),
    "white": (245, 245, 245),
}
"""Full-screen colours of `color_order`, by name (RGB)."""

SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down")
CORNERS = ("top-left corner", "top-right corner", "bottom-left corner", "bottom-right corner")

_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)
_MOTION_BACKGROUND = (40, 40, 40)
_BALL = (255, 225, 0)
_BALL_RADIUS = 22
_CORNER_XY = {
    "top-left corner": (40, 40),
    "top-right corner": (216, 40),
    "bottom-left corner": (40, 216),
    "bottom-right corner": (216, 216),
}
_SIDE_X = {"left": 64, "right": 192}


@dataclass(frozen=True)
class SyntheticQuestion:
    """One question about a synthetic video, with its lettered answer and the facts behind it."""

    id: str
    category: str
    kind: str
    question: str
    options: tuple[str, ...]
    answer: str
    answer_text: str
    facts: Mapping[str, Any]


@dataclass(frozen=True)
class SyntheticVideo:
    """A video's generation spec (JSON-able; all times in whole seconds) and its questions."""

    family: str
    index: int
    spec: Mapping[str, Any]
    questions: tuple[SyntheticQuestion, ...]

    @property
    def key(self) -> str:
        return video_key(self.spec)

    @property
    def duration(self) -> int:
        return int(self.spec["duration"])


def ground_truth(seed: int = 0) -> list[SyntheticVideo]:
    """The suite for `seed`: every video's spec and questions, in sample order."""
    rng = random.Random(seed)
    drafts: list[tuple[str, int, dict[str, Any], list[_Draft]]] = []
    for family, build in _FAMILIES.items():
        for index in range(VIDEOS_PER_FAMILY):
            spec, questions = build(rng, index)
            spec = {"family": family, "fps": FPS, "size": SIZE, **spec}
            drafts.append((family, index, spec, questions))
    # Answer positions: a fresh permutation of A-D for every four questions.
    count = sum(len(questions) for *_, questions in drafts)
    positions: list[int] = []
    while len(positions) < count:
        positions += rng.sample(range(4), 4)
    videos = []
    slot = 0
    for family, index, spec, questions in drafts:
        built = []
        for draft in questions:
            others = list(draft.distractors)
            rng.shuffle(others)
            position = positions[slot]
            slot += 1
            options = (*others[:position], draft.answer, *others[position:])
            built.append(
                SyntheticQuestion(
                    id=f"{family}/{index:02d}/{draft.kind}",
                    category=family,
                    kind=draft.kind,
                    question=draft.question,
                    options=options,
                    answer=option_letters(len(options))[position],
                    answer_text=draft.answer,
                    facts=draft.facts,
                )
            )
        videos.append(SyntheticVideo(family, index, spec, tuple(built)))
    return videos


def video_key(spec: Mapping[str, Any]) -> str:
    """Content key of a video: SHA-256 of its spec and the generator version."""
    text = json.dumps({"generator": GENERATOR_VERSION, "spec": spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    """The `synthetic` folder of the harness's cache root (see `harness.media.cache`)."""
    return cache_root() / "synthetic"


def ensure_video(spec: Mapping[str, Any], directory: Path) -> Path:
    """The cached video for `spec` in `directory`, generated first if missing."""
    path = directory / f"{video_key(spec)}.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        write_video(spec, temp)
    return path


def write_video(spec: Mapping[str, Any], path: Path) -> None:
    """Encode the video described by `spec` to `path` (MP4, H.264, yuv420p)."""
    import av  # only where videos are made: listing or scoring the suite does not load PyAV

    fps = int(spec["fps"])
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = int(spec["size"])
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18", "g": str(2 * fps)}
        for i, image in enumerate(render_frames(spec)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def render_frames(spec: Mapping[str, Any]) -> Iterator[np.ndarray]:
    """The RGB frames (SIZE x SIZE x 3, uint8) of the video described by `spec`."""
    fps, size, duration = int(spec["fps"]), int(spec["size"]), int(spec["duration"])
    draw = _RENDERERS[spec["family"]](spec, size)
    for i in range(duration * fps):
        yield draw(Fraction(i, fps))


@dataclass
class SyntheticSuite:
    """Generated videos whose questions need the whole timeline (seeded, cached)."""

    name: ClassVar[str] = "synthetic"
    version: ClassVar[str] = "1"

    seed: int = field(default=0, metadata={"help": "seed of the generated suite"})
    cache_dir: Path | None = field(
        default=None,
        metadata={
            "help": "directory of the generated videos (default: $VQA_HARNESS_CACHE/synthetic,"
            " $XDG_CACHE_HOME/vqa-harness/synthetic or ~/.cache/vqa-harness/synthetic)"
        },
    )

    def samples(self) -> Iterator[Sample]:
        directory = (
            default_cache_dir()
            if self.cache_dir is None
            else Path(self.cache_dir).expanduser().absolute()
        )
        for video in ground_truth(self.seed):
            path = ensure_video(video.spec, directory)
            for question in video.questions:
                yield Sample(
                    id=question.id,
                    video=str(path),
                    question=question.question,
                    answer=question.answer,
                    options=question.options,
                    category=question.category,
                    meta={
                        "video_key": video.key,
                        "generator": GENERATOR_VERSION,
                        "seed": self.seed,
                        "duration": video.duration,
                        "kind": question.kind,
                        "answer_text": question.answer_text,
                        "facts": copy.deepcopy(dict(question.facts)),
                    },
                )

    def prompt(self, sample: Sample) -> str:
        return multiple_choice_prompt(sample)

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)


# --- question drafts ----------------------------------------------------------------


@dataclass(frozen=True)
class _Draft:
    kind: str
    question: str
    answer: str
    distractors: tuple[str, ...]
    facts: dict[str, Any]


def _pick_distractors(
    rng: random.Random,
    answer: str,
    preferred: list[str],
    pool: list[str],
    *,
    required: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Three distractors: `required`, then from `preferred` (randomly), then from `pool`.

    Items in `exclude` are left out unless the pool is too small without them.
    """
    chosen = list(required)
    banned = {answer, *exclude}
    candidates = [x for x in preferred if x not in banned and x not in chosen]
    chosen += rng.sample(candidates, min(3 - len(chosen), len(candidates)))
    rest = [x for x in pool if x not in banned and x not in chosen]
    if len(rest) < 3 - len(chosen):  # a small pool (four shapes): `exclude` is best effort
        rest += [x for x in exclude if x != answer and x not in chosen]
    chosen += rng.sample(rest, 3 - len(chosen))
    return tuple(chosen)


def _order_questions(
    rng: random.Random,
    sequence: list[str],
    pool: list[str],
    intro: str,
    noun: str,
    verb: str,
    article: str,
) -> list[_Draft]:
    """`last`, `after` and `before` questions about a sequence of distinct items.

    Distractors come from the video's own items first, so knowing which items
    appear is not enough; the `last` question always offers the first item,
    which is what a look at the first frames suggests.
    """
    n = len(sequence)
    facts = {"sequence": list(sequence)}
    i = rng.randrange(n - 1)  # asks what follows sequence[i]
    j = rng.choice([k for k in range(1, n) if k != i + 1])  # asks what precedes sequence[j]
    last, after, before = sequence[-1], sequence[i + 1], sequence[j - 1]
    return [
        _Draft(
            "last",
            f"{intro} Which {noun} {verb} last?",
            last,
            _pick_distractors(rng, last, sequence, pool, required=(sequence[0],)),
            facts,
        ),
        _Draft(
            "after",
            f"{intro} Which {noun} {verb} right after {article}{sequence[i]}?",
            after,
            _pick_distractors(rng, after, sequence, pool, exclude=(sequence[i],)),
            {**facts, "target": sequence[i]},
        ),
        _Draft(
            "before",
            f"{intro} Which {noun} {verb} right before {article}{sequence[j]}?",
            before,
            _pick_distractors(rng, before, sequence, pool, exclude=(sequence[j],)),
            {**facts, "target": sequence[j]},
        ),
    ]


def _build_color_order(rng: random.Random, index: int) -> tuple[dict[str, Any], list[_Draft]]:
    n = rng.randint(4, 6)
    colors = rng.sample(list(COLORS), n)
    longest = 4 if n <= 5 else 3
    segments, t = [], 0
    for color in colors:
        length = rng.randint(2, longest)
        segments.append([color, t, t + length])
        t += length
    intro = "The whole screen changes colour several times."
    questions = _order_questions(rng, colors, list(COLORS), intro, "colour", "is shown", "")
    return {"duration": t, "segments": segments}, questions


def _blink_schedule(rng: random.Random, flashes: int, length: int) -> list[list[int]]:
    """`flashes` on-intervals within `length` s: 2 s off first, every on and off >= 2 s."""
    parts = [2] * (2 * flashes)  # off, on, off, on, ..., on
    for _ in range(length - sum(parts)):
        parts[rng.randrange(len(parts))] += 1
    intervals, t = [], 0
    for k, part in enumerate(parts):
        if k % 2:
            intervals.append([t, t + part])
        t += part
    return intervals


def _build_counting(rng: random.Random, index: int) -> tuple[dict[str, Any], list[_Draft]]:
    counts = {"circle": rng.randint(1, 5), "square": rng.randint(1, 5)}
    duration = rng.randint(max(8, 4 * max(counts.values())), 20)
    sides = ["left", "right"]
    rng.shuffle(sides)
    objects, questions = [], []
    for side, (shape, flashes) in zip(sides, counts.items(), strict=True):
        minimum = 4 * flashes
        # Either fill the video or leave an off time of at least 2 s at the end.
        choices = [duration, *range(minimum, duration - 1)]
        length = rng.choice([c for c in choices if c >= minimum])
        objects.append({"shape": shape, "side": side, "on": _blink_schedule(rng, flashes, length)})
        numbers = [str(k) for k in range(1, 8) if k != flashes and abs(k - flashes) <= 3]
        questions.append(
            _Draft(
                shape,
                "A white circle and a white square blink on and off."
                f" How many times does the {shape} appear?",
                str(flashes),
                tuple(rng.sample(numbers, 3)),
                {"count": flashes, "side": side},
            )
        )
    return {"duration": duration, "objects": objects}, questions


def _move(corner: str, axis: str) -> tuple[str, str]:
    """(direction, corner reached) when moving from `corner` along `axis`."""
    vertical, horizontal = corner.split()[0].split("-")
    if axis == "x":
        target = "right" if horizontal == "left" else "left"
        return target, f"{vertical}-{target} corner"
    target = "bottom" if vertical == "top" else "top"
    return ("down" if target == "bottom" else "up"), f"{target}-{horizontal} corner"


def _build_motion(rng: random.Random, index: int) -> tuple[dict[str, Any], list[_Draft]]:
    legs = 2 if index % 2 == 0 else 1
    start = rng.choice(CORNERS)
    axes = ["x", "y"]
    rng.shuffle(axes)
    t = rng.randint(2, 4)  # still at the start
    keyframes = [[0, start], [t, start]]
    moves, corner = [], start
    for leg in range(legs):
        if leg:
            pause = rng.choice([0, 2])
            if pause:
                t += pause
                keyframes.append([t, corner])
        direction, corner = _move(corner, axes[leg])
        moves.append(direction)
        t += rng.randint(3, 5) if legs == 2 else rng.randint(4, 6)
        keyframes.append([t, corner])
    t += rng.randint(2, 3) if legs == 2 else rng.randint(2, 4)  # still at the end
    keyframes.append([t, corner])
    facts = {"start": start, "moves": moves, "end": corner}
    intro = "A yellow ball moves across the screen."
    others = [c for c in CORNERS if c != corner]
    end = _Draft("end", f"{intro} Where is the ball at the end?", corner, tuple(others), facts)
    directions = [
        _Draft(
            kind,
            f"{intro} {text}",
            moves[k],
            tuple(d for d in DIRECTIONS if d != moves[k]),
            facts,
        )
        for kind, k, text in (
            [("direction", 0, "In which direction does it move?")]
            if legs == 1
            else [
                ("first_move", 0, "It turns once. In which direction does it move first?"),
                ("last_move", 1, "It turns once. In which direction does it move after it turns?"),
            ]
        )
    ]
    return {"duration": t, "keyframes": keyframes}, [*directions, end]


def _build_shape_order(rng: random.Random, index: int) -> tuple[dict[str, Any], list[_Draft]]:
    order = rng.sample(SHAPES, len(SHAPES))
    t = rng.choice([0, 2])  # an empty screen first, sometimes
    shown = []
    for k, shape in enumerate(order):
        if k and rng.random() < 0.3:
            t += 2  # an empty screen between two shapes
        length = rng.randint(2, 3)
        shown.append([shape, t, t + length])
        t += length
    intro = "White shapes appear one at a time."
    questions = _order_questions(rng, order, list(SHAPES), intro, "shape", "appears", "the ")
    return {"duration": t, "shapes": shown}, questions


_FAMILIES = {
    "color_order": _build_color_order,
    "counting": _build_counting,
    "motion": _build_motion,
    "shape_order": _build_shape_order,
}


# --- rendering ----------------------------------------------------------------------


def _shape_mask(shape: str, size: int, cx: float, cy: float, extent: float) -> np.ndarray:
    """A boolean mask of `shape` centred at (cx, cy), about `extent` pixels across."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    half = extent / 2
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        side = extent * 0.45
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if shape == "triangle":
        top, bottom = -half, half * 0.9
        within = (dy >= top) & (dy <= bottom)
        return within & (np.abs(dx) <= (dy - top) / (bottom - top) * half * 1.05)
    if shape == "cross":
        arm = extent / 6
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
        return inside & ((np.abs(dx) <= arm) | (np.abs(dy) <= arm))
    raise ValueError(f"unknown shape {shape!r}")


def _segments_renderer(spec: Mapping[str, Any], size: int):
    if spec["family"] == "color_order":
        images = {c: np.full((size, size, 3), COLORS[c], np.uint8) for c, *_ in spec["segments"]}
        segments = spec["segments"]
        blank = None
    else:
        images = {}
        for shape, *_ in spec["shapes"]:
            image = np.zeros((size, size, 3), np.uint8)
            image[_shape_mask(shape, size, size / 2, size / 2, size * 0.47)] = _WHITE
            images[shape] = image
        segments = spec["shapes"]
        blank = np.zeros((size, size, 3), np.uint8)

    def draw(t: Fraction) -> np.ndarray:
        for name, start, end in segments:
            if start <= t < end:
                return images[name]
        assert blank is not None, f"no colour at {t} s"
        return blank

    return draw


def _counting_renderer(spec: Mapping[str, Any], size: int):
    masks = [
        (_shape_mask(o["shape"], size, _SIDE_X[o["side"]], size / 2, size * 0.31), o["on"])
        for o in spec["objects"]
    ]

    def draw(t: Fraction) -> np.ndarray:
        image = np.zeros((size, size, 3), np.uint8)
        for mask, intervals in masks:
            if any(start <= t < end for start, end in intervals):
                image[mask] = _WHITE
        return image

    return draw


def _motion_renderer(spec: Mapping[str, Any], size: int):
    keyframes = [(Fraction(t), _CORNER_XY[c]) for t, c in spec["keyframes"]]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    background = np.full((size, size, 3), _MOTION_BACKGROUND, np.uint8)

    def draw(t: Fraction) -> np.ndarray:
        x: float
        y: float
        x, y = keyframes[-1][1]
        for (t0, p0), (t1, p1) in itertools.pairwise(keyframes):
            if t0 <= t < t1:
                a = float((t - t0) / (t1 - t0))
                x, y = p0[0] + a * (p1[0] - p0[0]), p0[1] + a * (p1[1] - p0[1])
                break
        image = background.copy()
        image[(xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2 <= _BALL_RADIUS**2] = _BALL
        return image

    return draw


_RENDERERS = {
    "color_order": _segments_renderer,
    "counting": _counting_renderer,
    "motion": _motion_renderer,
    "shape_order": _segments_renderer,
}
