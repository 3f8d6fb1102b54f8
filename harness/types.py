"""The data that flows through a run: Sample -> Query -> Answer -> Record.

Every type is a frozen dataclass that turns into plain JSON with `to_dict()` and
back with `from_dict()`. `Record` is the line format of `records.jsonl`; its
`schema` field versions that format.
"""

from __future__ import annotations

import math
import reprlib
import types
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import cache
from typing import Any, Literal, TypeGuard, Union, get_args, get_origin, get_type_hints

from harness.errors import HarnessError
from harness.secrets import scrub_data

RECORD_SCHEMA = 3
"""Version of the `records.jsonl` line format written by this package.

2 added `groups`, 3 `score.official`; older records are still read, without them."""
READABLE_SCHEMAS = (1, 2, 3)
UNVERSIONED = 0
"""The `schema` of a run-directory document written before it had one (`schema_of`)."""

Status = Literal["ok", "failed"]

INVALID_SAMPLE = "invalid_sample"
"""The error kind of a sample its benchmark could not read (`Sample.invalid`)."""
NOT_RECORDED = "not_recorded"
"""The error kind of a sample that asked a replay for HTTP its recording does not hold."""
ANSWER_TOO_LARGE = "answer_too_large"
"""The error kind of an answer longer than `MAX_ANSWER_CHARS`."""
MAX_ANSWER_CHARS = 100_000
"""The longest answer text a run keeps: past it the sample fails (`ANSWER_TOO_LARGE`). A
model's answer is far shorter (2,048 tokens are about 10,000 characters); a runaway or
hostile one would take seconds to score and bloat every file that holds it."""
INVALID_RESPONSE = "invalid_response"
"""The error kind of an answer the runner cannot keep as it is: a timing, count or other
number in it that is not finite (`NaN`, `-Infinity`)."""
PARTIAL_TIMINGS = "partial_timings"
"""The `meta` key of an answer whose timings cover only part of its work (it was picked up
from a request an earlier session of the run made); its value says why. Latency
statistics leave such a record out."""


@dataclass(frozen=True)
class Sample:
    """One question about one video, as a benchmark defines it.

    `options` holds the choices' texts for multiple-choice questions (lettered
    A, B, C... by position) and is empty for open-ended ones; `answer` is then
    the correct letter, otherwise the reference text. A benchmark that cannot
    read a sample still yields it, with `meta["invalid"]` saying why; the runner
    records it as failed (`INVALID_SAMPLE`) without asking the backend.
    """

    id: str
    video: str
    question: str
    answer: str
    options: tuple[str, ...] = ()
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def invalid(self) -> str | None:
        """Why the benchmark could not read this sample, or None when it could."""
        return self.meta.get("invalid")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = list(self.options)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(**{**data, "options": tuple(data.get("options", ()))})


@dataclass(frozen=True)
class Query:
    """What a backend is asked: a video (local path or URL) and the full prompt."""

    sample_id: str
    video: str
    prompt: str


@dataclass(frozen=True)
class Answer:
    """What a backend returns for a query.

    `timings` uses the latency vocabulary of DESIGN.md, in seconds (`upload`,
    `queue`, `inference`, `frames`, `preprocess`, `prefill`, `decode`, and
    `tpot` = `decode` / `decode_steps`; not `total`, which the runner measures
    and writes on the record); `usage` holds counts:
    `output_tokens` (the answer's tokens) and `decode_steps` (forward passes
    after the prefill, each one token more for every sequence still generated:
    one answer token under greedy or sampling, one step of all beams under beam
    search); `meta` holds backend facts worth keeping per sample (request id,
    polls, retries). `text` is the answer as the model produced it.
    A backend that fails raises `BackendError` instead of returning. The runner fails
    the sample of an answer with text over `MAX_ANSWER_CHARS` or a number in `timings`,
    `usage` or `meta` that is not finite.
    """

    text: str
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class BackendError(HarnessError):
    """A backend's failure on one sample; the run records it and goes on.

    `kind` is a short, stable class of failure (`rate_limited`,
    `validation_error`, `out_of_memory`, ...) that reports group by.
    """

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details


@dataclass(frozen=True)
class ErrorInfo:
    """Why a sample failed; a failed sample never counts as an answer."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, BackendError):
            return cls(exc.kind, exc.message, dict(exc.details))
        return cls(type(exc).__name__, str(exc) or type(exc).__name__)


def check_answer(answer: Answer) -> Answer:
    """The answer, if a run can keep it; else `BackendError`: text over the cap
    (`ANSWER_TOO_LARGE`), a number in it that is not finite (`INVALID_RESPONSE`)."""
    if len(answer.text) > MAX_ANSWER_CHARS:
        raise BackendError(
            ANSWER_TOO_LARGE,
            f"the answer has {len(answer.text):,} characters, over the cap of "
            f"{MAX_ANSWER_CHARS:,} (harness.types.MAX_ANSWER_CHARS)",
        )
    for part in ("timings", "usage", "meta"):
        if (where := _not_finite(getattr(answer, part), part)) is not None:
            raise BackendError(INVALID_RESPONSE, f"the answer's {where} is not a finite number")
    return answer


def _not_finite(value: Any, where: str) -> str | None:
    """Where in `value` (JSON-like) a float is not finite, as `where.key = value`; None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} = {value}"
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := _not_finite(item, f"{where}.{key}")) is not None:
            return found
    return None


