"""Video-MME's official answer extraction: `extract_characters_regex` of the
`eval_your_results.py` that the Video-MME README names (thanku-all/parse_answer,
commit afd52cf; BradyFU/Video-MME's own copy, deleted in June 2024, lacked the last
four prefixes).

1. Strip the response, then delete every occurrence, case-sensitively and anywhere,
   of each answer prefix in turn. Two pairs of prefixes in the published list lack
   the comma between them, so Python joins each pair into one string that never
   occurs: "The best option is", "The correct option is", "Best answer:" and "Best
   option:" are never deleted.
2. The answer is the first capital A, B, C or D left anywhere in the text, inside a
   word or not: "Best option: C" reads B, "A man ..." reads A.
3. No such capital: unreadable, and the official accuracy leaves the question out
   of its denominator (it divides by the questions it could read).
"""

from __future__ import annotations

import re

from harness.types import OfficialScore

SCORER = "Video-MME eval_your_results.py (thanku-all/parse_answer afd52cf)"
PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is" + "The correct option is",  # the published list's missing comma
    "Best answer:" + "Best option:",  # likewise
    "Answer:",
    "Option:",
    "The correct answer",
    "The correct option",
)
_LETTER = re.compile("[ABCD]")


def extract(response: str) -> str | None:
    """The letter the official script reads in `response`, or None when it reads none."""
    text = response.strip()
    for prefix in PREFIXES:
        text = text.replace(prefix, "")
    match = _LETTER.search(text)
    return match[0] if match else None


def score(response: str, answer: str) -> OfficialScore:
    """The official verdict on `response` for the correct letter `answer`."""
    letter = extract(response)
    if letter is None:
        return OfficialScore(
            SCORER,
            correct=None,
            reason="no capital A-D: left out of the official denominator",
        )
    return OfficialScore(SCORER, correct=letter == answer, prediction=letter)
