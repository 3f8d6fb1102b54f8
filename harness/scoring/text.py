"""The one text normaliser of scoring, shared by the choice extractor and the open-ended metrics.

Lowercase; anything but letters and digits (of any script) separates words, so
punctuation and symbols are dropped; number words up to ten read as digits, so
"three" matches "3"; words joined by single spaces. The open-ended metrics also
drop the articles a/an/the (the SQuAD convention for short answers); the
extractor keeps them, since an option's text may start with one.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\W_]+")
_ARTICLES = frozenset(("a", "an", "the"))
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}


def normalize(text: str, *, drop_articles: bool = True) -> str:
    """The words of `text`, lowercased, without punctuation, number words as digits, and
    without articles unless `drop_articles` is false, joined by single spaces."""
    words = _SEPARATORS.sub(" ", text.lower()).split()
    if drop_articles:
        words = [word for word in words if word not in _ARTICLES]
    return " ".join(_NUMBER_WORDS.get(word, word) for word in words)
