"""The public benchmarks' official scoring rules, each on the replies where it reads
otherwise than ours: the published rules' quirks are what these tests pin."""

from __future__ import annotations

import nltk
import pytest

from harness.scoring.official import activitynetqa, mvbench, nextqa, tempcompass, videomme, wups
from harness.scoring.rules import score_multiple_choice
from harness.types import Sample

OPTIONS = ("roll the handle", "tap their feet", "strum the string", "hit with sticks")


@pytest.mark.parametrize(
    ("reply", "official", "ours"),
    [
        ("C", "C", "C"),
        ("The best answer is D", "D", "D"),
        ("Best option: C", "B", "C"),  # "Best option:" is never deleted: the B of "Best"
        ("Best answer: (D)", "B", "D"),
        ("The Answer is D", "A", "D"),  # prefixes are case-sensitive
        ("A man is strumming, so the answer is C.", "A", "C"),
        ("Cannot tell", "C", None),
        ("Answer: C", "C", "C"),  # deleted by the README's current script
        ("c", None, "C"),
    ],
)
def test_videomme_reads_the_first_capital_a_to_d_left_after_its_prefixes(reply, official, ours):
    assert videomme.extract(reply) == official
    sample = Sample("s", "v.mp4", "q", "C", OPTIONS)
    assert score_multiple_choice(sample, reply).prediction == ours


def test_videomme_leaves_unreadable_answers_out_of_its_denominator():
    unreadable = videomme.score("c", "C")
    assert (unreadable.correct, unreadable.prediction) == (None, None)
    assert "denominator" in (unreadable.reason or "")
    assert videomme.score("Best option: C", "C").correct is False
    assert videomme.score("Best option: C", "B").correct is True


@pytest.mark.parametrize(
    ("reply", "accepted"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B) tap their feet", "B"),
        ("B)\nbecause they tap", "B"),
        ("", "ABCD"),  # "(" is in every "(x)": an empty reply is right
        (".", "ABCD"),
        ("Answer: B", ""),
        ("A, B", ""),
        ("Bicycle", ""),
    ],
)
def test_mvbench_check_ans_compares_the_first_token_after_the_restored_paren(reply, accepted):
    assert "".join(letter for letter in "ABCD" if mvbench.accepts(reply, letter)) == accepted
    verdict = mvbench.score(reply, OPTIONS, "B")
    assert verdict.correct is ("B" in accepted)
    assert verdict.prediction == (accepted or None)


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("B", "B"),
        ("B. tap their feet", "B"),
        ("  B) tap", "B"),
        ("A.", "A"),
        ("B</s>", "B"),
        ("(B) tap their feet", None),
        ("b", None),
        ("The answer is B.", None),
        ("BC", None),
    ],
)
def test_tempcompass_multiple_choice_rules(reply, letter):
    assert tempcompass.read_choice(reply, "B. tap their feet") == letter
    verdict = tempcompass.score_choice(reply, "B. tap their feet")
    assert verdict.correct is (letter == "B")
    assert (verdict.reason is None) is (letter is not None)


@pytest.mark.parametrize(
    ("reply", "word"),
    [
        ("Yes, he is.", "yes"),
        ("No.", "no"),
        ("not sure", "no"),  # prefix rule: "not", "none" read no
        ("None of the above", "no"),
        ("yesterday he did", "yes"),
        ("The answer is yes", None),
    ],
)
def test_tempcompass_yes_no_reads_a_prefix_only(reply, word):
    assert tempcompass.read_yes_no(reply) == word
    verdict = tempcompass.score_yes_no(reply, "B")  # the answer is "no"
    assert verdict.correct is (word == "no")
    assert verdict.prediction == {"yes": "A", "no": "B", None: None}[word]


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("C", "C"),
        ("(C) strum the string", "C"),
        ("The answer is C", "C"),
        ("I think A or C", "C"),  # the letter found last
        ("A. roll the handle, not B", "B"),  # only "B " is a letter followed by a space
        ("They strum the string with fingers here", "C"),  # more than five words: option text
        ("strum the string", None),  # lmms-eval guesses at random
        ("c", None),
    ],
)
def test_nextqa_multiple_choice_reads_as_lmms_eval_without_guessing(reply, letter):
    options = (*OPTIONS, "pat with hand")
    assert nextqa.read_choice(reply, options) == letter
    assert nextqa.score_choice(reply, options, "C").correct is (letter == "C")


def test_activitynetqa_is_exact_string_equality():
    assert activitynetqa.score("yes", "yes").correct is True
    for reply in ("Yes", "yes.", " yes", "in the gym"):
        assert activitynetqa.score(reply, "yes").correct is False
    assert activitynetqa.score("two", "2").correct is False


def test_wups_normalises_then_multiplies_the_best_word_similarities(nltk_data):
    language = wups.language()
    assert language.normalise("The two dogs run.") == ["two", "dog", "run", "."]
    # dog and cat meet at animal: 2 * 2 / (3 + 3); below 0.9 it counts a tenth.
    assert wups.score(language, "a dog", ["the cat"], "CW") == pytest.approx(
        {"wups_0": 2 / 3, "wups_0.9": 2 / 30}
    )
    # A word WordNet does not know is skipped, not counted against the answer.
    assert wups.score(language, "dog xyzzy", ["dog"], "CW")["wups_0"] == 1.0
    # A known extra word is: dog-man meet at entity, 2 / (3 + 3), in the other direction.
    assert wups.score(language, "dog man", ["dog"], "CW")["wups_0"] == pytest.approx(1 / 3)
    assert wups.score(language, "a ball", ["a cat", "a ball"], "CW")["wups_0.9"] == 1.0


def test_wups_counting_and_yes_no_questions_need_an_exact_match(nltk_data):
    language = wups.language()
    assert wups.score(language, "two", ["two"], "DC") == {"wups_0": 1.0, "wups_0.9": 1.0}
    assert wups.score(language, "2", ["two"], "DC")["wups_0"] == 0.0
    assert wups.score(language, "two dogs.", ["two"], "DC")["wups_0"] == 0.0


def test_nextqa_open_ended_official_score_is_wups_without_an_accuracy(nltk_data):
    verdict = nextqa.score_open("a dog", ["cat"], "CW")
    assert verdict.correct is None and verdict.error is None
    assert verdict.prediction == "dog" and verdict.metrics["wups_0"] == pytest.approx(2 / 3)


def test_without_nltk_data_the_open_ended_official_score_says_how_to_install_it(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    verdict = nextqa.score_open("a dog", ["cat"], "CW")
    assert verdict.correct is None and not verdict.metrics
    assert verdict.error is not None
    assert "python -m nltk.downloader wordnet averaged_perceptron_tagger_eng" in verdict.error
