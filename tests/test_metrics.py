"""The ranked multiple-choice extractor against realistic model outputs."""

from __future__ import annotations

import pytest

from harness.scoring.choice import (
    ChoiceExtraction,
    explain_choice,
    extract_choice,
    option_letters,
    option_span,
)
from harness.scoring.prompts import lettered

COLOURS = ["red", "green", "blue", "yellow"]
DIRECTIONS = ["left to right", "right to left", "top to bottom", "bottom to top"]
COUNTS = ["2", "3", "4", "5"]
SHAPES = ["circle", "square", "triangle", "cross"]
SHADES = ["red", "dark red", "green", "light green"]
SIDES = ["to the left", "to the right", "up", "down"]
BALLS = ["a red ball rolling left", "a red ball rolling right", "a blue cube", "nothing moves"]
DOOR = ["The man opens the door", "The man closes the door", "A woman waves", "A dog runs out"]
PEOPLE = ["The man opens the door", "The woman opens the door", "The man sits", "The woman sits"]

RULES = {"explicit", "bare", "leading", "text", "letter", "mention", "chinese", "shortened"}

CASES = [
    # terse letters, as MiniCPM-V and LLaVA answer the usual instruction
    ("B", COLOURS, "B"),
    ("(B)", COLOURS, "B"),
    ("B.", COLOURS, "B"),
    ("B)", COLOURS, "B"),
    ("[C]", COLOURS, "C"),
    ("  D\n", COLOURS, "D"),
    ("**C**", COLOURS, "C"),
    ("A", SHAPES, "A"),
    ("b", COLOURS, "B"),
    ("(d)", COLOURS, "D"),
    ("a.", COLOURS, "A"),
    # declarations
    ("Answer: B", COLOURS, "B"),
    ("The answer is B", COLOURS, "B"),
    ("The correct answer is (C).", COLOURS, "C"),
    ("The best answer is: D. yellow", COLOURS, "D"),
    ("**Answer:** C", COLOURS, "C"),
    ("- **Answer**: B", COLOURS, "B"),
    ("ANSWER: A", COLOURS, "A"),
    ("Final answer: (A) red", COLOURS, "A"),
    ("The answer is A because the screen turns red at the end.", COLOURS, "A"),
    ("answer: c", COLOURS, "C"),
    ("The answer is (b).", COLOURS, "B"),
    ("The answer to this question is B.", COLOURS, "B"),
    ("The correct option is C", COLOURS, "C"),
    ("Answer:\nD", COLOURS, "D"),
    ("I believe the correct answer is C) triangle.", SHAPES, "C"),
    ("Option C is correct.", COLOURS, "C"),
    ("Option A is incorrect because the ball is green. Option B is correct.", COLOURS, "B"),
    ("A and B look similar, but the answer is D.", COLOURS, "D"),
    ("Answer: B. The other options are incorrect: A is red, C is blue.", COLOURS, "B"),
    ("The ball is green, so the answer is B.\n\nA. red - incorrect\nC. blue - no", COLOURS, "B"),
    ("Answer: Blue (C)", COLOURS, "C"),
    ("The answer is: three.", COUNTS, "B"),
    ("Answer: dark red", SHADES, "B"),
    # self-corrections: the last declaration wins
    ("I think the answer is A. Wait, looking again, the answer is C.", COLOURS, "C"),
    ("Answer: C.\nActually, rewatching the end, the answer is D.", COLOURS, "D"),
    ("<think>Red first, then blue... so A? No.</think>The answer is D", COLOURS, "D"),
    # leading markers with explanations
    ("B. green", COLOURS, "B"),
    ("C) blue - the last segment is blue.", COLOURS, "C"),
    ("D: yellow", COLOURS, "D"),
    ("(A) The ball moves from left to right.", DIRECTIONS, "A"),
    ("B because the ball ends on the left side.", DIRECTIONS, "B"),
    ("C\nThe circle flashes four times.", COUNTS, "C"),
    ("A is correct: it flashes twice.", COUNTS, "A"),
    ("(C) blue\n\nExplanation: the last frame is blue, unlike A and B.", COLOURS, "C"),
    # letters that are not at the start
    ("Based on the video, C", COLOURS, "C"),
    ("Based on the video, the correct option would be (B).", COLOURS, "B"),
    ("I think it's B", COLOURS, "B"),
    ("I'd go with B, the green one.", COLOURS, "B"),
    ("Looking at the final frames, D.", COLOURS, "D"),
    ("Circle and Square are distractors here; option D fits.", SHAPES, "D"),
    ("It's B, not A.", COLOURS, "B"),
    ("### Reasoning\nThe ball never leaves the top half.\n### Choice\n(D)", DIRECTIONS, "D"),
    # the option's text instead of its letter
    ("Blue", COLOURS, "C"),
    ("right to left", DIRECTIONS, "B"),
    ("The ball moves to the left.", SIDES, "A"),
    ("The ball moves from right to left across the screen.", DIRECTIONS, "B"),
    ("A red screen is shown last.", COLOURS, "A"),
    ("The last shape to appear is a triangle.", SHAPES, "C"),
    ("The white circle flashes three times.", COUNTS, "B"),
    ("There are 5 flashes in total.", COUNTS, "D"),
    ("The screen ends dark red.", SHADES, "B"),
    ("It is light green at the end", SHADES, "D"),
    # several letters listed, or the options echoed: unreadable unless one is declared
    ("A. red B. green C. blue D. yellow", COLOURS, None),
    ("A. red\nB. green\nC. blue\nD. yellow", COLOURS, None),
    ("(A) red (B) green (C) blue (D) yellow", COLOURS, None),
    ("Answer: A. red B. green C. blue D. yellow", COLOURS, None),
    ("A) circle\nB) square", SHAPES, None),
    ("B. green C. blue", COLOURS, None),
    ("A or C", COLOURS, None),
    ("A B C D", COLOURS, None),
    ("The options are A, B, C and D.", COLOURS, None),
    ("The answer is C. (A and B are wrong)", COLOURS, "C"),
    ("The answer is C (A and B are wrong)", COLOURS, "C"),
    ("A. red B. green C. blue D. yellow\nAnswer: C", COLOURS, "C"),
    ("Options: A. red B. green C. blue D. yellow. The correct answer is D.", COLOURS, "D"),
    ("Answer: C\n\nA. red - the screen is never red\nB. green - no", COLOURS, "C"),
    ("Answer: B. green\nC. blue is wrong, it is never blue.", COLOURS, "B"),
    # Chinese, as MiniCPM-V often answers
    ("答案是B", COLOURS, "B"),
    ("选C", COLOURS, "C"),
    ("正确答案\uff1aA", COLOURS, "A"),
    ("答案\uff1aD。", COLOURS, "D"),
    ("B选项", COLOURS, "B"),
    ("\uff08C\uff09", COLOURS, "C"),
    ("\uff22", COLOURS, "B"),
    ("根据视频\uff0c球最后变成了蓝色\uff0c所以答案是C。", COLOURS, "C"),
    ("A和B都不对\uff0c我选D。", COLOURS, "D"),
    ("选项B是正确的。", COLOURS, "B"),
    ("不是A\uff0c应该选C", COLOURS, "C"),
    ("答案是选项D\uff1a黄色", COLOURS, "D"),
    ("答案是A或B", COLOURS, None),
    ("A和C都有可能。", COLOURS, None),
    ("选项A和选项B都不对", COLOURS, None),
    ("我无法从视频中判断答案。", COLOURS, None),
    # an option's text without its leading article or words
    ("red ball rolling left", BALLS, "A"),
    ("Red ball rolling right.", BALLS, "B"),
    ("man opens the door", DOOR, "A"),
    ("Man closes the door.", DOOR, "B"),
    ("The answer is man opens the door.", DOOR, "A"),
    ("In the video, dog runs out of the room.", DOOR, "D"),
    ("woman sits", PEOPLE, "D"),
    ("opens the door", PEOPLE, None),
    ("sits", PEOPLE, None),
    ("red ball rolling", BALLS, None),
    # unreadable: the extractor refuses rather than guesses
    ("", COLOURS, None),
    ("   \n", COLOURS, None),
    ("I cannot determine the answer from the video.", COLOURS, None),
    ("Sorry, I'm unable to view videos.", SHAPES, None),
    ("It is either A or B.", COLOURS, None),
    ("A or B, the frames are too dark to tell.", COLOURS, None),
    ("The correct answer is A, B, or C.", COLOURS, None),
    ("Option B or option C.", COLOURS, None),
    ("The screen is red and then blue.", COLOURS, None),
    ("A triangle appears right after the square.", SHAPES, None),
    ("It turns dark red and then light green", SHADES, None),
    ("Answer: E", COLOURS, None),
    ("E", COLOURS, None),
    ("E. purple", COLOURS, None),
    ("the answer is a red ball", SHAPES, None),
    ("A video of moving shapes.", SHAPES, None),
    ("Because of the motion, nothing can be said.", DIRECTIONS, None),
    ("I think it's b", COLOURS, None),
    ("N/A", COLOURS, None),
    ("The answer is not A.", COLOURS, None),
]


