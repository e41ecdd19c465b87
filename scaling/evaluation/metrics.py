"""Evaluation metrics of the papers: captioning (COCO caption toolkit), VQA accuracy, GQA / video-QA.

One entry point, :func:`compute_metrics`, takes ``{id: prediction}`` and ``{id: [references]}``:

* ``caption`` — BLEU-1..4, METEOR, ROUGE-L, CIDEr (CIDEr-D, as the COCO server), SPICE and SPIDEr,
  through ``pycocoevalcap`` exactly as its ``COCOEvalCap`` does: the Stanford PTB tokenizer first
  (references and predictions tokenised separately), then ``Bleu(4)``, ``Meteor()``, ``Rouge()``,
  ``Cider()``, ``Spice()``. **Scale: values are returned as pycocoevalcap returns them** — fractions
  for BLEU/METEOR/ROUGE-L/SPICE, and CIDEr around 1.2 for a good COCO model. Papers print them ×100
  (``CIDEr 127.4``); :func:`format_table` does the same for display only.
  SPICE needs Stanford CoreNLP 3.6.0 jars in pycocoevalcap's ``spice/lib``; when they are missing
  (pycocoevalcap would then try to download them) SPICE and SPIDEr are ``None`` — never 0 — and
  :func:`metric_notes` says how to install them. SPIDEr = (CIDEr + SPICE) / 2.
* ``vqa`` — the official VQA accuracy (see :mod:`scaling.evaluation.vqa_normalize`), key ``accuracy``,
  a fraction (×100 for display, as the VQA server prints it).
* ``gqa``, ``videoqa`` — exact match after the full official VQA normalisation of *both* the
  prediction and the reference(s) (whitespace, punctuation, number words → digits, articles,
  contractions); a prediction counts as right when it equals any given reference (GQA, MSVD-QA and
  MSRVTT-QA have one). Key ``accuracy``, a fraction.

METEOR, the PTB tokenizer and SPICE run Java subprocesses: ``java`` must be on PATH (a clear error
says so), and the METEOR process is always closed before returning.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import threading
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

from scaling.config.base import ConfigError, suggest
from scaling.config.tasks import TASK_NAMES
from scaling.config.tasks import TASKS as TASKS_REGISTRY
from scaling.evaluation.vqa_normalize import exact_match, vqa_accuracy

TASKS: tuple[str, ...] = TASK_NAMES
CAPTION_METRICS: tuple[str, ...] = (
    "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE", "SPIDEr",
)  # fmt: skip
QA_METRICS: tuple[str, ...] = ("accuracy",)
#: The metric each task is ranked by in reports (the papers' headline numbers).
PRIMARY_METRIC: dict[str, str] = {name: task.metric for name, task in TASKS_REGISTRY.items()}
#: Multiply stored values by this for display (papers print CIDEr 127.4 and VQA accuracy 68.4).
DISPLAY_SCALE = 100.0

# Characters Java's PTBTokenizer treats as line breaks. pycocoevalcap joins captions with '\n' and
# zips the output lines back to ids, so one stray '\r' silently shifts every later caption.
_LINE_BREAKS = ("\r\n", "\r", "\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029")

SPICE_INSTALL_HINT = (
    "SPICE unavailable: pycocoevalcap's SPICE needs the Stanford CoreNLP 3.6.0 jars in {lib} "
    "(stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar). Install them once with network: "
    "`python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'` "
    "(or copy both jars there from stanford-corenlp-full-2015-12-09.zip). Reported as None, not 0."
)


class MetricsError(ConfigError):
    """Bad evaluation input (ids that do not line up, empty references, unknown task...).

    A :class:`ConfigError`, hence a ``ValueError``: the CLI prints it as ``error: ...``.
    """


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _examples(ids: Sequence[Hashable], k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:k])
    return shown + (", ..." if len(ids) > k else "")


def _sorted_ids(ids) -> list:
    try:
        return sorted(ids)
    except TypeError:
        return sorted(ids, key=repr)


def check_alignment(predictions: Mapping[Hashable, Any], references: Mapping[Hashable, Any]) -> list:
    """The shared ids in a stable order; raises :class:`MetricsError` when the ids do not line up."""
    if not predictions and not references:
        raise MetricsError("no samples to score: predictions and references are both empty")
    if not predictions:
        raise MetricsError(f"no predictions to score ({len(references)} references given)")
    if not references:
        raise MetricsError(f"no references to score against ({len(predictions)} predictions given)")
    no_pred = _sorted_ids(set(references) - set(predictions))
    no_ref = _sorted_ids(set(predictions) - set(references))
    if no_pred or no_ref:
        parts = []
        if no_pred:
            parts.append(f"{len(no_pred)} reference id(s) have no prediction (e.g. {_examples(no_pred)})")
        if no_ref:
            parts.append(f"{len(no_ref)} prediction id(s) have no reference (e.g. {_examples(no_ref)})")
        msg = "predictions and references do not line up: " + "; ".join(parts)
        if {str(i) for i in predictions} == {str(i) for i in references}:
            msg += " — the ids only differ in type (e.g. 1 vs '1'): use the same type on both sides"
        else:
            msg += f" ({len(predictions)} predictions, {len(references)} references; score the same split)"
        raise MetricsError(msg)
    bad_refs = [
        i for i, refs in references.items()
        if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) for r in refs)
    ]  # fmt: skip
    if bad_refs:
        raise MetricsError(
            f"references must be lists of strings; {len(bad_refs)} sample(s) are not (e.g. {_examples(bad_refs)}: "
            f"{references[bad_refs[0]]!r})"
        )
    empty = [i for i, refs in references.items() if len(refs) == 0]
    if empty:
        raise MetricsError(f"{len(empty)} sample(s) have an empty reference list (e.g. {_examples(empty)})")
    bad_preds = [i for i, p in predictions.items() if not isinstance(p, str)]
    if bad_preds:
        raise MetricsError(
            f"predictions must be strings; {len(bad_preds)} are not (e.g. {_examples(bad_preds)}: "
            f"{predictions[bad_preds[0]]!r})"
        )
    return _sorted_ids(references)


def check_task(task: str) -> str:
    if task not in TASKS:
        raise MetricsError(f"unknown task {task!r}{suggest(str(task), TASKS)}; valid tasks: {', '.join(TASKS)}")
    return task


# --------------------------------------------------------------------------------------------
# Java helpers
# --------------------------------------------------------------------------------------------


def require_java(what: str = "the caption metrics") -> str:
    """Path of ``java``; a clear error when there is none."""
    java = shutil.which("java")
    if java is None:
        raise MetricsError(
            f"`java` was not found on PATH; {what} (PTB tokenizer, METEOR, SPICE from pycocoevalcap) run Java. "
            "Install a Java runtime (e.g. `apt-get install -y default-jre-headless`, or `conda install openjdk`) "
            "and make sure `java -version` works."
        )
    return java


def _pycocoevalcap_dir() -> str:
    import pycocoevalcap

    return list(pycocoevalcap.__path__)[0]


def spice_status() -> tuple[bool, str]:
    """(available, message). SPICE is available when its jar and the CoreNLP 3.6.0 jars are present."""
    spice_dir = os.path.join(_pycocoevalcap_dir(), "spice")
    lib = os.path.join(spice_dir, "lib")
    needed = [
        os.path.join(spice_dir, "spice-1.0.jar"),
        os.path.join(lib, "stanford-corenlp-3.6.0.jar"),
        os.path.join(lib, "stanford-corenlp-3.6.0-models.jar"),
    ]
    missing = [p for p in needed if not os.path.isfile(p)]
    if missing:
        return False, SPICE_INSTALL_HINT.format(lib=lib) + f" Missing: {', '.join(os.path.basename(m) for m in missing)}."
    return True, "SPICE available"


@contextlib.contextmanager
def _meteor() -> Iterator[Any]:
    """pycocoevalcap's Meteor, whose Java process is always closed on exit (even after an error).

    Meteor.__del__ re-acquires a lock that compute_score leaves held when it raises; a fresh lock
    after the process is reaped keeps that from deadlocking at garbage collection.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    try:
        yield meteor
    finally:
        proc = meteor.meteor_p
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()
        with contextlib.suppress(Exception):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=30)
        meteor.lock = threading.Lock()


