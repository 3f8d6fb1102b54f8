"""How a run is executed (`RunSettings`), apart from the runner, so that the command
line can show its defaults without importing the runner."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UsageError


@dataclass(frozen=True)
class RunSettings:
    """How a run is executed; none of these change an answer."""

    concurrency: int = 4
    deadline: float | None = 600.0
    warmup: int = 0
    retry_failed: bool = False
    decode_ahead: int = 4
    """Samples prepared beyond the ones being answered; 0: each when its turn comes."""
    decode_workers: int = 2
    """Threads preparing samples (each decode uses every CPU on its own)."""
    systemic_failures: int = 5
    """Stop when a session's first this many samples all fail the same way; 0: never."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.decode_ahead < 0:
            raise UsageError(f"decode_ahead must be 0 or more, got {self.decode_ahead}")
        if self.decode_workers < 1:
            raise UsageError(f"decode_workers must be at least 1, got {self.decode_workers}")
        if self.deadline is not None and self.deadline <= 0:
            raise UsageError(f"deadline must be positive, got {self.deadline}")
        if self.warmup < 0:
            raise UsageError(f"warmup must be 0 or more, got {self.warmup}")
        if self.systemic_failures < 0:
            raise UsageError(f"systemic_failures must be 0 or more, got {self.systemic_failures}")
