"""`manifest`: your own questions about your own videos, from a `.jsonl` or `.csv` file.

`--benchmark manifest:PATH` is short for `--benchmark manifest -S path=PATH`.
Each JSONL line is an object, and each CSV row (after a header row) has the
columns:

- `id` (required): unique within the file.
- `video` (required): a local path, relative to the manifest's folder unless
  absolute, or an `http(s)://` URL.
- `question` (required).
- `options` (optional): the choices' texts, lettered A, B, C... by position:
  a list of strings in JSONL; in CSV a JSON list (`["red", "blue"]`) or texts
  separated by `|` (`red|blue`). 2 to 26 of them; none makes the question
  open-ended.
- `answer` (required): the correct letter when there are options, otherwise
  the reference text.
- `category`, `task`, `duration` (a label such as short/medium/long) and
  `duration_s` (the video's length in seconds), all optional: the keys reports
  break accuracy down by (see `harness.scoring.groups`). Other columns are ignored.

Multiple-choice questions are asked with the shared multiple-choice prompt and
scored by the shared extractor; open-ended ones are asked to answer in a
single word or phrase and scored by normalised exact match (with token F1, WER
and CER alongside).

A bad row (a required column missing or empty, options that are not a list, an
answer letter outside the options, an id used before, a line that is not a
JSON object, a local video that does not exist) does not stop a run: it
becomes an invalid sample whose reason names the row and the field (column), and the
runner records it as failed without asking the backend. Rows are numbered as
the user sees them: JSONL by line number, CSV as a spreadsheet does (the
header is row 1, so the first data row is row 2). A file that cannot be read,
or a CSV header without a required column, is an error before the run starts.
The version includes the file's SHA-256, so an edited file is a new version.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.rows import BadField, json_type, optional_text, text_field
from harness.errors import UsageError
from harness.files import not_a_file
from harness.scoring.choice import option_letters, option_span
from harness.scoring.prompts import multiple_choice_prompt
from harness.scoring.rules import score_multiple_choice, score_open_ended
from harness.types import Sample, Score

FORMAT_VERSION = "1"
"""Bump whenever reading, prompting or scoring changes."""
REQUIRED = ("id", "video", "question", "answer")
OPEN_ENDED_INSTRUCTION = "Answer the question using a single word or phrase."
_META_LABELS = ("task", "duration")
_URL_SCHEMES = ("http://", "https://")

OptionsReader = Callable[[Any], tuple[str, ...]]
"""How a format's `options` value becomes the options' texts."""


@dataclass
class QuestionFileBenchmark:
    """Your own questions from a local .jsonl or .csv file."""

    name: ClassVar[str] = "manifest"
    shorthand: ClassVar[str] = "path"
    """`manifest:PATH` sets `path`."""

    path: Path = field(metadata={"help": "the .jsonl or .csv file of questions"})
    _samples: tuple[Sample, ...] = field(init=False, repr=False)
    _digest: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser().absolute()
        content = _read(self.path)
        self._digest = hashlib.sha256(content).hexdigest()[:12]
        self._samples = tuple(read_question_file(content, self.path))

    @property
    def version(self) -> str:
        """The format's version and the file's short SHA-256."""
        return f"{FORMAT_VERSION}-{self._digest}"

    def samples(self) -> Iterator[Sample]:
        return iter(self._samples)

    def prompt(self, sample: Sample) -> str:
        if sample.options:
            return multiple_choice_prompt(sample)
        return f"{sample.question}\n{OPEN_ENDED_INSTRUCTION}"

    def score(self, sample: Sample, text: str) -> Score:
        if sample.options:
            return score_multiple_choice(sample, text)
        return score_open_ended(sample, text)


@dataclass(frozen=True)
class Row:
    """One row as read: where it is (`line 3`, `row 3`), its fields, or why it cannot be read."""

    where: str
    fields: dict[str, Any]
    problem: str | None = None


def read_question_file(content: bytes, path: Path) -> Iterator[Sample]:
    """The samples of a manifest file's `content`; bad rows as invalid samples."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"manifest {path} is not UTF-8 text ({exc.reason})") from None
    if path.suffix.lower() == ".jsonl":
        return _samples(jsonl_rows(text), path.parent, _list_options)
    return _samples(csv_rows(text, path), path.parent, _cell_options)


def jsonl_rows(text: str) -> Iterator[Row]:
    """Each non-blank line, by line number."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(where, {}, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if isinstance(data, dict):
            yield Row(where, data)
        else:
            yield Row(where, {}, f"expected a JSON object, got {json_type(data)}")


def csv_rows(text: str, path: Path) -> list[Row]:
    """Each non-blank row after the header, numbered as a spreadsheet does (header = row 1)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise UsageError(
                f"manifest {path} has no column {', '.join(map(repr, missing))} in its header "
                f"(needs {', '.join(REQUIRED)}; has {', '.join(header) or 'no header'})"
            )
        rows = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            fields = dict(zip(header, cells, strict=False))
            problem = None
            if len(cells) != len(header):
                problem = f"{len(cells)} cells, but the header has {len(header)} columns"
            rows.append(Row(f"row {number}", fields, problem))
        return rows
    except csv.Error as exc:
        raise UsageError(
            f"manifest {path} is not valid CSV (line {reader.line_num}: {exc})"
        ) from None


