"""Finished runs in numbers: summary, statistics, comparison, the CI gate."""
