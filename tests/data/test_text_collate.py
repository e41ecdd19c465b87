"""Prompt templates, label masking, padding sides, truncation that keeps the answer."""

from __future__ import annotations

import random

import pytest
import torch

from scaling.data.collate import collate, pad_sequences, to_device
from scaling.data.decode import SampleDecoder
from scaling.data.text import TextEncoder, format_prompt, template_for
from scaling.models.tiny import word_tokenizer


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


def sample(question=None, answers=("red",), target="red", sid="x", task="vqa"):
    rec = {"id": sid, "task": task, "prompt": "", "answers": list(answers)}
    if question is not None:
        rec["question"] = question
    return {"id": sid, "record": rec, "target": target, "answers": list(answers), "task": task,
            "media_key": "pixel_values", "media": torch.zeros(3, 4, 4)}


def test_templates():
    assert template_for("vqa") == "{question}</a>" == template_for("videoqa") == template_for("gqa")
    assert template_for("caption") == "{prompt}"
    assert template_for("caption", "a picture of") == "a picture of"
    assert format_prompt("{question}</a>", {"question": "what is it?"}) == "what is it?</a>"
    assert format_prompt("Q: {question} A:", {"prompt": "fallback"}) == "Q: fallback A:"
    assert format_prompt("{nope}{prompt}", {}) == ""


def test_train_labels_masked_outside_answer(tok):
    text = TextEncoder(tok, 32, template_for("vqa"))
    batch = collate([sample("what color is the circle?", target="big red"), sample("is it big?", target="no")], text, True)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    sep = tok.convert_tokens_to_ids("</a>")
    for row in range(2):
        toks = ids[row][mask[row].bool()].tolist()
        assert toks[0] == tok.bos_token_id
        pos = toks.index(sep)
        lab = labels[row][: len(toks)].tolist()
        assert all(x == -100 for x in lab[: pos + 1])  # prompt incl. separator: no loss
        assert lab[pos + 1 :] == toks[pos + 1 :]  # answer tokens + EOS
        assert toks[-1] == tok.eos_token_id
    # right padding: the shorter row ends with pad, mask 0, label -100
    short = 1
    n = int(mask[short].sum())
    assert mask[short, :n].all() and not mask[short, n:].any()
    assert (ids[short, n:] == tok.pad_token_id).all() and (labels[short, n:] == -100).all()
    assert tok.decode([t for t in labels[0].tolist() if t >= 0], skip_special_tokens=True) == "big red"


def test_generation_batch_left_padded_prompt_only(tok):
    text = TextEncoder(tok, 32, template_for("vqa"))
    batch = collate([sample("what color is the big circle?", answers=("red", "blue")), sample("is it?", answers=("yes",))],
                    text, False)
    assert "labels" not in batch
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids[:, -1].tolist() == [tok.convert_tokens_to_ids("</a>")] * 2  # prompts end with the separator
    n = int(mask[1].sum())
    assert not mask[1, : ids.shape[1] - n].any() and (ids[1, : ids.shape[1] - n] == tok.pad_token_id).all()
    assert batch["answers"] == [["red", "blue"], ["yes"]] and batch["task"] == "vqa" and batch["ids"] == ["x", "x"]
    assert batch["pixel_values"].shape == (2, 3, 4, 4)


def test_caption_prompt_is_bos_only(tok):
    text = TextEncoder(tok, 16, template_for("caption"))
    ids, labels = text.train_example({"prompt": ""}, "a red circle")
    assert ids[0] == tok.bos_token_id and labels[0] == -100 and labels[1:] == ids[1:]
    assert text.generation_prompt({"prompt": ""}) == [tok.bos_token_id]


def test_truncation_keeps_answer_and_separator(tok):
    text = TextEncoder(tok, 8, template_for("vqa"))
    long_q = " ".join(["red"] * 30) + "?"
    ids, labels = text.train_example({"question": long_q}, "blue circle")
    assert len(ids) == 8
    sep = tok.convert_tokens_to_ids("</a>")
    assert ids[0] == tok.bos_token_id and ids[ids.index(sep) + 1 :] == tok("blue circle", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [t for t in labels if t != -100][-1] == tok.eos_token_id
    tiny = TextEncoder(tok, 3, template_for("vqa"))
    ids, labels = tiny.train_example({"question": long_q}, "blue circle square triangle")
    assert len(ids) == 3 and sum(t != -100 for t in labels) >= 1  # never the whole answer dropped
    gen = text.generation_prompt({"question": long_q})
    assert len(gen) == 8 and gen[-1] == sep


def test_training_picks_answers_at_random_eval_keeps_all():
    raw = {"__key__": "k", "json": b'{"id": "q1", "task": "vqa", "question": "what?", "answers": ["a", "b", "c", "d"]}'}
    train = SampleDecoder(None, True, "vqa")
    picks = {train(raw, random.Random(s))["target"] for s in range(40)}
    assert picks == {"a", "b", "c", "d"}
    assert train(raw, random.Random(3))["target"] == train(raw, random.Random(3))["target"]
    ev = SampleDecoder(None, False, "vqa")(raw, random.Random(0))
    assert ev["answers"] == ["a", "b", "c", "d"]


def test_pad_and_to_device():
    assert pad_sequences([[1, 2], [3]], 0, "left").tolist() == [[1, 2], [0, 3]]
    assert pad_sequences([[1, 2], [3]], 0, "right").tolist() == [[1, 2], [3, 0]]
    moved = to_device({"a": torch.ones(1), "ids": ["x"], "task": "vqa"}, "cpu")
    assert moved["ids"] == ["x"] and moved["task"] == "vqa"


def test_bpe_style_answer_prefix(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "Ġyes": 1, "yes": 2, "what": 3, "?": 4, "Ġ": 5}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    text = TextEncoder(hf, 16, "{question}")
    assert text.answer_prefix == " " and text.answer_ids("yes") == [1]
    assert text.prompt_ids({"question": "what"})[0] == 0  # BOS prepended when the tokenizer adds none