def _samples(rows: Iterable[Row], folder: Path, options: OptionsReader) -> Iterator[Sample]:
    taken: set[str] = set()
    for row in rows:
        try:
            sample = _sample(row, folder, taken, options)
        except BadField as bad:
            sample = _invalid(row, bad.at(row.where), taken)
        taken.add(sample.id)
        yield sample


def _sample(row: Row, folder: Path, taken: set[str], options: OptionsReader) -> Sample:
    """The row as a sample; `BadField` says what is wrong with it."""
    if row.problem:
        raise BadField(None, row.problem)
    fields = row.fields
    sample_id = text_field(fields, "id")
    if sample_id in taken:
        raise BadField("id", f"{sample_id!r} is used by an earlier row")
    choices = options(fields.get("options"))
    meta: dict[str, Any] = {key: optional_text(key, fields.get(key)) for key in _META_LABELS}
    meta["duration_s"] = _seconds(fields.get("duration_s"))
    return Sample(
        id=sample_id,
        video=_video(text_field(fields, "video"), folder),
        question=text_field(fields, "question"),
        answer=_answer(text_field(fields, "answer"), choices),
        options=choices,
        category=optional_text("category", fields.get("category")) or "",
        meta={key: value for key, value in meta.items() if value is not None},
    )


def _invalid(row: Row, reason: str, taken: set[str]) -> Sample:
    """A bad row as an invalid sample: its own id when usable, else one naming the row."""
    sample_id = _try_text(row.fields, "id")
    if sample_id is None or sample_id in taken:
        sample_id, n = row.where, 1
        while sample_id in taken:
            n += 1
            sample_id = f"{row.where} ({n})"
    return Sample(
        id=sample_id,
        video=_try_text(row.fields, "video") or "",
        question=_try_text(row.fields, "question") or "",
        answer=_try_text(row.fields, "answer") or "",
        category=_try_text(row.fields, "category") or "",
        meta={"invalid": reason},
    )


def _try_text(fields: dict[str, Any], column: str) -> str | None:
    try:
        return optional_text(column, fields.get(column))
    except BadField:
        return None


def _list_options(value: Any) -> tuple[str, ...]:
    """JSONL's options: a list of texts, or none."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadField("options", f"expected a list of option texts, got {json.dumps(value)}")
    return _checked_options(value)


def _cell_options(value: str | None) -> tuple[str, ...]:
    """CSV's options: a JSON list, texts separated by `|`, or an empty cell."""
    text = (value or "").strip()
    if not text.startswith("["):
        return _checked_options(text.split("|") if text else [])
    try:
        return _list_options(json.loads(text))
    except json.JSONDecodeError as exc:
        raise BadField("options", f"not a valid JSON list ({exc.msg})") from None


def _checked_options(texts: list[str]) -> tuple[str, ...]:
    options = tuple(text.strip() for text in texts)
    if options and not 2 <= len(options) <= 26:
        raise BadField("options", f"{len(options)} options; a question needs 2 to 26, or none")
    if "" in options:
        raise BadField("options", f"option {options.index('') + 1} is empty")
    return options


def _answer(answer: str, options: tuple[str, ...]) -> str:
    """The answer letter (upper case) for a multiple-choice question, else the text."""
    if not options:
        return answer
    if len(answer) != 1 or answer.upper() not in option_letters(len(options)):
        span = option_span(len(options))
        raise BadField("answer", f"{answer!r} is not one of the {len(options)} options ({span})")
    return answer.upper()


def _video(video: str, folder: Path) -> str:
    """A URL as it is; a path made absolute against `folder`, which must exist."""
    if video.lower().startswith(_URL_SCHEMES):
        return video
    path = folder / Path(video).expanduser()
    reason = not_a_file(path)
    if reason:
        raise BadField("video", f"{reason}: {path}")
    return str(path)


def _seconds(value: Any) -> float | None:
    """The optional `duration_s`: a length in seconds."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
        valid = not isinstance(value, bool) and 0 <= seconds < math.inf
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise BadField("duration_s", f"expected a length in seconds, got {json.dumps(value)}")
    return seconds


def _read(path: Path) -> bytes:
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise UsageError(f"manifest {path} must be a .jsonl or .csv file")
    reason = not_a_file(path)
    if reason:  # a FIFO would block the read
        raise UsageError(f"cannot read manifest {path}: {reason}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
