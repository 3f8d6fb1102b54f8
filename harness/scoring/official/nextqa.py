"""NExT-QA's scoring as the field runs it.

Multiple choice: the authors' `eval_mc.py` (doc-doc/NExT-QA) compares option indices
a classifier outputs and reads no text, so the rule here is the most used peer's,
lmms-eval's `parse_multi_choice_response` (lmms_eval/tasks/nextqa/utils.py, from
MMMU). It strips , . ! ? ; : ' from the ends, then takes the letters written "(C)";
failing that, any letter followed by a space (the article "A " counts); failing that,
"C."; failing that, in a reply of more than five words, the options whose text it
contains. Of several, the one found last wins (by "(C)", " C ", or the option's
text; none found last, the first). Where lmms-eval then picks a random letter, this
rule reads nothing: the answer is unreadable and wrong.

Open-ended: WUPS, as NExT-OE's `eval_oe.py` computes it (`harness.scoring.official.wups`).
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.scoring.choice import option_letters
from harness.scoring.official import wups
from harness.types import OfficialScore

SCORER_CHOICE = (
    "lmms-eval nextqa parse_multi_choice_response, no random guess "
    "(the authors' eval_mc.py reads no text)"
)
SCORER_OPEN = "NExT-OE eval_oe.py WUPS (doc-doc/NExT-OE), on NLTK's WordNet"
_ENDS = (",", ".", "!", "?", ";", ":", "'")


def read_choice(response: str, options: Sequence[str]) -> str | None:
    """The letter lmms-eval's parser reads in `response`, or None where it would guess."""
    for char in _ENDS:
        response = response.strip(char)
    padded = f" {response} "
    letters = option_letters(len(options))
    for marker, last in (("({})", "({})"), ("{} ", " {} "), ("{}.", " {} ")):
        found = [letter for letter in letters if marker.format(letter) in padded]
        if found:
            return _last(found, [padded.rfind(last.format(letter)) for letter in found])
    if len(padded.split()) > 5:
        lowered = padded.lower()
        texts = dict(zip(letters, (option.lower() for option in options), strict=True))
        found = [letter for letter, text in texts.items() if text in lowered]
        if found:
            return _last(found, [lowered.rfind(texts[letter]) for letter in found])
    return None


def score_choice(response: str, options: Sequence[str], answer: str) -> OfficialScore:
    """The verdict on a multiple-choice `response` for the correct letter `answer`."""
    letter = read_choice(response, options)
    if letter is None:
        return OfficialScore(
            SCORER_CHOICE, correct=False, reason="nothing to read (lmms-eval would guess): wrong"
        )
    return OfficialScore(SCORER_CHOICE, correct=letter == answer, prediction=letter)


def score_open(response: str, references: Sequence[str], qtype: str) -> OfficialScore:
    """WUPS@0 and WUPS@0.9 of an open-ended `response`; NExT-OE defines no accuracy."""
    try:
        language = wups.language()
    except wups.ResourceMissing as missing:
        return OfficialScore(SCORER_OPEN, error=str(missing))
    metrics = wups.score(language, response, references, qtype)
    return OfficialScore(
        SCORER_OPEN, prediction=" ".join(language.normalise(response)), metrics=metrics
    )


def _last(found: list[str], positions: list[int]) -> str:
    """The candidate found last; the first where none is (every position -1), as argmax does."""
    return found[positions.index(max(positions))]
