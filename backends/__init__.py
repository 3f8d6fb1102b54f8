"""Backends: the `Backend` protocol and its registry; each backend is imported when first used."""

from backends.base import registry
from harness.protocols import Backend

register = registry.register
create = registry.create

__all__ = ["Backend", "create", "register", "registry"]
