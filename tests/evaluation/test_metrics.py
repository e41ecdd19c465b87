"""Caption metrics through pycocoevalcap (plumbing checked against direct calls), QA metrics, input errors."""

from __future__ import annotations

import contextlib
import io
import os
import sys

import pytest

from scaling.evaluation import metrics as M
from scaling.evaluation.metrics import MetricsError, compute_metrics

# Mixed case, punctuation and int ids: our plumbing must tokenise (PTB) and align them like COCOEvalCap.
REFS = {
    3: ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave!", "Man surfing in the ocean"],
    1: ["Two dogs play with a frisbee in the park.", "two dogs playing on grass", "Dogs run after a red frisbee."],
    7: ["A plate of food with broccoli and rice.", "A dinner plate with vegetables, rice", "Rice and broccoli on a plate"],
    2: ["A red bus driving down a city street.", "A double-decker bus on the road", "The red bus is on the street."],
    5: ["A cat sleeping on a laptop keyboard.", "cat lying on a computer", "A kitten naps on a keyboard."],
}
PREDS = {
    1: "Two dogs playing with a frisbee.",
    2: "A red bus on a street",
    3: "a man surfing a wave",
    5: "A cat sleeping on a keyboard.",
    7: "a plate of rice and broccoli",
}


def _java_children() -> list[int]:
    """PIDs of live `java` processes whose parent is this test process (Linux /proc)."""
    me, out = os.getpid(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == "java" and int(fields[1]) == me and fields[0] != "Z":
            out.append(int(pid))
    return out


@pytest.fixture(scope="module")
def ours():
    """compute_metrics once with METEOR (one ~10 s Java start), and the java children left afterwards."""
    result = compute_metrics("caption", PREDS, REFS)
    return result, _java_children() if sys.platform.startswith("linux") else []


@pytest.fixture(scope="module")
def direct():
    """BLEU and CIDEr from pycocoevalcap called directly, as COCOEvalCap does."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": c} for c in refs] for i, refs in REFS.items()}
    res = {i: [{"caption": PREDS[i]}] for i in REFS}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3], "CIDEr": float(cider)}


def test_caption_bleu_cider_match_pycocoevalcap(ours, direct):
    result, _ = ours
    for name, value in direct.items():
        assert result[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # pycocoevalcap scale, not ×100: these near-paraphrases score CIDEr ~1-3, BLEU in (0, 1]
    assert 0.3 < result["CIDEr"] < 10
    assert 0 < result["BLEU-4"] <= result["BLEU-1"] <= 1


def test_caption_meteor_rouge_in_range_and_keys(ours):
    result, _ = ours
    assert list(result) == list(M.CAPTION_METRICS)
    assert 0.1 < result["METEOR"] < 1
    assert 0.3 < result["ROUGE-L"] <= 1


def test_spice_none_with_message_when_jars_missing(ours):
    result, _ = ours
    available, message = M.spice_status()
    if available:  # CoreNLP jars installed: SPICE is a number and SPIDEr its mean with CIDEr
        assert isinstance(result["SPICE"], float)
        assert result["SPIDEr"] == pytest.approx((result["CIDEr"] + result["SPICE"]) / 2)
    else:
        assert result["SPICE"] is None and result["SPIDEr"] is None  # never 0
        notes = " ".join(M.metric_notes(result))
        assert "stanford-corenlp-3.6.0" in notes and "get_stanford_models" in notes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find child processes")
def test_meteor_java_process_is_closed(ours):
    _, children = ours
    assert children == [], f"java processes left running: {children}"


def test_line_breaks_in_captions_do_not_shift_alignment():
    # pycocoevalcap joins captions with '\n' for Java; a '\r' would silently shift every later caption.
    refs = {"a": ["a dog\r on grass", "a dog"], "b": ["a red bus"]}
    clean = {"a": ["a dog  on grass", "a dog"], "b": ["a red bus"]}
    preds = {"a": "a dog on grass", "b": "a red bus"}
    assert compute_metrics("caption", preds, refs, meteor=False) == compute_metrics("caption", preds, clean, meteor=False)


def test_missing_java_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetricsError, match="java"):
        compute_metrics("caption", {"x": "a dog"}, {"x": ["a dog"]})


def test_vqa_accuracy_through_compute_metrics():
    refs = {
        "q1": ["2"] * 3 + ["3"] * 7,  # "two" matches 3 of 10 humans -> 0.9
        "q2": ["yes"] * 10,  # unanimous -> 1.0
        "q3": ["red"] * 10,  # wrong -> 0.0
    }
    preds = {"q1": "Two.", "q2": "Yes", "q3": "blue"}
    assert compute_metrics("vqa", preds, refs) == {"accuracy": pytest.approx((0.9 + 1.0 + 0.0) / 3)}


def test_vqa_with_few_answers_warns():
    with pytest.warns(RuntimeWarning, match="fewer than 4 human answers"):
        assert compute_metrics("vqa", {1: "yes"}, {1: ["yes"]}) == {"accuracy": 0.0}  # no other human to agree


def test_gqa_and_videoqa_exact_match_after_normalisation():
    refs = {1: ["table"], 2: ["2"], 3: ["man"], 4: ["left"]}
    preds = {1: "The table.", 2: "two", 3: "a woman", 4: "Left!"}
    for task in ("gqa", "videoqa"):
        assert compute_metrics(task, preds, refs) == {"accuracy": pytest.approx(3 / 4)}


def test_ids_not_lining_up_say_how_many_and_which():
    refs = {i: ["x"] for i in range(10)}
    preds = {i: "x" for i in range(3, 12)}
    with pytest.raises(MetricsError) as err:
        compute_metrics("vqa", preds, refs)
    msg = str(err.value)
    assert "3 reference id(s) have no prediction" in msg and "0, 1, 2" in msg
    assert "2 prediction id(s) have no reference" in msg and "10, 11" in msg


def test_ids_differing_only_in_type_get_a_hint():
    with pytest.raises(MetricsError, match="differ in type"):
        compute_metrics("gqa", {1: "x"}, {"1": ["x"]})


def test_empty_inputs_and_empty_reference_list():
    with pytest.raises(MetricsError, match="no samples"):
        compute_metrics("vqa", {}, {})
    with pytest.raises(MetricsError, match="no predictions"):
        compute_metrics("vqa", {}, {1: ["x"]})
    with pytest.raises(MetricsError, match="empty reference list"):
        compute_metrics("videoqa", {1: "x", 2: "y"}, {1: ["x"], 2: []})
    with pytest.raises(ValueError, match="must be strings"):  # MetricsError is a ValueError
        compute_metrics("gqa", {1: None}, {1: ["x"]})


def test_unknown_task_lists_valid_ones():
    with pytest.raises(MetricsError) as err:
        compute_metrics("captioning", {1: "x"}, {1: ["x"]})
    msg = str(err.value)
    assert "captioning" in msg and all(t in msg for t in ("caption", "vqa", "gqa", "videoqa"))


def test_format_table_shows_x100_and_na():
    text = M.format_table("caption", {"CIDEr": 1.2345, "SPICE": None}, n_samples=3)
    assert "123.45" in text and "1.2345" in text and "n/a" in text
    assert "note: SPICE" in text  # why SPICE is missing is said under the table
