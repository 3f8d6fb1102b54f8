"""Backends: the `Backend` protocol, its registry, and the built-in backends."""

from backends import fal as _fal  # noqa: F401  (registers "fal")
from backends import local as _local  # noqa: F401  (registers "local"; torch loads on use)
from backends.base import registry
from harness.protocols import Backend

register = registry.register
create = registry.create

__all__ = ["Backend", "create", "register", "registry"]
