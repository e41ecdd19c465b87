"""Exact parity with the raw LLM where the method must not change anything."""

import pytest
import torch

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.tiny import TINY_LLM_ARCHS as LLM_ARCHS
from scaling.models.tiny import tiny_media as media_for


def _ids(batch=2, length=9, vocab=90):
    return torch.randint(5, vocab, (batch, length))


@pytest.mark.parametrize("arch", LLM_ARCHS)
def test_no_perception_no_prompt_equals_raw_llm(backbones, arch):
    model = build_model(model_config(method="blind", llm=backbones[arch], frozen_dtype="fp32", finetune={"n_prompt": 0}))
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0  # right padding in the second sample
    ours = model(input_ids=ids, attention_mask=mask, return_logits=True)["logits"]
    raw = model.llm(input_ids=ids, attention_mask=mask).logits
    valid = mask.bool()
    assert torch.equal(ours[valid], raw[valid]), f"{arch}: wrapped logits differ from the raw LLM"


@pytest.mark.parametrize("arch", ["llama", "opt"])
def test_untrained_cross_attention_equals_raw_llm(backbones, arch):
    cfg = model_config(method="depalm-c-attn", llm=backbones[arch], encoder=backbones["vit"], frozen_dtype="fp32",
                       extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1}, map={"d_embed": 32},
                       finetune={"n_prompt": 0})  # the preset's 16 prompt tokens would change the output by themselves
    model = build_model(cfg).eval()
    assert model.injection.block.gate.item() == 0.0
    ids = _ids()
    ours = model(input_ids=ids, return_logits=True, **media_for("vit"))["logits"]
    raw = model.llm(input_ids=ids).logits
    assert torch.equal(ours, raw)
    # and the gate really is what keeps it equal
    with torch.no_grad():
        model.injection.block.gate.fill_(0.5)
    moved = model(input_ids=ids, return_logits=True, **media_for("vit"))["logits"]
    assert not torch.allclose(moved, raw)


def test_zero_initialised_adapters_and_biases_keep_the_llm_output(backbones):
    cfg = model_config(method="blind", llm=backbones["llama"], frozen_dtype="fp32",
                       finetune={"n_prompt": 0, "adapters": True, "bias_tuning": "llm"})
    model = build_model(cfg)
    ids = _ids()
    ours = model(input_ids=ids, return_logits=True)["logits"]
    with torch.no_grad():
        for adapter in model.adapters:
            adapter.up.bias.fill_(0.0)
    assert torch.allclose(ours, model(input_ids=ids, return_logits=True)["logits"])
    # adapters are live: a non-zero up-projection changes the output
    with torch.no_grad():
        model.adapters[0].up.bias.fill_(1.0)
    assert not torch.allclose(ours, model(input_ids=ids, return_logits=True)["logits"])


def _sdpa_spy(monkeypatch):
    """Record (mask given, is_causal) of every SDPA call."""
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs.get("attn_mask") is not None, bool(kwargs.get("is_causal"))))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


@pytest.mark.parametrize("fused", [False, True])
def test_right_padded_training_batch_runs_mask_free_causal_attention_with_equal_results(backbones, monkeypatch, fused):
    """Trailing padding: the LLM gets no padding mask (SDPA is_causal, its flash path), and the loss
    and trainable gradients equal those of the masked computation."""
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                       map={"d_embed": 32}, fused_llm="on" if fused else "off")
    model = build_model(cfg).train()
    ids = _ids(batch=3, length=9)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    mask[2, -1:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100
    media = media_for("vit", batch=3)

    def run(mask_free: bool):
        model.causal_only_when_right_padded = mask_free
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        calls = _sdpa_spy(monkeypatch)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, **media)["loss"]
        loss.backward()
        monkeypatch.undo()
        grads = {n: p.grad.clone() for n, p in model.trainable_named_parameters() if p.grad is not None}
        return loss.detach(), grads, calls

    loss_fast, grads_fast, calls_fast = run(True)
    loss_ref, grads_ref, calls_ref = run(False)
    n_layers = len(model.layout.layers)
    llm_calls_fast = calls_fast[-n_layers:]  # the mapper may call SDPA before the LLM does
    assert llm_calls_fast == [(False, True)] * n_layers, calls_fast
    assert all(given for given, _ in calls_ref[-n_layers:]), "the reference must run with the padding mask"
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-5, atol=1e-6)
    assert grads_fast.keys() == grads_ref.keys() and grads_fast
    for name in grads_ref:
        torch.testing.assert_close(grads_fast[name], grads_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_left_or_inner_padding_keeps_the_padding_mask(backbones, monkeypatch):
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                       map={"d_embed": 32})
    model = build_model(cfg).eval()
    ids = _ids(batch=2, length=7)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding: a real token follows a padded one
    calls = _sdpa_spy(monkeypatch)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, **media_for("vit", batch=2))
    n_layers = len(model.layout.layers)
    assert all(given for given, _ in calls[-n_layers:]), calls
