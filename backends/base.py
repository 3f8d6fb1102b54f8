"""The backend registry; the contract backends implement is `harness.protocols.Backend`."""

from __future__ import annotations

from harness.protocols import Backend
from harness.registry import Registry

registry: Registry[Backend] = Registry("backend", entry_point_group="vqa_harness.backends")
