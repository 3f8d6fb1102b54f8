"""The contracts plugins implement: `Backend` (and what a backend may add), `Benchmark`
(and what a benchmark may add). The runner relies on these and nothing else.

Optional abilities are protocols of their own, checked with `isinstance`: a
backend that `PreparesVideos` gets per-video work done ahead; one that
`SpeaksHttp` is told whether its HTTP is live, recorded or replayed; one that
`ChecksOptions` says what is wrong with its options before it is built; one that
`ReadsSecrets` names the environment variables holding its keys; one that
`KeepsRunFiles` keeps files of its own in the run directory; one that
`EstimatesCost` prices its runs in `compare`; one that `HasBenchStandIn` says
what `bench` runs in its place where it cannot run for real; one that
`HasRunFacts` reads facts of its own in a run's records (fal: its account's
concurrency) for the summary, the report and the end of a run. A benchmark that
`FetchesVideos` downloads a selected sample's video shortly before it runs; one
that `DescribesData` names the commits of the data it reads.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from harness.types import Answer, OfficialScore, Query, Record, Sample, Score

HttpMode = Literal["live", "record", "replay"]
"""How a run's HTTP goes: to the network, to the network and into a cassette, or from one."""

sample_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sample_deadline", default=None
)
"""When the sample being answered must be done, in the event loop's clock (set by the runner)."""


sample_notes: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sample_notes", default=None
)
"""Facts a backend notes about the sample being answered (a request id, its last state),
which the runner keeps on the sample's record if it gives the sample up at its deadline."""


def note(**facts: Any) -> None:
    """Note facts about the current sample (see `sample_notes`); nothing outside a sample."""
    notes = sample_notes.get()
    if notes is not None:
        notes.update(facts)


def time_left() -> float | None:
    """Seconds until the current sample's deadline; None without one (or outside a loop)."""
    deadline = sample_deadline.get()
    if deadline is None:
        return None
    try:
        return deadline - asyncio.get_running_loop().time()
    except RuntimeError:
        return None


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
    def unavailable_reason(cls, mode: HttpMode = "live") -> str | None:
        """Why this backend cannot run on this machine now in `mode`, or None if it can."""
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
class SpeaksHttp(Protocol):
    """A backend whose HTTP a run can record or replay (`--record`, `--replay`).

    The runner calls `use_http_mode` once, after building the backend and before
    any `answer`, with the run's mode; a backend that never hears it is live.
    """

    def use_http_mode(self, mode: HttpMode) -> None: ...


def run_file_pattern(backend: str) -> str:
    """The names of the files backend `backend` may keep in a run directory (`KeepsRunFiles`)."""
    return f"{backend}-*.jsonl"


@runtime_checkable
class KeepsRunFiles(Protocol):
    """A backend that keeps files of its own in the run directory (a journal of the
    requests it made, so a resume can pick them up; a service's logs in full).

    The runner calls `use_run_directory` once the directory exists and before any
    `answer`: a new run once its manifest is written, a resume once it holds the
    directory's lock (`resuming`: earlier sessions' files may be there). The files are
    named `<backend name>-<what>.jsonl` (`run_file_pattern`) and hold JSON lines, each
    about one sample, appended as `records.jsonl` is (`harness.run.store.AppendOnlyFile`;
    a killed writer may leave a torn last line, which readers skip); `merge` carries
    each shard's whole lines into the merged run, shard after shard.
    """

    def use_run_directory(self, path: Path, resuming: bool) -> None: ...


@runtime_checkable
class ChecksOptions(Protocol):
    """An entry whose building is expensive (a model to load) that checks its options first.

    A run calls `check_options` (through `Registry.check`) before anything costly:
    before the benchmark's data is read and before any entry is built, so bad input is
    one line at once. It may ask the network briefly (is the model there?), but loads
    nothing; a problem is a `ValueError` or a `HarnessError` with a one-line message.
    """

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise if building with `options` (converted, defaults left out) would fail."""
        ...


@runtime_checkable
class ReadsSecrets(Protocol):
    """A backend that reads keys from the environment.

    A run checks and registers them before anything is sent (`harness.secrets`): a key
    with stray whitespace stops it with one line, and no file, log or output of the run
    holds any of them, in any form an error message may quote it.
    """

    @classmethod
    def secret_variables(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The environment variables a backend built with `options` reads keys from."""
        ...


