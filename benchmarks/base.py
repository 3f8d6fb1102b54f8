"""The benchmark registry; the contract benchmarks implement is `harness.protocols.Benchmark`."""

from __future__ import annotations

from harness.protocols import Benchmark
from harness.registry import Registry

registry: Registry[Benchmark] = Registry("benchmark", entry_point_group="vqa_harness.benchmarks")
