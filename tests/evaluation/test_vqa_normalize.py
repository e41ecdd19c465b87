"""The official VQA normalisation rules (vqaEval.py) one by one, and the leave-one-out accuracy."""

from __future__ import annotations

import pytest

from scaling.evaluation.vqa_normalize import (
    CONTRACTIONS,
    exact_match,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        # punctuation not next to a space is replaced by a space ...
        ("black/white", "black white"),
        ("red,blue", "red blue"),
        ("yes!", "yes"),
        ("(left)", "left"),
        # ... and deleted when it touches a space in the original text
        ("hello , world", "hello world"),
        ("well- done", "well done"),
        # comma between digits anywhere: every punctuation mark is deleted, not spaced
        ("1,000", "1000"),
        ("10,000 people", "10000 people"),
        ("1,000/2", "10002"),
        # period strip: periods not followed by a digit go; decimal points stay
        ("yes.", "yes"),
        ("u.s.a.", "usa"),
        ("2.5", "2.5"),
        ("3.14 meters.", "3.14 meters"),
        # number words -> digits (manual map), including none/zero
        ("two", "2"),
        ("Ten", "10"),
        ("none", "0"),
        ("zero", "0"),
        ("eleven", "eleven"),  # not in the official map
        # articles a/an/the are dropped
        ("a dog", "dog"),
        ("An apple", "apple"),
        ("the red one", "red 1"),
        # contractions written without apostrophe
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("youre", "you're"),
        ("Whats", "what's"),
        # whitespace: newlines/tabs and outer spaces
        ("  yes\n", "yes"),
        ("a\tcat", "cat"),
    ],
)
def test_normalize_answer_rules(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_and_digit_steps_are_separate():
    assert process_punctuation("The Dog.") == "The Dog"  # no lower-casing in the punctuation step
    assert process_digit_article("The Dog") == "dog"


def test_contraction_map_is_complete():
    # the official map has 120 entries (keys like "Im" can never match lower-cased words; kept anyway)
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["couldn'tve"] == "couldn't've" and CONTRACTIONS["yall'd've"] == "y'all'd've"
    assert CONTRACTIONS["somebody'd"] == "somebodyd"  # official typo kept


# Leave-one-out: each of the 10 subsets of 9 humans gives min(#matches/3, 1); the score is their mean.
@pytest.mark.parametrize(
    "n_match, expected",
    [
        # 0 humans agree: every subset has 0 matches -> 0
        (0, 0.0),
        # 1 human: the 1 subset without them has 0 matches, 9 subsets have 1 -> (9 * 1/3) / 10 = 0.3
        (1, 0.3),
        # 2 humans: 2 subsets have 1 match (1/3), 8 have 2 (2/3) -> (2/3 + 16/3) / 10 = 0.6
        (2, 0.6),
        # 3 humans: 3 subsets drop one of them (2/3), 7 keep all three (1) -> (2 + 7) / 10 = 0.9
        (3, 0.9),
        # 4 humans: every subset keeps >= 3 -> 1
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_leave_one_out_accuracy(n_match, expected):
    answers = ["cat"] * n_match + ["dog", "bird", "fish", "cow", "pig", "rat", "owl", "bee", "ant", "elk"][: 10 - n_match]
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_fewer_than_ten_answers_use_the_same_leave_one_out_mean():
    # 3 identical answers: each subset of 2 has 2 matches -> 2/3
    assert vqa_accuracy("yes", ["yes"] * 3) == pytest.approx(2 / 3)
    # 5 answers, 4 match: the 4 subsets dropping a match have 3 (1), the other has 4 (1) -> 1
    assert vqa_accuracy("yes", ["yes"] * 4 + ["no"]) == pytest.approx(1.0)


def test_prediction_is_normalised_and_references_only_get_punctuation():
    # prediction "Two dogs." -> "2 dogs"; references are already normalised by the dataset authors
    assert vqa_accuracy("Two dogs.", ["2 dogs"] * 10) == 1.0
    # disagreeing humans: their answers get the punctuation step ("yes." -> "yes")
    assert vqa_accuracy("yes", ["yes."] * 5 + ["no"] * 5) == 1.0
    # ... but not the digit/article step (official): "two" in the references never matches
    assert vqa_accuracy("two", ["two"] * 5 + ["three"] * 5) == 0.0
    # unanimous humans are left untouched (official quirk): "yes." never equals a normalised prediction
    assert vqa_accuracy("yes", ["yes."] * 10) == 0.0


def test_exact_match_normalises_both_sides():
    assert exact_match("The Table.", ["table"]) == 1.0
    assert exact_match("two", ["2"]) == 1.0
    assert exact_match("2", ["Two"]) == 1.0
    assert exact_match("chair", ["table"]) == 0.0
    with pytest.raises(ValueError):
        exact_match("x", [])
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])
