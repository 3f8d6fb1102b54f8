"""Metrics for open-ended answers: normalised exact match, token F1, WER and CER.

Texts are compared after `harness.scoring.text.normalize`, the SQuAD convention the
field uses for short answers: lowercase, punctuation and the articles a/an/the
dropped, whitespace squeezed, number words up to ten as digits. With several
references, each metric takes the best over them. WER and CER come from jiwer
over the normalised texts (0 is perfect; they can exceed 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from harness.scoring.text import normalize


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference."""
    return float(any(normalize(prediction) == normalize(ref) for ref in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best F1 over references of the normalised tokens' multiset overlap."""
    return max(
        (_f1(normalize(prediction).split(), normalize(r).split()) for r in references), default=0.0
    )


def word_error_rate(prediction: str, references: Sequence[str]) -> float:
    """Lowest WER of the prediction against any reference (jiwer, normalised texts)."""
    import jiwer  # imported when first needed: `compare` of choice-only runs never is

    return min(_rate(jiwer.wer, prediction, ref) for ref in references)


def char_error_rate(prediction: str, references: Sequence[str]) -> float:
    """Lowest CER of the prediction against any reference (jiwer, normalised texts)."""
    import jiwer

    return min(_rate(jiwer.cer, prediction, ref) for ref in references)


def open_ended_metrics(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """All four metrics, keyed `exact_match`, `token_f1`, `wer`, `cer`."""
    if not references:
        raise ValueError("open-ended scoring needs at least one reference answer")
    return {
        "exact_match": exact_match(prediction, references),
        "token_f1": token_f1(prediction, references),
        "wer": word_error_rate(prediction, references),
        "cer": char_error_rate(prediction, references),
    }


def _f1(predicted: list[str], reference: list[str]) -> float:
    if not predicted or not reference:
        return float(predicted == reference)
    overlap = sum((Counter(predicted) & Counter(reference)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(reference)
    return 2 * precision * recall / (precision + recall)


def _rate(measure: Callable[[str, str], float], prediction: str, reference: str) -> float:
    truth, guess = normalize(reference), normalize(prediction)
    if not truth:
        return 0.0 if not guess else 1.0
    return float(measure(truth, guess))
