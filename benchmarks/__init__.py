"""Benchmarks: the `Benchmark` protocol, its registry, and the built-in suites."""

from benchmarks import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from benchmarks.base import Benchmark, registry

register = registry.register
create = registry.create

__all__ = ["Benchmark", "create", "register", "registry"]
