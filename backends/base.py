"""The backend registry; the contract backends implement is `harness.protocols.Backend`.

A built-in backend is one module and one line here: its name and `"module:Class"`.
"""

from __future__ import annotations

from harness.protocols import Backend
from harness.registry import Registry

registry: Registry[Backend] = Registry(
    "backend",
    entry_point_group="vqa_harness.backends",
    lazy={
        "fal": "backends.fal:FalBackend",
        "local": "backends.local:LocalBackend",
    },
)
