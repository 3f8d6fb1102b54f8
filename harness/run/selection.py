"""Which of a benchmark's samples a run asks: `--category`, `--sample N --seed S`, `--limit`.

They apply in that order, and `--shard` (see `harness.run.shards`) after them all:

1. `--category`: keep the samples whose category is one of those named; a name
   that no sample has is an error listing the known ones.
2. `--sample N --seed S`: a stratified sample of N by category. Within each
   category the samples are ranked by `sha256(f"{S}:{sample.id}")` (hex digest,
   ascending) and the first ones taken. N is shared out over the categories by
   the largest remainder method: when N is at least the number of categories,
   each category first gets one sample and the other N - K are shared in
   proportion to each category's remaining samples; otherwise all N are shared
   in proportion to the categories' sizes. Each category gets the whole number
   part of its share, and the samples left over go one each to the largest
   fractional parts, ties going to the category whose `sha256(f"{S}:{name}")`
   ranks first. Integer arithmetic and SHA-256 only, so the sample is the same
   on every machine and Python version. N at or above the number of samples
   keeps them all.
3. `--limit N`: the first N of what is left.

Every step keeps the benchmark's order of the samples it keeps.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence

from harness.errors import HarnessError
from harness.types import Sample


class SelectionError(HarnessError):
    """A selection that names what the benchmark does not have."""


def select(
    samples: Iterable[Sample],
    *,
    categories: Sequence[str] = (),
    sample: int | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> list[Sample]:
    """Apply `--category`, then `--sample`/`--seed`, then `--limit` (see the module doc)."""
    if categories:
        samples = by_category(list(samples), categories)
    if sample is not None:
        samples = stratified_sample(list(samples), sample, seed)
    return list(itertools.islice(samples, limit))


def by_category(samples: Sequence[Sample], categories: Iterable[str]) -> list[Sample]:
    """The samples in any of `categories`; an unknown category is a `SelectionError`."""
    wanted = set(categories)
    known = {s.category for s in samples}
    unknown = sorted(wanted - known)
    if unknown:
        listed = ", ".join(repr(c) for c in sorted(known)) or "none"
        raise SelectionError(
            f"unknown category {', '.join(map(repr, unknown))} (known categories: {listed})"
        )
    return [s for s in samples if s.category in wanted]


def stratified_sample(samples: Sequence[Sample], size: int, seed: int) -> list[Sample]:
    """`size` samples spread over the categories as the module doc says, in benchmark order."""
    strata: dict[str, list[Sample]] = {}
    for s in samples:
        strata.setdefault(s.category, []).append(s)
    quotas = allocate({name: len(members) for name, members in strata.items()}, size, seed)
    chosen = {
        s.id
        for name, members in strata.items()
        for s in sorted(members, key=lambda member: _rank(seed, member.id))[: quotas[name]]
    }
    return [s for s in samples if s.id in chosen]


def allocate(sizes: Mapping[str, int], total: int, seed: int) -> dict[str, int]:
    """How many of `total` each category (of `sizes` members) gets, by largest remainder."""
    if total >= sum(sizes.values()):
        return dict(sizes)
    base = dict.fromkeys(sizes, 1 if total >= len(sizes) else 0)
    weights = {name: size - base[name] for name, size in sizes.items()}
    left, weight = total - sum(base.values()), sum(weights.values())
    quotas = {name: base[name] + left * w // weight for name, w in weights.items()}
    by_remainder = sorted(
        sizes, key=lambda name: (-(left * weights[name] % weight), _rank(seed, name))
    )
    for name in by_remainder[: total - sum(quotas.values())]:
        quotas[name] += 1
    return quotas


def _rank(seed: int, key: str) -> str:
    # surrogatepass: any id ranks (a lone surrogate has no UTF-8), the others as before
    return hashlib.sha256(f"{seed}:{key}".encode(errors="surrogatepass")).hexdigest()
