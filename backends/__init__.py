"""Backends: each answers video questions one way (see `harness.protocols.Backend`).

They are registered by name as entry points in pyproject.toml and imported when
first used; the registry is `harness.plugins.backends`.
"""
