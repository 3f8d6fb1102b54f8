"""The one ranked multiple-choice extractor shared by every benchmark.

Options are the choices' texts, lettered A, B, C... by position. The response
is NFKC-normalised (full-width letters and marks read as ASCII), and reasoning
in `<think>` blocks (an unclosed one runs to the end) and markdown marks (`*`,
`__`, `` ` ``, `#`) are dropped first. A response that opens with a list of option markers in rising
order ("A. red B. green C. blue", "(B) green (C) blue") and declares nothing
lists options without choosing one. Then the rules are tried in this order,
and the first that decides wins:

1. `explicit` - a declaration: "Answer: B", "The correct answer is (C).",
   "the best option is B", "answer: c", "The answer is blue", "Option C is
   correct". It outranks letters anywhere else. When several declarations
   disagree, the LAST wins: a model that corrects itself concludes at the end.
   A declaration of alternatives ("the answer is A or B") declares nothing, nor
   does one that opens an echo of the option list ("Answer: A. red B. green").
2. `chinese` - a declaration in Chinese, the last winning: "答案是B", "答案:D。",
   "选C", "正确选项是A", "B是正确的"; not "答案是A或B", nor "不选A".
3. `bare` - the whole response is a letter form: "B", "(B)", "B.", "[B]", "B)",
   or lowercase "b", "b.", "(b)".
4. `leading` - the response opens with a letter marker: "B. red", "(B) red",
   "B) red", "B: red", "B, red", "B - red", "B because ...".
5. `text` - the whole response is one option's text ("Blue.", "three").
6. `shortened` - the whole response is one option's text without its first one
   or two words, two or more left: "man opens the door" for "The man opens the
   door"; when several options shorten to it, nothing is chosen.
7. `letter` - exactly one distinct option letter stands alone in the text, the
   same letter any number of times: "(C)", "option C", "B选项", or a capital
   that is not part of a word ("Based on the video, C" is C; "N/A" and "B-movie"
   name none). "A" and "I" followed by a word are the article and the pronoun
   ("A red ball", "I think"), except "A" before a verb or conjunction ("A is",
   "A or"); a letter right after "not" or "不是" ("B, not A") is rejected.
8. `mention` - exactly one option's text is mentioned, with or without its
   leading article, matched by whole words, after
   `harness.scoring.text.normalize` (case, punctuation, number words as
   digits; articles kept); when one option contains another ("dark red",
   "red"), the shorter inside the longer does not count.

Otherwise nothing is chosen and `reason` says why: an empty response, nothing
found (refusals land here), an option list without a choice ("lists options
..."), several options named ("ambiguous: ..."), or a letter from rules 1-4
outside the options ("Answer: E" with four options).
Rule 7 ignores letters outside the options. A lowercase letter counts only
parenthesised ("(b)"), as the whole response, or as the whole rest of a
declaration ("answer: c"); "the answer is a red ball" is not A. There is no
random fallback: the same text always gives the same answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from string import ascii_uppercase

from harness.scoring.text import normalize

# Words after which a capital "A" is still the letter ("A is correct", "A or B").
_VERBS_AFTER_A = frozenset(
    ("is", "was", "seems", "appears", "looks", "fits", "matches", "because", "since", "and", "or")
)

# A word character that is not a Chinese character: "B选项" and "选C" hold a standalone letter.
_LATIN_WORD = r"[^\W\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_MARKUP = re.compile(r"[*`#]+|__")
# "Answer:", "the answer to this question is", "correct option would be", "answer = "
_CUE = re.compile(
    r"\b(?i:answer|option|choice)\b(?:,?\s+[a-z][\w'-]*){0,6}?,?\s*"
    r"(?:\b(?i:is|would\s+be)\b\s*:?|:|=)\s*(?:(?i:option|choice|letter)\s+)?"
)
# "C is correct", "Option B is the right answer", "(D) is the best choice"
_CORRECT = re.compile(
    rf"(?:[(\[](?P<enclosed>[A-Za-z])[)\]]|(?<!{_LATIN_WORD})(?<!['\u2019/-])(?P<letter>[A-Z]))"
    r"\s+(?:is|would\s+be)\s+(?:the\s+)?(?:correct|right|best)\b"
)
_DECLARED = re.compile(
    rf"[(\[](?P<enclosed>[A-Za-z])[)\]]|(?P<letter>[A-Za-z])(?!{_LATIN_WORD}|['\u2019/]|-\w)(?P<rest>.*)",
    re.S,
)
# "答案是B", "答案:D", "选C", "我选择B", "正确选项是A", "答案是选项B"; not "不选A"
_CHINESE_CUE = re.compile(
    r"(?:答案|(?<!不)选(?:择)?|(?:正确|最佳|最合适)的?选项)\s*(?:应该|应|就)?\s*(?:是|为|选)?\s*:?\s*"
    r"(?:选项\s*)?"
)
# "B是正确的", "C选项正确", "选项D是对的"
_CHINESE_CORRECT = re.compile(
    rf"(?<!{_LATIN_WORD})(?P<letter>[A-Z])\s*(?:选项|项)?\s*(?:是|为)?\s*(?:正确|对)(?![吗么])"
)
_ONLY_PUNCTUATION = re.compile(r"[\s.!)\]]*")
# "A or B", "A, B", "A B", "A或B", "A和B"
_ALTERNATIVE = re.compile(
    rf"(?:\s*(?:,|/|;|、|\bor\b|\band\b|或者?|和|与|及)\s*[(\[]?|[ \t]+)[A-Z](?!{_LATIN_WORD})"
)
_BARE = re.compile(r"[(\[]?(?P<letter>[A-Za-z])[)\]]?[.:)]?")
_LEADING = re.compile(
    r"\((?P<enclosed>[A-Za-z])\)|\[(?P<bracketed>[A-Z])\]"
    r"|(?P<letter>[A-Z])(?=[).:\],]|\s*[-\u2013\u2014]\s|\s*\n|\s+\w)"
)
_STANDALONE = re.compile(
    r"(?P<negated>\b(?i:not)\s+|(?:不是|不选|并非|而非)\s*)?(?P<named>\b(?i:option|choice|letter)\s+)?"
    rf"(?:[(\[](?P<enclosed>[A-Za-z])[)\]]|(?<!{_LATIN_WORD})(?<!['\u2019/-])(?P<letter>[A-Z])"
    rf"(?!{_LATIN_WORD}|['\u2019/]|-\w))"
)
# An option marker that opens an item of a list: "A.", "B)", "C:", "(D)", "[E]"
_MARKER = re.compile(
    r"(?<!\S)(?:\((?P<enclosed>[A-Z])\)|\[(?P<bracketed>[A-Z])\]|(?P<letter>[A-Z])[.):])(?!\S)"
)
_NEXT_WORD = re.compile(r"\s+(?P<word>[a-z]+|\w{2,})\b")
_ARTICLE = re.compile(r"^(?:a|an|the) ")  # a leading article, normalised


@dataclass(frozen=True)
class ChoiceExtraction:
    """The letter read from a response and the rule that read it, or why none was read."""

    letter: str | None
    rule: str | None = None
    reason: str | None = None


def option_letters(count: int) -> str:
    """The letters of `count` options: "ABCD" for 4."""
    if not 1 <= count <= len(ascii_uppercase):
        raise ValueError(f"a multiple-choice question needs 1 to 26 options, got {count}")
    return ascii_uppercase[:count]


def option_span(count: int) -> str:
    """The letters of `count` options as a range: "A-D" for 4, "A" for 1."""
    letters = option_letters(count)
    return letters if count == 1 else f"{letters[0]}-{letters[-1]}"


def extract_choice(text: str, options: Sequence[str]) -> str | None:
    """The chosen option letter in `text`, or None when it cannot be read."""
    return explain_choice(text, options).letter


def explain_choice(text: str, options: Sequence[str]) -> ChoiceExtraction:
    """Read the chosen letter with the ranked rules of this module's docstring."""
    letters = option_letters(len(options))
    cleaned = _MARKUP.sub("", _THINKING.sub("", unicodedata.normalize("NFKC", text or ""))).strip()
    if not cleaned:
        return ChoiceExtraction(None, reason="empty response")
    lists = _option_lists(cleaned, options, letters)
    declared = _declared(cleaned, options, letters, lists)
    if declared is None and 0 in lists:
        return ChoiceExtraction(
            None, reason=f"lists options {_and(lists[0][0])} without choosing one"
        )
    for rule, found in (
        ("explicit", declared),
        ("chinese", _declared_in_chinese(cleaned)),
        ("bare", _bare(cleaned)),
        ("leading", _leading(cleaned)),
        ("text", _whole_text(cleaned, options, letters)),
    ):
        if found is None:
            continue
        if found in letters:
            return ChoiceExtraction(found, rule)
        span = option_span(len(letters))
        return ChoiceExtraction(None, reason=f"answer {found!r} is not among options {span}")
    for rule, candidates in (
        ("shortened", _shortened_text(cleaned, options, letters)),
        ("letter", _standalone_letters(cleaned, letters)),
        ("mention", _mentioned_options(cleaned, options, letters)),
    ):
        if len(candidates) == 1:
            return ChoiceExtraction(candidates[0], rule)
        if candidates:
            return ChoiceExtraction(None, reason=f"ambiguous: mentions options {_and(candidates)}")
    return ChoiceExtraction(None, reason="no option letter or option text found")


