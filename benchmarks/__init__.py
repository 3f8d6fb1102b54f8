"""Benchmarks: each is a set of video questions and how to score them (see
`harness.protocols.Benchmark`).

They are registered by name as entry points in pyproject.toml and imported when
first used; the registry is `harness.plugins.benchmarks`.
"""
