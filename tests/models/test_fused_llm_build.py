"""``model.fused_llm``: the builder installs the fused frozen-LLM forward, and every method computes
the same loss, trainable gradients and generations with it as with the Hugging Face layers."""

import pytest
import torch

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.fast_llm import is_fused
from scaling.models.tiny import tiny_media

SMALL = {  # the presets at the tiny backbones' depth (2 LLM layers, 3 encoder layers)
    "depalm-qp-inner": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 0}},
    "depalm-c-attn": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 0}},
    "epalm-ada": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 0}},
}


def _build(backbones, method, fused, **extra):
    torch.manual_seed(0)
    cfg = model_config(method=method, llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                       kernels="torch", fused_llm=fused, **{**SMALL.get(method, {}), **extra})
    model = build_model(cfg)
    if method == "depalm-c-attn":
        with torch.no_grad():
            model.injection.block.gate.fill_(0.7)  # make the cross-attention matter
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 90, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100
    return ids, mask, labels


@pytest.mark.parametrize("method", ["depalm", "depalm-qp-inner", "depalm-c-attn", "depalm-r-avgpool", "limber-1"])
def test_fused_llm_gives_the_same_loss_gradients_and_generations(backbones, method):
    plain, fused = _build(backbones, method, "off"), _build(backbones, method, "on")
    layers = fused.layout.layers
    assert all(is_fused(l) for l in layers)
    assert not any(is_fused(l) for l in plain.layout.layers)
    media = tiny_media("vit")
    ids, mask, labels = _batch()
    grads = []
    for model in (plain, fused):
        model.train()
        torch.manual_seed(2)  # the same dropout masks in the mapper
        out = model(input_ids=ids, attention_mask=mask, labels=labels, **media)
        out["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.trainable_named_parameters()})
        model.eval()
        grads[-1]["__loss"] = out["loss"].detach()
        grads[-1]["__gen"] = model.generate(ids[:, :4], mask[:, :4], max_new_tokens=4, **media)
    a, b = grads
    torch.testing.assert_close(b["__loss"], a["__loss"], rtol=1e-5, atol=1e-6)
    assert torch.equal(b["__gen"], a["__gen"])
    for name in a:
        if not name.startswith("__"):
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_layers_with_adapters_or_lora_stay_with_hugging_face(backbones):
    ada = _build(backbones, "epalm-ada", "on")  # adapters hook self_attn / mlp
    assert not any(is_fused(l) for l in ada.layout.layers)
    lora = _build(backbones, "depalm", "on", finetune={"lora_rank": 4})
    assert not any(is_fused(l) for l in lora.layout.layers)


def test_auto_is_off_on_cpu_and_zero3_builds_unfused(backbones):
    assert not any(is_fused(l) for l in _build(backbones, "depalm", "auto").layout.layers)
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32", fused_llm="on")
    assert not any(is_fused(l) for l in build_model(cfg, fuse=False).layout.layers)