@dataclass(frozen=True)
class Cost:
    """Estimated USD per 1,000 samples (None: cannot be estimated), and what it rests on."""

    usd_per_1000: float | None
    basis: str


class SessionSpan(Protocol):
    """What a cost estimate reads of one session of a run (a `harness.run.manifest.Session`)."""

    @property
    def started_at(self) -> float: ...

    @property
    def finished_at(self) -> float | None: ...

    @property
    def written(self) -> int | None: ...


def session_time(sessions: Sequence[SessionSpan]) -> tuple[float, int]:
    """The summed wall time of the finished sessions, and the samples they wrote: what a
    cost estimate per sample rests on."""
    finished = [(s.finished_at - s.started_at, s.written or 0) for s in sessions if s.finished_at]
    return sum(span for span, _ in finished), sum(count for _, count in finished)


@runtime_checkable
class EstimatesCost(Protocol):
    """A backend that prices its finished runs from one price (`compare --price NAME=USD`)."""

    price_unit: ClassVar[str]
    """What the price is per, e.g. "GPU-hour"."""

    @classmethod
    def estimate_cost(
        cls, records: Sequence[Record], sessions: Sequence[SessionSpan], price: float | None
    ) -> Cost:
        """A run's cost from its records and its manifest's sessions at `price` USD per
        `price_unit`; with no price (None), a `Cost` of None that says which is missing."""
        ...


@dataclass(frozen=True)
class StandIn:
    """What `bench` runs in place of a backend that cannot run for real here, and why.

    `note` heads the bench report; the run uses backend `options`, and replays the
    cassette directory `replay` when one is given (else it is live).
    """

    note: str
    options: dict[str, Any] = field(default_factory=dict)
    replay: Path | None = None


@runtime_checkable
class HasBenchStandIn(Protocol):
    """A backend with a stand-in for `bench` (a demo model, a committed recording);
    `bench` runs any other backend for real, or skips it when it is unavailable."""

    @classmethod
    def bench_standin(cls, benchmark: str, demo_dir: Path | None) -> StandIn | str | None:
        """How `bench` runs this backend over `benchmark` here: None for real; a stand-in
        where it cannot; or why it cannot run at all (it is skipped, with that reason).

        `demo_dir` is where a demo model may be built (`bench --demo`); None: it may not.
        """
        ...


@dataclass(frozen=True)
class RunFacts:
    """What a backend reads in a run's records that only it knows how to: named facts
    (JSON values) under a title, and warnings about the run."""

    title: str
    facts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class HasRunFacts(Protocol):
    """A backend with facts of its own about a finished run, read from its records.

    `summary.json` keeps them (`backend_facts`), `report.md` shows them, and a run
    prints their warnings once at its end. Reading a run's summary imports the
    backend's module for this, so it must import none of its libraries.
    """

    @classmethod
    def run_facts(cls, records: Sequence[Record]) -> RunFacts | None:
        """Facts about a run from its latest record of each sample; None when they hold
        none (records from before the backend wrote what it reads). Records of any age
        and shape must not make it raise."""
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


@runtime_checkable
class DescribesData(Protocol):
    """A benchmark whose data is versioned (dataset repos on the Hub).

    A run records what `data_revisions` says in its manifest, once at the start;
    `--resume` and `merge` refuse a repo whose commit has changed since.
    """

    def data_revisions(self) -> dict[str, str | None]:
        """Each data repo by id, and the commit it is at now (None: cannot tell, e.g.
        offline with nothing cached); resolving it must not fail the run."""
        ...


@runtime_checkable
class ScoresOfficially(Protocol):
    """A benchmark with an official scoring rule: its authors' own, or where they
    publish none, that of the peer most of the field uses (named in `scorer`).

    The runner scores every answer by it as well, on the same text, and keeps its
    verdict beside the benchmark's (`Score.official`); reports show both
    accuracies and the answers they read differently. The benchmark's own `score`
    stays primary: `correct` and every accuracy delta are its.
    """

    def official_score(self, sample: Sample, text: str) -> OfficialScore:
        """The official rule's verdict on `text`; a rule that cannot run (a resource it
        needs is missing) returns an `OfficialScore` with `error` set, never raises."""
        ...
