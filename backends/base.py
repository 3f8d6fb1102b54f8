"""The contract every backend implements, and the backend registry."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from harness.registry import Registry
from harness.types import Answer, Query


@runtime_checkable
class Backend(Protocol):
    """Answers queries about videos.

    Implementations are dataclasses whose fields are their options (see
    `harness.registry`). `answer` raises `harness.types.BackendError` for a
    failure on one sample, and must release remote or device work when it is
    cancelled (the runner cancels on deadline and on Ctrl-C).
    """

    name: ClassVar[str]
    default_concurrency: ClassVar[int]
    """Samples in flight when the user does not say: 8 for a remote queue, 1 for one GPU."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run on this machine now, or None if it can."""
        ...

    def describe(self) -> dict[str, Any]:
        """Every setting that can change an answer: model, revision, sampling, endpoint."""
        ...

    async def answer(self, query: Query) -> Answer: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PreparesVideos(Protocol):
    """A backend with per-video work worth doing before the video's questions are asked.

    The runner calls `prepare` from a worker thread for samples ahead of the ones
    being answered (see `harness.run.prefetch`). It is only a head start: `answer`
    must do the same work itself when `prepare` was not called, failed, or its
    result is gone, and report any failure then.
    """

    def prepare(self, video: str) -> None:
        """Do this video's per-video work now (blocking); `video` is a path or URL."""
        ...


registry: Registry[Backend] = Registry("backend", entry_point_group="vqa_harness.backends")
