"""ActivityNet-QA's official accuracy: `evaluation/eval.py` of MILVLG/activitynet-qa,
exact string equality of the answer and the reference, as written: case, spaces and
punctuation count ("Yes" and "yes." are wrong for "yes"; "two" for "2"). The field's
LLM-era number is the Video-ChatGPT GPT judge's instead (`--judge-model`). The
repository has no WUPS code, so none is computed.
"""

from __future__ import annotations

from harness.types import OfficialScore

SCORER = "ActivityNet-QA evaluation/eval.py exact match (MILVLG/activitynet-qa)"


def score(response: str, reference: str) -> OfficialScore:
    """The official verdict: `response` is exactly `reference`."""
    return OfficialScore(SCORER, correct=response == reference, prediction=response)
