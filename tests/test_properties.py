"""Property tests (hypothesis): the choice extractor, the manifest parser, the record reader."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.question_file import read_question_file
from harness.run.store import RunStore, read_records
from harness.scoring.choice import explain_choice, option_letters
from harness.types import ErrorInfo, Record, Score

FAST = settings(max_examples=150, deadline=None)
SLOWER = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RULES = {"explicit", "bare", "leading", "text", "letter", "mention", "chinese", "shortened"}
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
WORD = st.text(st.characters(blacklist_categories=("Cs", "Z", "C")), min_size=1, max_size=12)

# -- the multiple-choice extractor ------------------------------------------------------

OPTIONS = st.lists(st.text(max_size=20), min_size=1, max_size=26)
COLOURS = ["red", "green", "blue", "yellow", "dark red", "three", "left to right"]
# Fragments answers are made of, so the rules past "nothing found" are exercised too.
FRAGMENTS = st.sampled_from(
    [
        *ascii_uppercase,
        *"abcdi",
        *COLOURS,
        *"()[].:,-\n",
        " ",
        "Answer:",
        "The answer is",
        "option",
        "is correct",
        "not",
        "or",
        "A red ball",
        "I think",
        "<think>",
        "</think>",
        "**",
        "`",
        "#",
        "__",
    ]
)
ANSWERS = st.one_of(ANY_TEXT, st.lists(FRAGMENTS, max_size=12).map(" ".join))
# Whitespace and markdown a model wraps an answer in.
WRAPPERS = st.sampled_from(["", " ", "\n", "\t ", "**", "*", "`", "``", "# ", "## "])


@st.composite
def choice_question(draw) -> tuple[list[str], str]:
    """(options, one of their letters)."""
    options = draw(st.lists(st.sampled_from(COLOURS), min_size=2, max_size=7, unique=True))
    return options, draw(st.sampled_from(option_letters(len(options))))


@FAST
@given(text=ANSWERS, options=OPTIONS)
def test_the_extractor_never_raises_and_reads_only_the_options_letters(text, options):
    found = explain_choice(text, options)
    if found.letter is None:
        assert found.reason and found.rule is None
    else:
        assert found.letter in option_letters(len(options)) and found.rule in RULES


@FAST
@given(question=choice_question(), form=st.sampled_from(["{}", "({})", "{}.", "[{}]", "{})"]))
def test_a_bare_letter_reads_as_itself_in_either_case(question, form):
    options, letter = question
    assert explain_choice(form.format(letter), options).letter == letter
    assert explain_choice(form.format(letter.lower()), options).letter == letter


@FAST
@given(
    question=choice_question(),
    cue=st.sampled_from(["Answer: {}", "answer: {}", "The answer is {}.", "Answer: ({})"]),
    before=st.sampled_from(["", "The ball turns red, then blue. ", "Options A and B fit. "]),
)
def test_a_declared_letter_reads_as_itself_whatever_comes_before(question, cue, before):
    options, letter = question
    assert explain_choice(before + cue.format(letter), options).letter == letter


@FAST
@given(
    question=choice_question(),
    cue=st.sampled_from(
        ["答案是{}", "答案\uff1a{}。", "选{}", "正确答案是({})", "{}选项正确", "选项{}是正确的"]
    ),
    before=st.sampled_from(["", "球最后是蓝色的\uff0c", "A和B都不对。"]),
)
def test_a_letter_declared_in_chinese_reads_as_itself(question, cue, before):
    options, letter = question
    assert explain_choice(before + cue.format(letter), options).letter == letter


@FAST
@given(question=choice_question(), form=st.sampled_from(["{}. {}", "({}) {}", "{}) {}"]))
def test_an_echo_of_the_option_list_reads_as_nothing(question, form):
    options, _ = question
    echo = " ".join(
        form.format(letter, text)
        for letter, text in zip(option_letters(len(options)), options, strict=True)
    )
    assert explain_choice(echo, options).letter is None


@FAST
@given(text=ANSWERS, question=choice_question(), left=WRAPPERS, right=WRAPPERS)
def test_surrounding_whitespace_and_markdown_change_nothing(text, question, left, right):
    options, _ = question
    wrapped = left + text + right[::-1]
    assert explain_choice(wrapped, options) == explain_choice(text, options)


# -- the manifest parser ----------------------------------------------------------------

TEXT = ANY_TEXT.filter(lambda s: s and s.strip() == s)  # a cell as its reader strips it
REQUIRED = ("id", "video", "question", "answer")
# Bad rows: what is broken, and the column the reason must name (None: the row itself).
JSONL_FAULTS = {
    "missing": "{col}",
    "empty": "{col}",
    "not_text": "{col}",
    "answer_outside": "answer",
    "options_not_list": "options",
    "one_option": "options",
    "duplicate_id": "id",
    "no_video": "video",
    "bad_duration": "duration_s",
    "not_json": None,
    "not_object": None,
}
CSV_FAULTS = {
    "empty": "{col}",
    "answer_outside": "answer",
    "options_not_list": "options",
    "one_option": "options",
    "duplicate_id": "id",
    "no_video": "video",
    "bad_duration": "duration_s",
    "short_row": None,
}
CSV_HEADER = [*REQUIRED, "options", "category", "duration_s"]


@dataclass
class Row:
    fields: dict
    fault: str | None = None
    column: str | None = None


@st.composite
def manifest_rows(draw, faults: dict[str, str | None]) -> list[Row]:
    """Good rows (multiple choice or open-ended, any text) and bad ones, in any order."""
    rows: list[Row] = []
    for index in range(draw(st.integers(1, 8))):
        options = draw(st.one_of(st.just([]), st.lists(TEXT, min_size=2, max_size=5)))
        letters = option_letters(len(options)) if options else ""
        fields = {
            "id": f"q{index}-{draw(TEXT)}",
            "video": draw(st.sampled_from(["clip.mp4", "https://example.com/v.mp4"])),
            "question": draw(TEXT),
            "answer": draw(st.sampled_from(letters)) if options else draw(TEXT),
            "options": options,
            "category": draw(st.one_of(st.just(""), TEXT)),
            "duration_s": draw(st.one_of(st.just(""), st.floats(0, 1e6).map(str))),
        }
        fault = draw(st.one_of(st.none(), st.sampled_from(sorted(faults))))
        column = draw(st.sampled_from(REQUIRED))
        if fault == "duplicate_id" and not any(r.fault is None for r in rows):
            fault = None
        rows.append(break_row(fields, fault, column, rows, faults))
    return rows


def break_row(fields: dict, fault: str | None, column: str, rows: list[Row], faults) -> Row:
    """`fields` with `fault` applied; `column` picks the column of the generic faults."""
    if fault is None:
        return Row(fields)
    fields = dict(fields)
    if fault == "missing":
        del fields[column]
    elif fault == "empty":
        fields[column] = " "
    elif fault == "not_text":
        fields[column] = [fields[column]]
    elif fault == "answer_outside":
        fields["options"] = fields["options"] or ["yes", "no"]
        fields["answer"] = ascii_uppercase[len(fields["options"])]
    elif fault == "options_not_list":
        fields["options"] = {"A": "red"}
    elif fault == "one_option":
        fields["options"] = ["only"]
    elif fault == "duplicate_id":
        fields["id"] = next(r.fields["id"] for r in rows if r.fault is None)
    elif fault == "no_video":
        fields["video"] = "missing.mp4"
    elif fault == "bad_duration":
        fields["duration_s"] = "-1"
    return Row(fields, fault, (faults[fault] or "").format(col=column) or None)


def jsonl_line(row: Row) -> str:
    if row.fault == "not_json":
        return '{"id": "broken'
    if row.fault == "not_object":
        return json.dumps([row.fields.get("id")])
    return json.dumps(row.fields, ensure_ascii=False)


def csv_text(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for row in rows:
        cells = [row.fields.get(name, "") for name in CSV_HEADER]
        options = row.fields["options"]
        cells[4] = json.dumps(options, ensure_ascii=False) if options else ""
        writer.writerow(cells[:3] if row.fault == "short_row" else cells)
    return out.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "clip.mp4").write_bytes(b"not decoded here")
    return folder


def check_samples(rows: list[Row], samples, where: str, first: int) -> None:
    """Good rows as samples; each bad one invalid, its reason naming its row and column."""
    assert len(samples) == len(rows)
    assert len({s.id for s in samples}) == len(samples)
    for number, (row, sample) in enumerate(zip(rows, samples, strict=True), start=first):
        place = where.format(number)
        if row.fault is None:
            assert sample.invalid is None, sample.invalid
            assert sample.id == row.fields["id"]
            assert sample.question == row.fields["question"]
            assert sample.options == tuple(row.fields["options"])
            assert sample.answer == row.fields["answer"]
        else:
            column = f", field {row.column!r}" if row.column else ""
            assert sample.invalid.startswith(f"{place}{column}: "), sample.invalid


@SLOWER
@given(rows=manifest_rows(JSONL_FAULTS))
def test_jsonl_manifests_load_good_rows_and_name_each_bad_ones_row_and_column(rows, folder):
    content = "\n".join(jsonl_line(row) for row in rows).encode()
    samples = list(read_question_file(content, folder / "questions.jsonl"))
    check_samples(rows, samples, "line {}", first=1)


@SLOWER
@given(rows=manifest_rows(CSV_FAULTS))
def test_csv_manifests_load_good_rows_and_name_each_bad_ones_row_and_column(rows, folder):
    samples = list(read_question_file(csv_text(rows).encode(), folder / "questions.csv"))
    check_samples(rows, samples, "row {}", first=2)  # the header is row 1


# -- the record reader ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def records(draw) -> list[Record]:
    """A few records, answered or failed, holding any text."""
    made = []
    for index in range(draw(st.integers(1, 4))):
        ok = draw(st.booleans())
        made.append(
            Record(
                sample_id=f"s{index}-{draw(ANY_TEXT)}",
                status="ok" if ok else "failed",
                category=draw(ANY_TEXT),
                video=draw(ANY_TEXT),
                prompt=draw(ANY_TEXT),
                target="A",
                response=draw(ANY_TEXT) if ok else None,
                score=Score(correct=draw(st.booleans()), prediction="A") if ok else None,
                error=None if ok else ErrorInfo("deadline", draw(ANY_TEXT)),
                timings={"total": draw(st.floats(0, 1e4))},
                started_at=draw(st.floats(0, 2e9)),
            )
        )
    return made


def torn(record: Record) -> bytes:
    """What a writer killed mid-line leaves: a prefix of the record's line."""
    line = json.dumps(record.to_dict(), ensure_ascii=False).encode()
    return line[: len(line) // 2]


# Garbage after the valid lines: bytes, JSON that is not a record, or a torn record.
GARBAGE = st.lists(
    st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda value: json.dumps(value).encode() + b"\n"),
        records().map(lambda made: torn(made[0])),
    ),
    min_size=1,
    max_size=4,
).map(b"".join)


@SLOWER
@given(valid=records(), garbage=GARBAGE, more=records())
def test_garbage_after_valid_records_never_raises_loses_or_glues_a_record(valid, garbage, more):
    """The valid records read back as written, whatever follows them, and a record
    appended afterwards starts on a line of its own."""
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder))
        for record in valid:
            store.append(record)
        store.close()
        with store.records_path.open("ab") as handle:
            handle.write(garbage)
        assert read_records(store.records_path).records[: len(valid)] == valid

        store.append(more[0])
        store.close()
        log = read_records(store.records_path)
    assert log.records[: len(valid)] == valid and log.records[-1] == more[0]
    assert len(log.lines) == len(log.records)


@FAST
@given(content=st.binary(max_size=500))
def test_any_bytes_read_as_records_or_skipped_lines_never_an_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.jsonl"
        path.write_bytes(content)
        log = read_records(path)
    assert len(log.records) + len(log.skipped) <= content.count(b"\n") + 1
