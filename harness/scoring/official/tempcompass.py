"""TempCompass's official rules for multiple choice and yes/no (llyx97/TempCompass,
`eval_multi-choice.py` and `eval_yes_no.py`), with their LLM fallback off.

Both delete "</s>" and strip the reply first. Multiple choice, case-sensitively:
the whole line of the correct option ("B. dribbling"), a lone "A"-"D", or a reply
starting "B." or "B)" gives that option; "(B)", "b" or "The answer is B" match no rule. Yes/no: the
lowercased reply starting with "yes" is yes, else starting with "no" is no, so "not
sure" and "none" read no. The authors send a reply no rule matches to
gpt-3.5-turbo-1106; here it is unreadable and wrong (their `--disable_llm`), and it
stays in the denominator, as theirs does.
"""

from __future__ import annotations

from harness.types import OfficialScore

SCORER_CHOICE = "TempCompass eval_multi-choice.py rules, LLM fallback off (llyx97/TempCompass)"
SCORER_YES_NO = "TempCompass eval_yes_no.py rules, LLM fallback off (llyx97/TempCompass)"
UNMATCHED = "no rule matched (the authors would ask gpt-3.5-turbo-1106): wrong"
_LETTERS = ("A", "B", "C", "D")


def read_choice(response: str, answer_line: str) -> str | None:
    """The option letter the multiple-choice rules read, or None when none matches;
    `answer_line` is the dataset's answer, the correct option's line ("B. dribbling")."""
    reply = response.replace("</s>", "").strip()
    if reply == answer_line:
        return answer_line[0]
    if reply in _LETTERS:
        return reply
    if reply[:1] in _LETTERS and reply[1:2] in (".", ")"):
        return reply[0]
    return None


def read_yes_no(response: str) -> str | None:
    """ "yes" or "no" as the yes/no rules read `response`, or None when neither matches."""
    reply = response.replace("</s>", "").strip().lower()
    for word in ("yes", "no"):
        if reply.startswith(word):
            return word
    return None


def score_choice(response: str, answer_line: str) -> OfficialScore:
    """The multiple-choice verdict on `response`; `answer_line` as in `read_choice`."""
    letter = read_choice(response, answer_line)
    if letter is None:
        return OfficialScore(SCORER_CHOICE, correct=False, reason=UNMATCHED)
    return OfficialScore(SCORER_CHOICE, correct=letter == answer_line[0], prediction=letter)


def score_yes_no(response: str, answer: str) -> OfficialScore:
    """The yes/no verdict on `response`; `answer` is "A" for yes and "B" for no, the
    letters of the benchmark's options ("yes", "no"), and so is the prediction."""
    word = read_yes_no(response)
    if word is None:
        return OfficialScore(SCORER_YES_NO, correct=False, reason=UNMATCHED)
    letter = "A" if word == "yes" else "B"
    return OfficialScore(SCORER_YES_NO, correct=letter == answer, prediction=letter)