def _and(letters: Sequence[str]) -> str:
    """Letters as prose: "A, B and D"."""
    return f"{', '.join(letters[:-1])} and {letters[-1]}"


def _option_lists(text: str, options: Sequence[str], letters: str) -> dict[int, tuple[str, bool]]:
    """Runs of two or more option markers in rising order ("A. red B. green"), by where each
    starts: their letters, and whether every item is its marker alone or with its option's text."""
    markers = [
        (m.start(), m.end(), letter)
        for m in _MARKER.finditer(text)
        if (letter := m["enclosed"] or m["bracketed"] or m["letter"]) in letters
    ]
    runs: list[list[tuple[int, int, str]]] = []
    for marker in markers:
        if runs and runs[-1][-1][2] < marker[2]:
            runs[-1].append(marker)
        else:
            runs.append([marker])
    lists: dict[int, tuple[str, bool]] = {}
    for run in (run for run in runs if len(run) > 1):
        ends = [start for start, _, _ in run[1:]] + [len(text)]
        items = [
            text[end:stop].split("\n", 1)[0] if stop == len(text) else text[end:stop]
            for (_, end, _), stop in zip(run, ends, strict=True)
        ]
        echoed = all(
            _normalise(item) in ("", _normalise(options[letters.index(letter)]))
            for (_, _, letter), item in zip(run, items, strict=True)
        )
        lists[run[0][0]] = ("".join(letter for _, _, letter in run), echoed)
    return lists


