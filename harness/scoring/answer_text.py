"""What scoring reads of an answer: the model's text with special-token markup removed.

MiniCPM-V 2.6's `chat()` decodes without skipping special tokens, so an answer
can carry grounding markup (`<ref>`, `<box>`, `<quad>`, `<point>` and their
closing tags), image markup, or Qwen2's `<|...|>` tokens such as
`<|im_end|>` and `<|reserved_special_token_N|>`. The record keeps the text as
produced; scorers read it without them, so markup never counts as words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPECIAL_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_]{1,64}\|>|</?(?:ref|box|quad|point|image|slice|image_id|unk)>"
)


@dataclass(frozen=True)
class ReadableAnswer:
    text: str
    removed: tuple[str, ...]
    """The distinct special tokens taken out, in order of first appearance."""

    @property
    def note(self) -> str:
        """How the text was read, for a score's rule or reason ("" when as produced)."""
        if not self.removed:
            return ""
        return f"read with special-token text removed: {', '.join(self.removed)}"


def readable(text: str) -> ReadableAnswer:
    """`text` without special-token markup (each replaced by a space where it stood
    between words, so "<ref>cat</ref>dog" reads "cat dog")."""
    removed = tuple(dict.fromkeys(SPECIAL_TOKEN.findall(text)))
    if not removed:
        return ReadableAnswer(text, ())
    cleaned = re.sub(r"[ \t]{2,}", " ", SPECIAL_TOKEN.sub(" ", text)).strip()
    return ReadableAnswer(cleaned, removed)
