"""Stand-in for NLTK's downloaded data (`python -m nltk.downloader wordnet
averaged_perceptron_tagger_eng`): a WordNet of a few nouns and a perceptron tagger
trained on a few sentences, written in the real formats where NLTK looks for them.

Checked against NLTK 3.10's readers (`WordNetCorpusReader`, `PerceptronTagger`): the
WordNet files are the ones the reader opens (`lexnames`, `index.*`, `data.*`,
`*.exc`), each data line starting with its own byte offset, LF endings, hypernym
(`@`) and hyponym (`~`) pointers as in WordNet 3.0's `data.noun`; the tagger is
trained and saved by NLTK itself. Wu-Palmer similarity on it is what WordNet gives
for the same tree: 2 * depth(lcs) / (depth(a) + depth(b)), depths counted from 1.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

HEADER = "  1 A tiny WordNet for tests, in WordNet 3.0's format.\n"
TAXONOMY: dict[str, str | None] = {
    "entity": None,
    "animal": "entity",
    "dog": "animal",
    "cat": "animal",
    "person": "entity",
    "man": "person",
    "woman": "person",
    "ball": "entity",
    "two": None,
}
"""Each noun and its hypernym: one synset per noun, the trees rooted at `entity` and `two`."""
TAGGED = [
    [("the", "DT"), ("dog", "NN"), ("runs", "VBZ"), (".", ".")],
    [("a", "DT"), ("man", "NN"), ("holds", "VBZ"), ("the", "DT"), ("ball", "NN")],
    [("two", "CD"), ("dogs", "NNS"), ("play", "VBP"), ("with", "IN"), ("a", "DT"), ("cat", "NN")],
    [("the", "DT"), ("woman", "NN"), ("is", "VBZ"), ("happy", "JJ")],
    [("cats", "NNS"), ("run", "VBP"), ("quickly", "RB")],
]


def build(root: Path) -> Path:
    """Write the stand-in under `root` (an NLTK data directory) and return `root`."""
    wordnet = root / "corpora" / "wordnet"
    wordnet.mkdir(parents=True, exist_ok=True)
    (wordnet / "lexnames").write_text(
        "00\tadj.all\t3\n01\tadj.pert\t3\n02\tadv.all\t4\n03\tnoun.Tops\t1\n"
    )
    offsets, lines = _data_lines()
    (wordnet / "data.noun").write_text(HEADER + "".join(lines))
    index = [
        " ".join([word, "n", "1", str(len(symbols)), *symbols, "1", "0", f"{offsets[word]:08d}"])
        + "  \n"
        for word in sorted(TAXONOMY)
        for symbols in [sorted({symbol for symbol, _ in _pointers(word)})]
    ]
    (wordnet / "index.noun").write_text(HEADER + "".join(index))
    for pos in ("verb", "adj", "adv"):
        (wordnet / f"data.{pos}").write_text(HEADER)
        (wordnet / f"index.{pos}").write_text(HEADER)
    (wordnet / "noun.exc").write_text("")
    for pos in ("verb", "adj", "adv"):
        (wordnet / f"{pos}.exc").write_text("")
    _train_tagger(root / "taggers" / "averaged_perceptron_tagger_eng")
    return root


def _pointers(word: str) -> list[tuple[str, str]]:
    up = TAXONOMY[word]
    return ([("@", up)] if up else []) + [
        ("~", w) for w, parent in TAXONOMY.items() if parent == word
    ]


def _data_lines() -> tuple[dict[str, int], list[str]]:
    """Each noun's data line, with offsets: the byte position of the line in `data.noun`."""
    templates = {
        word: f"{{{word}}} 03 n 01 {word} 0 {len(_pointers(word)):03d} "
        + "".join(f"{symbol} {{{target}}} n 0000 " for symbol, target in _pointers(word))
        + f"| a {word}  \n"
        for word in TAXONOMY
    }
    offsets, position = {}, len(HEADER.encode())
    for word, template in templates.items():  # every offset is 8 digits, so lengths are known
        offsets[word] = position
        position += len(_fill(template, dict.fromkeys(TAXONOMY, 0)).encode())
    return offsets, [_fill(templates[word], offsets) for word in TAXONOMY]


def _fill(template: str, offsets: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"{offsets[m[1]]:08d}", template)


def _train_tagger(folder: Path) -> None:
    from nltk.tag.perceptron import PerceptronTagger

    tagger = PerceptronTagger(load=False)
    state = random.getstate()
    random.seed(0)  # training shuffles with the global generator: the same tagger every time
    try:
        tagger.train(TAGGED, nr_iter=5)
    finally:
        random.setstate(state)
    folder.mkdir(parents=True, exist_ok=True)
    tagger.save_to_json("eng", loc=str(folder))
