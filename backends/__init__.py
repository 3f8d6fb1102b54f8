"""Backends: the `Backend` protocol and its registry (implementations register here)."""

from backends.base import Backend, registry

register = registry.register
create = registry.create

__all__ = ["Backend", "create", "register", "registry"]
