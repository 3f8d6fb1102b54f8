"""The contracts plugins implement: `Backend` (and what a backend may add), `Benchmark`
(and what a benchmark may add). The runner relies on these and nothing else.

Optional abilities are protocols of their own, checked with `isinstance`: a
backend that `PreparesVideos` gets per-video work done ahead; a benchmark that
`FetchesVideos` downloads a selected sample's video shortly before it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Protocol, runtime_checkable

from harness.types import Answer, Query, Sample, Score


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


@runtime_checkable
class Benchmark(Protocol):
    """A set of samples, the prompt each is asked with, and how answers are scored.

    Implementations are dataclasses whose fields are their options. `version`
    changes whenever samples, prompts or scoring change, so runs compare only
    like with like.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def samples(self) -> Iterator[Sample]: ...

    def prompt(self, sample: Sample) -> str: ...

    def score(self, sample: Sample, text: str) -> Score: ...


@runtime_checkable
class FetchesVideos(Protocol):
    """A benchmark whose videos must be fetched (from the Hub) before a backend can read them.

    The runner calls `fetch_video` in a worker thread, for selected samples only,
    shortly before they run, and asks the backend about the path or URL it returns.
    """

    def fetch_video(self, sample: Sample) -> str:
        """This sample's video as a local path or URL a backend can read (blocking)."""
        ...
