"""The ranked multiple-choice extractor against realistic model outputs."""

from __future__ import annotations

import pytest

from harness.metrics import explain_choice, extract_choice, option_letters

COLOURS = ["red", "green", "blue", "yellow"]
DIRECTIONS = ["left to right", "right to left", "top to bottom", "bottom to top"]
COUNTS = ["2", "3", "4", "5"]
SHAPES = ["circle", "square", "triangle", "cross"]
SHADES = ["red", "dark red", "green", "light green"]

CASES = [
    # terse letters
    ("B", COLOURS, "B"),
    ("(B)", COLOURS, "B"),
    ("B.", COLOURS, "B"),
    ("B)", COLOURS, "B"),
    ("[C]", COLOURS, "C"),
    ("  D\n", COLOURS, "D"),
    ("**C**", COLOURS, "C"),
    ("b", COLOURS, "B"),
    ("(d)", COLOURS, "D"),
    ("a.", COLOURS, "A"),
    # declarations
    ("Answer: B", COLOURS, "B"),
    ("The answer is B", COLOURS, "B"),
    ("The correct answer is (C).", COLOURS, "C"),
    ("The best answer is: D. yellow", COLOURS, "D"),
    ("**Answer:** C", COLOURS, "C"),
    ("Final answer: (A) red", COLOURS, "A"),
    ("The answer is A because the screen turns red at the end.", COLOURS, "A"),
    ("answer: c", COLOURS, "C"),
    ("The answer to this question is B.", COLOURS, "B"),
    ("Option C is correct.", COLOURS, "C"),
    ("I think the answer is A. Wait, looking again, the answer is C.", COLOURS, "C"),
    ("<think>Red first, then blue... so A? No.</think>The answer is D", COLOURS, "D"),
    # leading markers with explanations
    ("B. green", COLOURS, "B"),
    ("C) blue - the last segment is blue.", COLOURS, "C"),
    ("D: yellow", COLOURS, "D"),
    ("(A) The ball moves from left to right.", DIRECTIONS, "A"),
    ("B because the ball ends on the left side.", DIRECTIONS, "B"),
    ("C\nThe circle flashes four times.", COUNTS, "C"),
    ("A is correct: it flashes twice.", COUNTS, "A"),
    # letters that are not at the start
    ("Based on the video, C", COLOURS, "C"),
    ("Based on the video, the correct option would be (B).", COLOURS, "B"),
    ("I'd go with B, the green one.", COLOURS, "B"),
    ("Looking at the final frames, D.", COLOURS, "D"),
    # the option's text instead of its letter
    ("Blue", COLOURS, "C"),
    ("right to left", DIRECTIONS, "B"),
    ("The ball moves from right to left across the screen.", DIRECTIONS, "B"),
    ("A red screen is shown last.", COLOURS, "A"),
    ("The last shape to appear is a triangle.", SHAPES, "C"),
    ("The white circle flashes three times.", COUNTS, "B"),
    ("There are 5 flashes in total.", COUNTS, "D"),
    ("The screen ends dark red.", SHADES, "B"),
    ("It is light green at the end", SHADES, "D"),
    ("A triangle appears right after the square.", SHAPES, None),  # names two options
    # unreadable: the extractor refuses rather than guesses
    ("", COLOURS, None),
    ("   ", COLOURS, None),
    ("I cannot determine the answer from the video.", COLOURS, None),
    ("It is either A or B.", COLOURS, None),
    ("The screen is red and then blue.", COLOURS, None),
    ("Answer: E", COLOURS, None),
    ("E", COLOURS, None),
    ("The answer is a purple screen.", COLOURS, None),
    ("A video of moving shapes.", SHAPES, None),
    ("Because of the motion, nothing can be said.", DIRECTIONS, None),
]


@pytest.mark.parametrize(("text", "options", "expected"), CASES)
def test_realistic_outputs(text, options, expected):
    assert extract_choice(text, options) == expected


def test_the_table_is_large_and_covers_refusals():
    assert len(CASES) >= 40
    assert sum(expected is None for _, _, expected in CASES) >= 8


@pytest.mark.parametrize(
    ("text", "options", "reason"),
    [
        ("", COLOURS, "empty response"),
        ("I cannot tell.", COLOURS, "no option letter or option text found"),
        ("It is either A or B.", COLOURS, "ambiguous: names options A and B"),
        ("The screen is red and then blue.", COLOURS, "ambiguous: names options A and C"),
        ("Answer: E", COLOURS, "answer 'E' is not among options A-D"),
    ],
)
def test_unreadable_answers_say_why(text, options, reason):
    extraction = explain_choice(text, options)
    assert extraction.letter is None
    assert extraction.rule is None
    assert extraction.reason == reason


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Answer: B", "explicit"),
        ("(B)", "bare"),
        ("B. green", "leading"),
        ("green", "text"),
        ("Based on the video, B", "letter"),
        ("It turns green at the end.", "mention"),
    ],
)
def test_each_rule_names_itself(text, rule):
    assert explain_choice(text, COLOURS) == explain_choice(text, COLOURS).__class__("B", rule)


def test_a_declaration_outranks_other_letters():
    assert extract_choice("A and B look similar, but the answer is D.", COLOURS) == "D"


def test_option_letters():
    assert option_letters(4) == "ABCD"
    assert option_letters(26)[-1] == "Z"
    for bad in (0, 27):
        with pytest.raises(ValueError, match="1 to 26 options"):
            option_letters(bad)


def test_extract_choice_is_explain_choice_letter():
    for text, options, _ in CASES:
        assert extract_choice(text, options) == explain_choice(text, options).letter