@pytest.mark.parametrize(("text", "options", "expected"), CASES)
def test_realistic_outputs(text, options, expected):
    assert extract_choice(text, options) == expected


@pytest.mark.parametrize(("text", "options", "expected"), CASES)
def test_rule_xor_reason(text, options, expected):
    extraction = explain_choice(text, options)
    if expected is None:
        assert (extraction.rule, bool(extraction.reason)) == (None, True)
    else:
        assert (extraction.rule in RULES, extraction.reason) == (True, None)


def test_the_table_is_large_and_covers_refusals():
    assert len(CASES) >= 45
    assert sum(expected is None for _, _, expected in CASES) >= 10


@pytest.mark.parametrize(
    ("text", "options", "reason"),
    [
        ("", COLOURS, "empty response"),
        ("  \t\n ", COLOURS, "empty response"),
        ("<think>Red, so A... or maybe", COLOURS, "empty response"),
        ("I cannot tell.", COLOURS, "no option letter or option text found"),
        ("It is either A or B.", COLOURS, "ambiguous: mentions options A and B"),
        ("The screen is red and then blue.", COLOURS, "ambiguous: mentions options A and C"),
        ("A, B and D all show a ball.", COLOURS, "ambiguous: mentions options A, B and D"),
        ("Answer: E", COLOURS, "answer 'E' is not among options A-D"),
        ("(F)", COLOURS, "answer 'F' is not among options A-D"),
        ("Answer: B", ["the only option"], "answer 'B' is not among options A"),
        (
            "A. red B. green C. blue D. yellow",
            COLOURS,
            "lists options A, B, C and D without choosing one",
        ),
        ("(B) green\n(C) blue", COLOURS, "lists options B and C without choosing one"),
        ("答案是A或B", COLOURS, "ambiguous: mentions options A and B"),
        ("opens the door", PEOPLE, "ambiguous: mentions options A and B"),
    ],
)
def test_unreadable_answers_say_why(text, options, reason):
    assert explain_choice(text, options) == ChoiceExtraction(None, reason=reason)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Answer: B", "explicit"),
        ("The answer is green.", "explicit"),
        ("(B)", "bare"),
        ("B. green", "leading"),
        ("green", "text"),
        ("答案是B", "chinese"),
        ("Based on the video, B", "letter"),
        ("It turns green at the end.", "mention"),
    ],
)
def test_each_rule_names_itself(text, rule):
    assert explain_choice(text, COLOURS) == ChoiceExtraction("B", rule)