def _declared(
    text: str, options: Sequence[str], letters: str, lists: dict[int, tuple[str, bool]]
) -> str | None:
    """The letter of the last declaration, by letter or by option text; a declaration that
    opens an echo of the option list ("Answer: A. red B. green C. blue") declares nothing."""
    declarations: list[tuple[int, str]] = []
    for cue in _CUE.finditer(text):
        if lists.get(cue.end(), ("", False))[1]:
            continue
        after = text[cue.end() :]
        found = _declared_letter(after) or _leading_option_text(after, options, letters)
        if found:
            declarations.append((cue.start(), found))
    for match in _CORRECT.finditer(text):
        declarations.append((match.start(), (match["enclosed"] or match["letter"]).upper()))
    return max(declarations)[1] if declarations else None


def _declared_in_chinese(text: str) -> str | None:
    """The letter of the last declaration in Chinese: "答案是B", "选C", "B是正确的"."""
    declarations: list[tuple[int, str]] = []
    for cue in _CHINESE_CUE.finditer(text):
        match = _DECLARED.match(text, cue.end())
        if match and (match["enclosed"] or not _ALTERNATIVE.match(match["rest"])):
            declarations.append((cue.start(), (match["enclosed"] or match["letter"]).upper()))
    for match in _CHINESE_CORRECT.finditer(text):
        declarations.append((match.start(), match["letter"]))
    return max(declarations)[1] if declarations else None


def _declared_letter(after: str) -> str | None:
    """The letter right after a cue: "(b)", "B", "B.", or a lowercase "c" that ends the text."""
    match = _DECLARED.match(after)
    if not match:
        return None
    if match["enclosed"]:
        return match["enclosed"].upper()
    letter, rest = match["letter"], match["rest"]
    if letter.islower():
        return letter.upper() if _ONLY_PUNCTUATION.fullmatch(rest) else None
    return letter if _names_one(letter, rest) else None


