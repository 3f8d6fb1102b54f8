"""Statistics checked against hand-computed values."""

from __future__ import annotations

import pytest

from harness.analysis.stats import bootstrap_ci, mcnemar_p, paired_bootstrap_ci


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        # n=5, min=0: 2 * 1/32
        (5, 0, 2 / 32),
        # n=6, min=1: 2 * (1 + 6) / 64
        (1, 5, 14 / 64),
        # n=10, min=2: 2 * (1 + 10 + 45) / 1024
        (8, 2, 112 / 1024),
        (3, 3, 1.0),
    ],
)
def test_mcnemar_exact_p_by_hand(b, c, p):
    assert mcnemar_p(b, c) == pytest.approx(p)


def test_a_constant_has_a_zero_width_interval():
    assert bootstrap_ci([1.0] * 6, list("aabbcc")) == (1.0, 1.0)


def test_clusters_are_resampled_whole():
    # Two videos: one all right (3 questions), one all wrong (1 question). Every
    # resample draws two videos, so the possible means are 1 (a, a), 0 (b, b) and
    # 3/4 (a, b): never 1/2, as a question-level bootstrap could give.
    values, clusters = [1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"]
    low, high = bootstrap_ci(values, clusters, resamples=4000, level=0.5)
    assert {low, high} <= {0.0, 0.75, 1.0}
    assert bootstrap_ci(values, clusters) == bootstrap_ci(values, clusters)  # seeded


def test_interval_covers_the_mean_and_narrows_with_more_clusters():
    few = bootstrap_ci([1, 0] * 10, [str(i) for i in range(20)])
    many = bootstrap_ci([1, 0] * 500, [str(i) for i in range(1000)])
    assert few[0] < 0.5 < few[1] and many[0] < 0.5 < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 3
    # the normal approximation for n=1000, p=0.5: +-1.96*sqrt(.25/1000) = +-0.031
    assert many[1] - many[0] == pytest.approx(2 * 0.031, abs=0.01)


def test_paired_interval_is_of_the_difference():
    first, second = [0, 0, 1, 1] * 25, [1, 0, 1, 1] * 25
    low, high = paired_bootstrap_ci(first, second, [str(i) for i in range(100)])
    assert 0 < low < 0.25 < high < 0.5
    with pytest.raises(ValueError, match="not paired"):
        paired_bootstrap_ci([1], [1, 0], ["a"])
    assert bootstrap_ci([], []) is None
