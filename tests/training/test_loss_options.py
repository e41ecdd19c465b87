"""train.loss_on / train.loss_reduction / train.loss_weight against a hand-computed cross-entropy."""

import pytest
import torch
import torch.nn.functional as F

from scaling.config import ConfigError, load_config
from scaling.data.collate import collate
from scaling.data.text import TextEncoder
from scaling.models.builder import build_model
from scaling.models.tiny import word_tokenizer


def _batch(loss_on):
    tok = word_tokenizer()
    text = TextEncoder(tok, 32, "{question}</a>", loss_on=loss_on)
    samples = []
    for i, (q, a) in enumerate([("what color is the circle?", "big red"), ("is it?", "no"), ("is the square red?", "yes")]):
        rec = {"id": str(i), "task": "vqa", "question": q, "answers": [a]}
        samples.append({"id": str(i), "record": rec, "target": a, "answers": [a], "task": "vqa",
                        "media_key": "pixel_values", "media": torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i))})
    return collate(samples, text, True)


def _reference(logits, labels, reduction, weight, smoothing=0.0):
    """Per token: CE of the logits at t against labels[t+1]; reduced as asked (eP-ALM: sum per sample, mean over batch)."""
    lp = logits[:, :-1].float()
    tgt = labels[:, 1:]
    per_tok = F.cross_entropy(lp.reshape(-1, lp.shape[-1]), tgt.reshape(-1), reduction="none", ignore_index=-100,
                              label_smoothing=smoothing).view(tgt.shape)
    if reduction == "sample_sum":
        loss = per_tok.sum(1).mean()
    else:
        loss = per_tok.sum() / (tgt != -100).sum()
    return loss * weight


@pytest.mark.parametrize("loss_on,reduction,weight", [("answer", "token_mean", 1.0), ("all", "sample_sum", 0.1),
                                                      ("answer", "sample_sum", 1.0), ("all", "token_mean", 0.5)])
def test_loss_options_match_a_hand_computed_reference(loss_on, reduction, weight):
    cfg = load_config(None, ["model.method=depalm", "model.llm=tiny-llama", "model.encoder=tiny-vit", "model.frozen_dtype=fp32",
                             "model.map.d_embed=32", "model.label_smoothing=0", "model.kernels=torch",
                             f"train.loss_on={loss_on}", f"train.loss_reduction={reduction}", f"train.loss_weight={weight}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    model.configure_loss(cfg.train.loss_reduction, cfg.train.loss_weight)
    batch = _batch(cfg.train.loss_on)
    labels = batch["labels"]
    if loss_on == "all":
        assert ((labels != -100) == batch["attention_mask"].bool()).all()
    else:
        assert (labels != -100).sum() < batch["attention_mask"].sum()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                pixel_values=batch["pixel_values"], return_logits=True)
    expected = _reference(out["logits"], labels, reduction, weight)
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-6)
    out["loss"].backward()  # the scaled loss stays differentiable through the trainable blocks
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in model.trainable_named_parameters())


def test_loss_option_values_are_validated():
    with pytest.raises(ConfigError, match="loss_on"):
        load_config(None, ["train.loss_on=question"])
    with pytest.raises(ConfigError, match="loss_reduction"):
        load_config(None, ["train.loss_reduction=mean"])
    with pytest.raises(ConfigError, match="loss_weight"):
        load_config(None, ["train.loss_weight=0"])
