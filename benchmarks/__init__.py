"""Benchmarks: the `Benchmark` protocol, its registry, and the built-in suites."""

from benchmarks import activitynetqa as _activitynetqa  # noqa: F401  (registers "activitynetqa")
from benchmarks import mvbench as _mvbench  # noqa: F401  (registers "mvbench")
from benchmarks import nextqa as _nextqa  # noqa: F401  (registers "nextqa")
from benchmarks import question_file as _question_file  # noqa: F401  (registers "manifest")
from benchmarks import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from benchmarks import tempcompass as _tempcompass  # noqa: F401  (registers "tempcompass")
from benchmarks import videomme as _videomme  # noqa: F401  (registers "videomme*")
from benchmarks.base import registry
from harness.protocols import Benchmark

register = registry.register
create = registry.create

__all__ = ["Benchmark", "create", "register", "registry"]
