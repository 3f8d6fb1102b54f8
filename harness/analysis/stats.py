"""Statistics for comparing runs honestly: clustered bootstrap intervals and McNemar's test.

Questions about one video are not independent (Video-MME asks three per video),
so intervals resample whole videos ("clusters"), not questions: the cluster
bootstrap. Resampling is seeded, so the same records give the same interval on
every machine. McNemar's exact test compares two backends on the same samples
through the samples where exactly one of them is right.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Percentile interval of the mean of `values`, resampling whole clusters.

    None when there is nothing to resample. Each resample draws as many
    clusters as there are, with replacement, and takes the mean over all the
    values of the drawn clusters.
    """
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster labels")
    if not values:
        return None
    sums, counts = _cluster_totals(values, clusters)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return _percentiles(means, level)


def paired_bootstrap_ci(
    first: Sequence[float],
    second: Sequence[float],
    clusters: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Interval of mean(second) - mean(first) over paired samples, resampling clusters."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} and {len(second)} values are not paired")
    differences = [b - a for a, b in zip(first, second, strict=True)]
    return bootstrap_ci(differences, clusters, resamples=resamples, seed=seed, level=level)


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts.

    `only_first`: samples the first run got right and the second wrong;
    `only_second`: the reverse. Under no difference each discordant sample is a
    fair coin, so p = min(1, 2 * P[Binomial(n, 1/2) <= min(b, c)]).
    """
    if only_first < 0 or only_second < 0:
        raise ValueError("discordant counts cannot be negative")
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_first, only_second) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _cluster_totals(values: Sequence[float], clusters: Sequence[str]):
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for value, cluster in zip(values, clusters, strict=True):
        totals[cluster][0] += value
        totals[cluster][1] += 1
    sums = np.array([t[0] for t in totals.values()], dtype=float)
    counts = np.array([t[1] for t in totals.values()], dtype=float)
    return sums, counts


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