@dataclass(frozen=True)
class OfficialScore:
    """A second verdict on the same answer, by the benchmark authors' own scoring rule
    (or, where they publish none, the most used peer's), named by `scorer`.

    `correct` is None where the rule defines no accuracy (a similarity such as
    WUPS, in `metrics`); `prediction` is what the rule read, None when it read
    nothing (`reason` says why); `error` says why the rule could not run at all
    (then nothing else is set and the answer is not scored by it).
    """

    scorer: str
    correct: bool | None = None
    prediction: str | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Score:
    """A benchmark's verdict on one answer text.

    `prediction` is what was read from the text (the extracted letter for
    multiple choice) and `rule` how it was read; when nothing could be read,
    `correct` is False and `reason` says why. Open-ended answers carry
    `metrics` (exact match, token F1, WER, CER); `correct` is their exact match.
    """

    correct: bool
    prediction: str | None = None
    rule: str | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    judge: dict[str, Any] | None = None
    """An LLM judge's verdict when one graded the answer: `model`, `raw` (its whole
    output), and `correct` and `score`, or `error` when the judge failed, in which
    case the judge has no verdict and the sample is not scored by it at all."""
    official: OfficialScore | None = None
    """The benchmark's official scoring of the same answer, where it has one
    (`harness.protocols.ScoresOfficially`); `correct` is never changed by it."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        official = data.get("official")
        return cls(**{**data, "official": OfficialScore(**official) if official else None})


@dataclass(frozen=True)
class Record:
    """One line of `records.jsonl`: a sample's outcome, written once.

    `groups` holds the sample's keys for breakdowns (`category`, and `task` and
    `duration` where known; see `harness.scoring.groups`).
    """

    sample_id: str
    status: Status
    category: str
    video: str
    prompt: str
    target: str
    response: str | None = None
    score: Score | None = None
    error: ErrorInfo | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    warmup: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    schema: int = RECORD_SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def correct(self) -> bool:
        return self.ok and self.score is not None and self.score.correct

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scrubbed(self) -> Record:
        """This record with no registered key in it (`harness.secrets`); the runner writes
        and counts only scrubbed records, so no summary or report holds a key either."""
        data = self.to_dict()
        clean = scrub_data(data)
        return self if clean == data else Record.from_dict(clean)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Read a record; a field of another type than declared is a `ValueError` naming it."""
        schema_of(data, "record", READABLE_SCHEMAS)
        check_types(cls, data)
        score = data.get("score")
        error = data.get("error")
        return cls(
            **{
                **data,
                "score": Score.from_dict(score) if score is not None else None,
                "error": ErrorInfo(**error) if error is not None else None,
            }
        )


def schema_of(
    data: dict[str, Any], what: str, readable: tuple[int, ...], missing: int | None = None
) -> int:
    """The `schema` of the document `data` (`missing` when it has none); refuse unreadable ones."""
    schema = data.get("schema", missing)
    if schema not in readable:
        expected = " or ".join(map(str, readable))
        raise ValueError(f"{what} schema {schema!r} is not supported (expected {expected})")
    return schema


def check_types(cls: type, data: dict[str, Any]) -> None:
    """Raise a `ValueError` naming the first field of `data`, the JSON of dataclass `cls`
    (nested dataclasses, dicts and lists included), whose value is not of its declared
    type: a string for a float, a number for a string, NaN or infinity for a float.
    Fields `cls` does not declare are left to its constructor."""
    problem = _checker(cls)(data, "")
    if problem:
        raise ValueError(problem)


Checker = Callable[[Any, str], str | None]
"""Where a value (at the place named) first departs from a type, in words; None when it fits."""


@cache
def _checker(hint: Any) -> Checker:
    """The `Checker` of type `hint`, built once per type."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        nullable = type(None) in args
        options = [_checker(arg) for arg in args if arg is not type(None)]
        if len(options) == 1:  # an optional field: say what is wrong with the value
            (only,) = options
            return lambda value, where: None if value is None and nullable else only(value, where)
        return lambda value, where: (
            None
            if (value is None and nullable) or any(c(value, where) is None for c in options)
            else _wrong(value, where, hint)
        )
    if origin is Literal:
        return lambda value, where: None if value in args else _wrong(value, where, hint)
    if origin in (list, tuple):
        item = _checker(args[0])
        return lambda value, where: (
            _first(item(v, f"{where}[{i}]") for i, v in enumerate(value))
            if isinstance(value, list)
            else _wrong(value, where, hint)
        )
    if origin is dict:
        item = _checker(args[1])
        return lambda value, where: (
            _first(item(v, _joined(where, k)) for k, v in value.items())
            if isinstance(value, dict)
            else _wrong(value, where, hint)
        )
    if isinstance(hint, type) and is_dataclass(hint):
        fields = {name: _checker(field) for name, field in get_type_hints(hint).items()}
        return lambda value, where: (
            _first(fields[k](v, _joined(where, k)) for k, v in value.items() if k in fields)
            if isinstance(value, dict)
            else _wrong(value, where, hint)
        )
    return lambda value, where: None if _fits(value, hint) else _wrong(value, where, hint)


def _first(problems: Iterable[str | None]) -> str | None:
    return next((problem for problem in problems if problem), None)


def _joined(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def finite_number(value: Any) -> TypeGuard[int | float]:
    """A finite JSON number, not a bool (JSON's `true` reads as Python's 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole_number(value: Any) -> TypeGuard[int]:
    """A JSON integer, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is float:
        return finite_number(value)
    if hint is int:
        return whole_number(value)
    return isinstance(value, hint)


def _wrong(value: Any, where: str, hint: Any) -> str:
    if get_origin(hint) is None and isinstance(hint, type):
        name = "a finite number" if hint is float else hint.__name__
    else:
        name = str(hint).replace("typing.", "")
    return f"{where} is {reprlib.repr(value)}, not {name}"