def _leading_option_text(after: str, options: Sequence[str], letters: str) -> str | None:
    """The option whose text opens `after` ("blue, because..."), the longest if several do."""
    head = _normalise(after)
    heads = (f"{head} ", f"{_ARTICLE.sub('', head, count=1)} ")
    found = [
        (len(needle), letter)
        for letter, option in zip(letters, options, strict=True)
        for needle in _forms(option)
        if any(h.startswith(f"{needle} ") for h in heads)
    ]
    return max(found)[1] if found else None


def _names_one(letter: str, rest: str) -> bool:
    """Whether a capital letter followed by `rest` names one option: not "A red", "A or B"."""
    return not (_is_word(letter, rest) or _ALTERNATIVE.match(rest))


def _is_word(letter: str, rest: str) -> bool:
    """Whether a capital A or I followed by `rest` is the article or the pronoun."""
    following = _NEXT_WORD.match(rest)
    if letter not in "AI" or not following:
        return False
    return not (letter == "A" and following["word"] in _VERBS_AFTER_A)


def _bare(text: str) -> str | None:
    match = _BARE.fullmatch(text)
    return match["letter"].upper() if match else None


def _leading(text: str) -> str | None:
    match = _LEADING.match(text)
    if not match:
        return None
    if match["letter"] and not _names_one(match["letter"], text[match.end() :]):
        return None  # "A red ball ...", "I think ...", "A or B"
    return (match["enclosed"] or match["bracketed"] or match["letter"]).upper()


def _whole_text(text: str, options: Sequence[str], letters: str) -> str | None:
    normalised = _normalise(text)
    found = [
        letter
        for letter, option in zip(letters, options, strict=True)
        if _normalise(option) == normalised
    ]
    return found[0] if len(found) == 1 else None


def _shortened_text(text: str, options: Sequence[str], letters: str) -> list[str]:
    """The options whose text without its first one or two words, leaving two or more, is
    the whole response: "man opens the door" for "The man opens the door"."""
    words = _ARTICLE.sub("", _normalise(text), count=1).split()
    return [
        letter
        for letter, option in zip(letters, options, strict=True)
        if len(words) > 1
        and words in (_normalise(option).split()[1:], _normalise(option).split()[2:])
    ]


def _standalone_letters(text: str, letters: str) -> list[str]:
    found: list[str] = []
    for match in _STANDALONE.finditer(text):
        letter = (match["enclosed"] or match["letter"]).upper()
        if match["negated"]:
            continue  # "not A"
        if match["letter"] and not match["named"] and _is_word(letter, text[match.end() :]):
            continue
        if letter in letters and letter not in found:
            found.append(letter)
    return found


def _mentioned_options(text: str, options: Sequence[str], letters: str) -> list[str]:
    haystack = f" {_normalise(text)} "
    spans: dict[str, list[tuple[int, int]]] = {}
    for letter, option in zip(letters, options, strict=True):
        spans[letter] = [
            match.span()
            for needle in _forms(option)
            for match in re.finditer(f"(?<= ){re.escape(needle)}(?= )", haystack)
        ]
    return [
        letter
        for letter, own in spans.items()
        if any(not _inside(span, spans, letter) for span in own)
    ]


def _inside(span: tuple[int, int], spans: dict[str, list[tuple[int, int]]], owner: str) -> bool:
    """Whether `span` lies within a longer match of another option ("red" in "dark red")."""
    start, end = span
    return any(
        s <= start and end <= e and (s, e) != span
        for letter, theirs in spans.items()
        if letter != owner
        for s, e in theirs
    )


def _forms(option: str) -> list[str]:
    """An option's normalised text, and without its leading article: "a red ball", "red ball"."""
    whole = _normalise(option)
    return list(dict.fromkeys(form for form in (whole, _ARTICLE.sub("", whole, count=1)) if form))


def _normalise(text: str) -> str:
    """`harness.scoring.text.normalize`, articles kept: an option may start with one."""
    return normalize(text, drop_articles=False)