def _clean_caption(text: str) -> str:
    for br in _LINE_BREAKS:
        text = text.replace(br, " ")
    return text


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def caption_metrics(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    *,
    meteor: bool = True,
    spice: bool | None = None,
) -> dict[str, float | None]:
    """COCO caption metrics (pycocoevalcap scale). ``spice=None``: compute SPICE when installed.

    ``meteor=False`` skips METEOR (reported as None) for quick checks; papers' numbers need it on.
    """
    ids = check_alignment(predictions, references)
    require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": _clean_caption(r)} for r in references[i]] for i in ids}
    res = {i: [{"caption": _clean_caption(predictions[i])}] for i in ids}
    tokenizer = PTBTokenizer()
    try:
        gts_tok = tokenizer.tokenize(gts)
        res_tok = tokenizer.tokenize(res)
    except OSError as err:
        raise MetricsError(f"the PTB tokenizer (Java) could not run: {err}") from err
    bad = [i for i in ids if len(gts_tok.get(i, ())) != len(gts[i]) or len(res_tok.get(i, ())) != 1]
    if bad:
        raise RuntimeError(f"PTB tokenizer output does not line up with its input (e.g. ids {_examples(bad)})")

    out: dict[str, float | None] = dict.fromkeys(CAPTION_METRICS)
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its statistics
        bleu, _ = Bleu(4).compute_score(gts_tok, res_tok)
    for n, value in enumerate(bleu, start=1):
        out[f"BLEU-{n}"] = float(value)
    if meteor:
        with _meteor() as scorer:
            try:
                value, _ = scorer.compute_score(gts_tok, res_tok)
            except (ValueError, OSError, BrokenPipeError) as err:
                stderr = b""
                with contextlib.suppress(Exception):
                    scorer.meteor_p.kill()
                    stderr = scorer.meteor_p.stderr.read()[-2000:]
                raise RuntimeError(
                    f"METEOR (java -jar meteor-1.5.jar, needs ~2 GB of memory) failed: {err}; "
                    f"its stderr: {stderr.decode(errors='replace')}"
                ) from err
        out["METEOR"] = float(value)
    value, _ = Rouge().compute_score(gts_tok, res_tok)
    out["ROUGE-L"] = float(value)
    value, _ = Cider().compute_score(gts_tok, res_tok)
    out["CIDEr"] = float(value)

    available, message = spice_status()
    if spice is None:
        spice = available
    elif spice and not available:
        raise MetricsError(message)
    if spice:
        from pycocoevalcap.spice.spice import Spice

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                value, _ = Spice().compute_score(gts_tok, res_tok)
            out["SPICE"] = float(value)
        except (subprocess.CalledProcessError, OSError, ValueError) as err:
            warnings.warn(f"SPICE failed ({err}); reported as None", RuntimeWarning, stacklevel=2)
    if out["SPICE"] is not None:
        out["SPIDEr"] = (out["CIDEr"] + out["SPICE"]) / 2.0
    return out


