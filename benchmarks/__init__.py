"""Benchmarks: the `Benchmark` protocol and its registry; each is imported when first used."""

from benchmarks.base import registry
from harness.protocols import Benchmark

register = registry.register
create = registry.create

__all__ = ["Benchmark", "create", "register", "registry"]
