"""NExT-QA's official open-ended score: WUPS as `eval_oe.py` and `metrics.py` of
doc-doc/NExT-OE compute it, on NLTK's WordNet.

Both answers are normalised first (`remove_stop`): tokenised, tagged with NLTK's
perceptron tagger, each token lowercased and lemmatised by WordNet for its tag
(noun when the tag is none of noun, verb, adjective, adverb; the Porter stem when
WordNet knows neither the lemma nor the word, else the word), then NExT-OE's
stopwords dropped. Punctuation tokens stay. Counting (DC) and yes/no (DB)
questions are then exact matches; the others take WUPS at a threshold: for each
word of one answer, the best Wu-Palmer similarity to a word of the other (1 for the
same word; else the first WordNet sense of each, times 0.1 below the threshold), a
word with no similarity skipped rather than counted; the product of these, and the
smaller of the two directions. A question with a second reference takes the better
of the two, at the same threshold. WUPS@0 is the number NExT-OE prints; WUPS@0.9
is reported too.

Differences from the published code, none of which changes a one-sentence answer:
tokens come from NLTK's Treebank tokenizer over the whole text (NExT-OE splits
sentences first with punkt), and lemmas are checked against NLTK's WordNet (pywsd
checks them against its own copy of WordNet 3.0, the same data).

NLTK's `wordnet` and `averaged_perceptron_tagger_eng` data must be installed
(`python -m nltk.downloader wordnet averaged_perceptron_tagger_eng`); without them
the score is not computed and says why.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError

THRESHOLDS = (0.0, 0.9)
EXACT_TYPES = frozenset(("DC", "DB"))
"""Question types scored by exact match of the normalised answers (count, yes/no)."""
INSTALL = "python -m nltk.downloader wordnet averaged_perceptron_tagger_eng"

# NExT-OE's stopwords.txt: NLTK's English stopwords less the prepositions, negations
# and quantifiers its authors kept (no, not, in, on, before, after, few, more, ...).
_STOPWORD_TEXT = """i me my myself we our ours ourselves you you're you've you'll you'd your yours
    yourself yourselves he him his himself she she's her hers herself it it's its itself
    they them their theirs themselves what which who whom this that that'll these those
    am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while to from of at for with about into through during
    again further then here there when where why how all any each most other some such
    only own so than too very s t can will just don don't should should've now d ll m o
    re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
    hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan
    shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_MORPHY = {"NN": "n", "JJ": "a", "VB": "v", "RB": "r"}


class ResourceMissing(HarnessError):
    """NLTK data that WUPS needs is not installed."""


@dataclass(frozen=True)
class Language:
    """The NLTK pieces WUPS runs on: WordNet, the tagger, the tokenizer and the stemmer."""

    wordnet: Any
    tagger: Any
    tokenizer: Any
    stemmer: Any

    def normalise(self, text: str) -> list[str]:
        """NExT-OE's `remove_stop`: lemmas of the tagged tokens, stopwords dropped."""
        tagged = self.tagger.tag(self.tokenizer.tokenize(text))
        lemmas = [self._lemma(word.lower(), tag) for word, tag in tagged]
        return [lemma for lemma in lemmas if lemma not in STOPWORDS]

    def wups(self, prediction: Sequence[str], truth: Sequence[str], threshold: float) -> float:
        """The smaller of the two directions' products of best word similarities."""
        return min(
            self._directed(prediction, truth, threshold),
            self._directed(truth, prediction, threshold),
        )

    def _lemma(self, word: str, tag: str) -> str:
        pos = _MORPHY.get(tag[:2]) or _MORPHY.get(self.tagger.tag([word])[0][1][:2], "n")
        forms = self.wordnet._morphy(word, pos)  # as WordNetLemmatizer.lemmatize does
        lemma = min(forms, key=len) if forms else word
        if self.wordnet.synsets(lemma):
            return lemma
        stem = self.stemmer.stem(word)
        return stem if self.wordnet.synsets(stem) else word

    def _directed(self, words: Sequence[str], others: Sequence[str], threshold: float) -> float:
        product, counted = 1.0, False
        for word in words:
            best = max((self._wup(word, other, threshold) for other in others), default=0.0)
            if best == 0:
                continue
            product *= best
            counted = True
        return product if counted else 0.0

    def _wup(self, first: str, second: str, threshold: float) -> float:
        if first == second:
            return 1.0
        senses, others = self.wordnet.synsets(first), self.wordnet.synsets(second)
        if not senses or not others:
            return 0.0
        similarity = senses[0].wup_similarity(others[0]) or 0.0
        return similarity * 0.1 if similarity < threshold else similarity


def score(
    language: Language, answer: str, references: Sequence[str], qtype: str
) -> dict[str, float]:
    """WUPS@0 and WUPS@0.9 (`wups_0`, `wups_0.9`) of `answer` against the best of
    `references`; exact match at both for counting and yes/no questions."""
    prediction = language.normalise(answer)
    truths = [language.normalise(reference) for reference in references]
    metrics = {}
    for threshold in THRESHOLDS:
        if qtype in EXACT_TYPES:
            value = float(any(" ".join(prediction) == " ".join(t) for t in truths))
        else:
            value = max(language.wups(prediction, truth, threshold) for truth in truths)
        metrics[f"wups_{threshold:g}"] = value
    return metrics


def language() -> Language:
    """The NLTK data WUPS needs, found on NLTK's data path and loaded once.

    Raises `ResourceMissing`, saying how to install it, when NLTK or its data is not there.
    """
    try:
        import nltk
    except ImportError:
        raise ResourceMissing(f"NLTK is not installed: pip install nltk, then {INSTALL}") from None
    try:
        wordnet = nltk.data.find("corpora/wordnet")
        tagger = nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
    except LookupError:
        missing = f"NLTK's WordNet or tagger data is not installed: {INSTALL}"
        raise ResourceMissing(missing) from None
    return _load(str(wordnet), str(tagger))


@functools.cache
def _load(wordnet_dir: str, tagger_dir: str) -> Language:
    import warnings

    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.data import FileSystemPathPointer
    from nltk.stem import PorterStemmer
    from nltk.tag.perceptron import PerceptronTagger
    from nltk.tokenize import TreebankWordTokenizer

    class EnglishWordNet(WordNetCorpusReader):
        """WordNet without the version map, which serves only the other languages' wordnets
        (NLTK would otherwise load the whole corpus a second time to build it)."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        wordnet = EnglishWordNet(wordnet_dir, None)
    tagger = PerceptronTagger(load=False)
    tagger.load_from_json("eng", FileSystemPathPointer(tagger_dir))
    return Language(wordnet, tagger, TreebankWordTokenizer(), PorterStemmer())