def qa_metrics(
    task: str, predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> dict[str, float | None]:
    """``{'accuracy': fraction}``: official VQA accuracy (vqa) or normalised exact match (gqa, videoqa)."""
    check_task(task)
    ids = check_alignment(predictions, references)
    if task == "vqa":
        few = [i for i in ids if len(references[i]) < 4]
        if few:
            warnings.warn(
                f"{len(few)} VQA sample(s) have fewer than 4 human answers (e.g. {_examples(few)}): the leave-one-out "
                "VQA accuracy cannot reach 1 for them (1 answer always scores 0); for one-answer data use task 'gqa' "
                "or 'videoqa' (exact match)",
                RuntimeWarning,
                stacklevel=3,
            )
    score = vqa_accuracy if task == "vqa" else exact_match
    total = sum(score(predictions[i], references[i]) for i in ids)
    return {"accuracy": total / len(ids)}


def compute_metrics(
    task: str,
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    **caption_options: Any,
) -> dict[str, float | None]:
    """Score ``{id: prediction}`` against ``{id: [references]}`` for ``task`` in caption|vqa|gqa|videoqa.

    Returns metric name → value (pycocoevalcap scale for captions, fractions for accuracies), or None
    for a metric that cannot be computed here (SPICE without its jars; see :func:`metric_notes`).
    ``caption_options`` go to :func:`caption_metrics` (``meteor=``, ``spice=``).
    """
    check_task(task)
    if task == "caption":
        return caption_metrics(predictions, references, **caption_options)
    if caption_options:
        raise MetricsError(f"options {sorted(caption_options)} only apply to task 'caption', not {task!r}")
    return qa_metrics(task, predictions, references)


def metric_notes(metrics: Mapping[str, float | None]) -> list[str]:
    """Why some metrics are None (to print under a table)."""
    notes = []
    if "SPICE" in metrics and metrics["SPICE"] is None:
        available, message = spice_status()
        notes.append(message if not available else "SPICE was not computed (it failed or was turned off).")
        notes.append("SPIDEr = (CIDEr + SPICE) / 2 needs SPICE, so it is None too.")
    if "METEOR" in metrics and metrics["METEOR"] is None:
        notes.append("METEOR was skipped.")
    return notes


def format_table(task: str, metrics: Mapping[str, float | None], n_samples: int | None = None) -> str:
    """A small plain-text table: raw value (as stored) and the ×100 value the papers print."""
    rows = [("metric", "value", "x100")]
    for name, value in metrics.items():
        if value is None:
            rows.append((name, "n/a", "n/a"))
        else:
            rows.append((name, f"{value:.4f}", f"{value * DISPLAY_SCALE:.2f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines = [f"task: {task}" + (f"  samples: {n_samples}" if n_samples is not None else "")]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for note in metric_notes(metrics):
        lines.append(f"note: {note}")
    return "\n".join(lines)
