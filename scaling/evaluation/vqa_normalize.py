"""The official VQA answer normalisation and accuracy, written after the VQA v2 API's ``vqaEval.py``.

Reference: ``GT-Vision-Lab/VQA``, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` (the script the
VQA evaluation server runs). Every rule below is that script's, quirks included, so that numbers match
the papers (and the server) exactly:

* :func:`process_punctuation` — for each punctuation mark in :data:`PUNCT`: if the mark is next to a
  space in the *original* text (``"p "`` or ``" p"``), **or** the text contains a comma between two
  digits anywhere (``"1,000"``), the mark is deleted; otherwise it is replaced by a space
  (``"black/white"`` → ``"black white"``, ``"1,000"`` → ``"1000"``). Then periods not followed by a
  digit are deleted (:data:`PERIOD_STRIP`; ``"yes."`` → ``"yes"`` but ``"2.5"`` stays). The official
  regex is ``(?!<=\\d)(\\.)(?!\\d)`` — its "lookbehind" is a typo that never fires, and it is called
  as ``sub("", text, re.UNICODE)``, i.e. with ``count=32``: both kept.
* :func:`process_digit_article` — lower-case, split on whitespace, map number words through
  :data:`MANUAL_MAP` (``"two"`` → ``"2"``, ``"none"`` → ``"0"``), drop the articles ``a``, ``an``,
  ``the``, then map contractions written without the apostrophe (:data:`CONTRACTIONS`,
  ``"dont"`` → ``"don't"``). The keys ``"Im"``, ``"Ive"``, ``"Id've"``, ``"I'dve"`` can never match
  lower-cased words; the official map has them anyway and so does this one.
* :func:`vqa_accuracy` — the prediction always gets both steps; the human answers get only
  :func:`process_punctuation`, and only when they are not all identical (the VQA annotations are
  already normalised by the dataset authors). The score is the mean, over the leave-one-out subsets
  of the human answers (10 in VQA v2; whatever is given otherwise), of ``min(#matches / 3, 1)``.

:func:`normalize_answer` (both steps) is what GQA and video-QA exact match use, on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip

MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Official order matters only for the "delete vs space" decision, which looks at the original text.
PUNCT: tuple[str, ...] = (
    ";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)

PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# vqaEval.py calls ``periodStrip.sub("", text, re.UNICODE)``: the third positional argument of
# ``Pattern.sub`` is ``count``, so at most int(re.UNICODE) == 32 periods are removed.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """``vqaEval.processPunctuation``: punctuation → '' or ' ', then strip periods not before a digit."""
    out = text
    comma_between_digits = COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or comma_between_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """``vqaEval.processDigitArticle``: lower-case, number words → digits, drop articles, contractions."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """The full official normalisation of a predicted answer (whitespace, punctuation, digits/articles)."""
    return process_digit_article(process_punctuation(_clean_whitespace(text)))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction against the human answers (10 in VQA v2).

    acc = mean over i of min(1, #{j != i : answers[j] == prediction} / 3). With 10 answers this is
    the average over the 10 leave-one-out subsets of 9; fewer answers use the same leave-one-out mean.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    pred = normalize_answer(prediction)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    scores = []
    for i in range(len(gts)):
        matches = sum(1 for j, a in enumerate(gts) if j != i and a == pred)
        scores.append(min(1.0, matches / 3.0))
    return sum(scores) / len(scores)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference (GQA, MSVD-QA, MSRVTT-QA)."""
    if not references:
        raise ValueError("exact_match needs at least one reference answer")
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(r) for r in references) else 0.0
