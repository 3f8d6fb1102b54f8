"""The one ranked multiple-choice extractor shared by every benchmark.

Options are the choices' texts, lettered A, B, C... by position. The rules are
tried in this order and the first that decides wins:

1. `explicit` - a declaration: "Answer: B", "The answer is (B)", "the best
   option is B". When several disagree, the last wins: a model that corrects
   itself concludes at the end.
2. `bare` - the whole response is a letter form: "B", "(B)", "B.", "[B]", and
   a lone lowercase "b", which is unambiguous only when it stands alone.
3. `leading` - the response opens with a letter marker: "B. red", "(B) red",
   "B) red", "B: red", "B - red", "B because ...".
4. `text` - the whole response is one option's text.
5. `letter` - exactly one distinct option letter stands alone in the text:
   "(C)", or a capital letter that is not part of a word ("Based on the
   video, C"). "A" and "I" followed by a lowercase word are the article and the
   pronoun, not letters.
6. `mention` - exactly one option's text is mentioned (a longer option that
   contains a shorter one, "dark red" and "red", counts once, as the longer).

Otherwise the answer is unreadable (`letter` None, with a `reason`): nothing
found, several options named, or a declared letter outside the options. There
is no random fallback. Uppercase letters outside the option range are ignored
by rules 5 and 6 and refused, with a reason, by rules 1-3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Words after which a capital "A" is still the option letter ("A is correct").
_A_AS_LETTER_BEFORE = frozenset(
    {"is", "was", "seems", "appears", "fits", "matches", "because", "since", "as", "and", "or"}
)
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}

_THINKING = re.compile(r"<think>.*?</think>", re.S | re.I)
_MARKUP = re.compile(r"[*`#]+|__")
_EXPLICIT = re.compile(
    r"\b(?:answer|option|choice)s?\b[^.:\n]{0,30}?(?:\bis\b|\bwould\s+be\b|:|=)\s*"
    r"(?:option\s+|choice\s+|letter\s+)?(?P<open>[(\[]?)(?P<letter>[A-Za-z])(?P<close>[)\]]?)"
    r"(?P<after>[^A-Za-z0-9'\u2019]*)(?P<next>[A-Za-z]*)",
    re.I,
)
_NAMED_OPTION = re.compile(r"\b(?:option|choice)\s+[(\[]?(?P<letter>[A-Z])\b")
_BARE = re.compile(r"[(\[]?(?P<letter>[A-Za-z])[)\]]?[.:)]?")
_LEADING = re.compile(r"[(\[]?(?P<letter>[A-Z])(?:[)\]]|[.:]|\s+-|\s*\n|\s+(?P<next>[a-z]+))")
_LEADING_LOWER = re.compile(r"\((?P<letter>[a-z])\)")
_STANDALONE = re.compile(
    r"(?<![A-Za-z0-9'\u2019])(?:\((?P<paren>[A-Za-z])\)|(?P<letter>[A-Z])(?![A-Za-z0-9'\u2019])"
    r"(?:\s+(?P<next>[a-z]+))?)"
)
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ChoiceExtraction:
    """The letter read from a response, the rule that read it, or why none was read."""

    letter: str | None
    rule: str | None = None
    reason: str | None = None


def option_letters(count: int) -> str:
    """The letters of `count` options: "ABCD" for 4."""
    if not 1 <= count <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 1 to 26 options, got {count}")
    return LETTERS[:count]


def extract_choice(text: str, options: Sequence[str]) -> str | None:
    """The chosen option letter in `text`, or None when it cannot be read."""
    return explain_choice(text, options).letter


def explain_choice(text: str, options: Sequence[str]) -> ChoiceExtraction:
    """Read the chosen letter with the ranked rules of this module's docstring."""
    letters = option_letters(len(options))
    cleaned = _MARKUP.sub("", _THINKING.sub("", text or "")).strip()
    if not cleaned:
        return ChoiceExtraction(None, reason="empty response")
    for rule, found in (
        ("explicit", _explicit(cleaned)),
        ("bare", _bare(cleaned)),
        ("leading", _leading(cleaned)),
    ):
        if found is not None:
            if found in letters:
                return ChoiceExtraction(found, rule)
            return ChoiceExtraction(
                None, reason=f"answer {found!r} is not among options {letters[0]}-{letters[-1]}"
            )
    exact = [
        letter
        for letter, option in zip(letters, options, strict=True)
        if _normalise(option) == _normalise(cleaned)
    ]
    if len(exact) == 1:
        return ChoiceExtraction(exact[0], "text")
    for rule, found in (
        ("letter", _standalone_letters(cleaned, letters)),
        ("mention", _mentioned_options(cleaned, options, letters)),
    ):
        if len(found) == 1:
            return ChoiceExtraction(found[0], rule)
        if len(found) > 1:
            return ChoiceExtraction(None, reason=f"ambiguous: names options {' and '.join(found)}")
    return ChoiceExtraction(None, reason="no option letter or option text found")


def _explicit(text: str) -> str | None:
    last = None
    for match in _EXPLICIT.finditer(text):
        letter = match["letter"]
        if letter.islower():
            parenthesised = match["open"] and match["close"]
            at_end = not match["next"] and match.end("after") == len(text.rstrip())
            if not (parenthesised or at_end):
                continue  # "the answer is a red ball"
            letter = letter.upper()
        elif not match["close"] and _is_word(letter, match["after"], match["next"]):
            continue  # "the answer is I think ...", "the answer is A red ball"
        last = letter
    if last is None:
        for match in _NAMED_OPTION.finditer(text):
            last = match["letter"]
    return last


def _is_word(letter: str, between: str, following: str | None) -> bool:
    """Whether a capital A or I is the article or the pronoun rather than a letter."""
    return (
        letter in "AI"
        and not between.strip()
        and bool(following)
        and following.islower()
        and following not in _A_AS_LETTER_BEFORE
    )


def _bare(text: str) -> str | None:
    match = _BARE.fullmatch(text)
    return match["letter"].upper() if match else None


def _leading(text: str) -> str | None:
    match = _LEADING.match(text)
    if match:
        if _is_word(match["letter"], " ", match["next"]):
            return None  # "A red ball ...", "I think ..."
        return match["letter"]
    lower = _LEADING_LOWER.match(text)
    return lower["letter"].upper() if lower else None


def _standalone_letters(text: str, letters: str) -> list[str]:
    found: list[str] = []
    for match in _STANDALONE.finditer(text):
        if match["paren"]:
            letter = match["paren"].upper()
        elif _is_word(match["letter"], " ", match["next"]):
            continue
        else:
            letter = match["letter"]
        if letter in letters and letter not in found:
            found.append(letter)
    return found


def _mentioned_options(text: str, options: Sequence[str], letters: str) -> list[str]:
    haystack = f" {_normalise(text)} "
    spans: dict[str, list[tuple[int, int]]] = {}
    for letter, option in zip(letters, options, strict=True):
        needle = _normalise(option)
        if not needle:
            continue
        spans[letter] = [
            (m.start(), m.end()) for m in re.finditer(f"(?<= ){re.escape(needle)}(?= )", haystack)
        ]
    found = []
    for letter, own in spans.items():
        others = [span for other, theirs in spans.items() if other != letter for span in theirs]
        if any(not _inside(span, others) for span in own):
            found.append(letter)
    return found


def _inside(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    start, end = span
    return any(s <= start and end <= e and (s, e) != span for s, e in others)


def _normalise(text: str) -> str:
    words = _NON_WORD.sub(" ", text.lower()).split()
    return " ".join(_NUMBER_WORDS.get(word, word) for word in words)
