"""The two plugin registries: backends and benchmarks, by name.

Every plugin, built-in or not, is declared by its package as an entry point,
`name = "module:Class"` in the groups `vqa_harness.backends` and
`vqa_harness.benchmarks` (this project's own are in pyproject.toml), and its
module is imported only when the name is first created or described. So the
core names no plugin, and commands that only read run directories import none
but the run's backend module, for the facts it reads in its records
(`HasRunFacts`), never a backend's libraries.
"""

from __future__ import annotations

from harness.protocols import Backend, Benchmark
from harness.registry import Registry

backends: Registry[Backend] = Registry("backend", entry_point_group="vqa_harness.backends")
benchmarks: Registry[Benchmark] = Registry("benchmark", entry_point_group="vqa_harness.benchmarks")