def test_a_declaration_outranks_a_leading_letter():
    assert explain_choice("A is tempting, but the answer is D.", COLOURS) == ChoiceExtraction(
        "D", "explicit"
    )


def test_an_option_without_its_leading_words_is_shortened():
    assert explain_choice("man closes the door", DOOR) == ChoiceExtraction("B", "shortened")


def test_out_of_range_letters_are_ignored_outside_declarations():
    assert explain_choice("Unlike E and F, only B fits.", COLOURS) == ChoiceExtraction(
        "B", "letter"
    )


def test_option_texts_in_any_script_are_matched_by_the_shared_normaliser():
    assert explain_choice("\u732b\u3002", ["\u72d7", "\u732b"]) == ChoiceExtraction("B", "text")
    assert explain_choice("C\u2019est un chat.", ["chien", "chat"]) == ChoiceExtraction(
        "B", "mention"
    )


def test_option_letters():
    assert option_letters(1) == "A"
    assert option_letters(4) == "ABCD"
    assert option_letters(26) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for bad in (-1, 0, 27):
        with pytest.raises(ValueError, match="1 to 26 options"):
            option_letters(bad)


def test_options_are_lettered_by_one_helper():
    assert option_span(1) == "A" and option_span(4) == "A-D"
    assert lettered(["red", "blue"]) == ["A. red", "B. blue"]
    assert lettered(["red", "blue"], "({letter}) {text}") == ["(A) red", "(B) blue"]


@pytest.mark.parametrize(("text", "options", "_"), CASES)
def test_extract_choice_is_explain_choice_letter(text, options, _):
    assert extract_choice(text, options) == explain_choice(text, options).letter
