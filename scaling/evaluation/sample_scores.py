"""Per-sample scores, for reading predictions one by one (the HTML report's gallery).

* ``caption``: each sample's CIDEr-D, computed exactly as the corpus CIDEr (PTB tokenizer, pycocoevalcap's
  ``Cider`` with the IDF of the scored set): the corpus CIDEr is the mean of these, so each is the sample's
  contribution. Needs Java (the PTB tokenizer); without it the scores are None and the note says why.
* ``vqa``: the official VQA accuracy of the sample (leave-one-out over its answers);
* ``gqa``, ``videoqa``: exact match after the official normalisation (1 or 0).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

from scaling.evaluation.metrics import MetricsError, check_alignment, check_task, require_java
from scaling.evaluation.vqa_normalize import exact_match, vqa_accuracy

#: what the per-sample score is, per task (the gallery's column title)
SCORE_NAMES = {"caption": "CIDEr", "vqa": "VQA accuracy", "gqa": "exact match", "videoqa": "exact match"}


def caption_cider(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """``{id: CIDEr-D of the sample}``; their mean is pycocoevalcap's corpus CIDEr of the same set."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from scaling.evaluation.metrics import _clean_caption

    ids = check_alignment(predictions, references)
    require_java("per-sample CIDEr (the PTB tokenizer)")
    gts = {i: [{"caption": _clean_caption(r)} for r in references[i]] for i in ids}
    res = {i: [{"caption": _clean_caption(predictions[i])}] for i in ids}
    tokenizer = PTBTokenizer()
    with contextlib.redirect_stdout(io.StringIO()):
        gts_tok, res_tok = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    _, scores = Cider().compute_score(gts_tok, res_tok)
    # Cider iterates gts' keys in order: the scores line up with them
    return {i: float(s) for i, s in zip(gts_tok.keys(), scores)}


def sample_scores(task: str, predictions: Mapping[str, str],
                  references: Mapping[str, Sequence[str]]) -> tuple[dict[str, float | None], str | None]:
    """(``{id: score}``, a note when scores could not be computed) for the samples that have references."""
    check_task(task)
    scored = {i: p for i, p in predictions.items() if references.get(i)}
    refs = {i: references[i] for i in scored}
    if not scored:
        return dict.fromkeys(predictions), "no references to score against"
    if task == "caption":
        try:
            return caption_cider(scored, refs), None
        except (MetricsError, OSError, RuntimeError) as err:
            return dict.fromkeys(predictions), f"per-sample CIDEr unavailable: {err}"
    score = vqa_accuracy if task == "vqa" else exact_match
    return {i: float(score(p, refs[i])) for i, p in scored.items()}, None
