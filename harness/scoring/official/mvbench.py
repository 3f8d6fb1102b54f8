"""MVBench's official check: `check_ans` of the authors' evaluation notebook
(OpenGVLab/Ask-Anything, video_chat2/mvbench.ipynb).

The notebook starts the model's reply with "Best option:(" and puts the "(" back in
front of the first line of what the model wrote; `check_ans` then lowercases that
and the answer "(b) <text>", keeps only what comes before the first space of each,
and counts the reply correct when the reply's part, its periods deleted, is a
substring of "(b)", or "(b)" is a substring of it. The option's text is never
compared. So "B", "B." and "(B) walking" are right for B, "Answer: B" is wrong, and
an empty reply is right for every option: there is no unreadable reply.

`prediction` is the options this check accepts, as letters ("B"; "ABCD" for an
empty reply); no letter accepted is a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.scoring.choice import option_letters
from harness.types import OfficialScore

SCORER = "MVBench check_ans (OpenGVLab/Ask-Anything video_chat2/mvbench.ipynb)"


def accepts(response: str, letter: str) -> bool:
    """Whether `check_ans` counts `response` right when the answer is option `letter`."""
    lines = response.strip().split("\n")
    reply = ("(" + lines[0]).lower().split(" ")[0].replace(".", "")
    truth = f"({letter.lower()})"
    return reply in truth or truth in reply


def score(response: str, options: Sequence[str], answer: str) -> OfficialScore:
    """The official verdict on `response` for the correct letter `answer`."""
    accepted = "".join(
        letter for letter in option_letters(len(options)) if accepts(response, letter)
    )
    reason = None
    if len(accepted) > 1:
        reason = f"matches options {accepted}: right whichever is the answer"
    elif not accepted:
        reason = "matches no option: wrong"
    return OfficialScore(
        SCORER, correct=answer in accepted, prediction=accepted or None, reason=reason
    )
