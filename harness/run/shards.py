"""Split a run's samples into N disjoint shards, one per process (one per GPU).

The rule: the selected samples (after `--limit`) are grouped by video, videos in
the order they first appear in the benchmark, and cut into N contiguous blocks
of about equal sample counts. A video whose `size` samples take positions
`start`.. of that grouped order goes to the shard whose block holds its middle:
`(2 * start + size) * N // (2 * total)`. So the shards partition the selection,
depend only on the benchmark's sample order (the same on every machine and in
every run), and all the questions about one video are asked by one process,
which decodes or uploads that video once. With more shards than videos, some
shards are empty.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.errors import UsageError
from harness.types import Sample

_FRACTION = re.compile(r"(\d+)/(\d+)", re.ASCII)
_WHOLE = re.compile(r"\d+", re.ASCII)
# (rank, size) variables set by torchrun and accelerate launch, in order of preference.
LAUNCHER_VARIABLES = (("RANK", "WORLD_SIZE"), ("LOCAL_RANK", "LOCAL_WORLD_SIZE"))


@dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UsageError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise UsageError(
                f"shard index must be from 0 to {self.count - 1} for {self.count} shards, "
                f"got {self.index}"
            )

    @property
    def label(self) -> str:
        """`shard1of4`: the part of a run id that names the shard."""
        return f"shard{self.index}of{self.count}"

    def select(self, samples: Sequence[Sample]) -> list[Sample]:
        """This shard's samples, in their benchmark order."""
        owner = video_shards(samples, self.count)
        return [sample for sample in samples if owner[sample.video] == self.index]


def video_shards(samples: Sequence[Sample], count: int) -> dict[str, int]:
    """The shard of each video: contiguous blocks of videos, balanced by sample count."""
    sizes = Counter(sample.video for sample in samples)  # videos in order of first appearance
    owner, start = {}, 0
    for video, size in sizes.items():
        owner[video] = (2 * start + size) * count // (2 * len(samples))
        start += size
    return owner


def parse_shard(text: str, environ: Mapping[str, str]) -> Shard:
    """`i/N`, or `auto`: the launcher's RANK/WORLD_SIZE (else LOCAL_RANK/LOCAL_WORLD_SIZE)."""
    if text == "auto":
        return shard_from_environment(environ)
    match = _FRACTION.fullmatch(text)
    if match is None:
        raise UsageError(f"expected i/N (shard i of N, 0-based) or auto, got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def shard_from_environment(environ: Mapping[str, str]) -> Shard:
    """The shard a launcher (torchrun, accelerate launch) gives this process."""
    for rank, size in LAUNCHER_VARIABLES:
        if rank in environ and size in environ:
            given = f"{rank}={environ[rank]!r}, {size}={environ[size]!r}"
            if not (_WHOLE.fullmatch(environ[rank]) and _WHOLE.fullmatch(environ[size])):
                raise UsageError(f"--shard auto: {given} are not whole numbers")
            try:
                return Shard(int(environ[rank]), int(environ[size]))
            except UsageError as exc:
                raise UsageError(f"--shard auto: {given}: {exc}") from None
    raise UsageError(
        "--shard auto needs RANK and WORLD_SIZE (or LOCAL_RANK and LOCAL_WORLD_SIZE) in the "
        "environment, as torchrun and accelerate launch set them; give --shard i/N instead"
    )
