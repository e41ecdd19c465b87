"""Tokens land exactly where the injection formula says, and nowhere else."""

import pytest
import torch

from scaling.config.base import ConfigError
from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.injection import injected_layers, layer_levels
from scaling.models.tiny import tiny_media


def test_layer_levels_formula_epalm_and_depalm():
    # eP-ALM: 6 levels into the 12 layers that end one layer before the top of a 32-layer LLM
    plan = layer_levels(32, 6, 12, 1)
    assert list(plan) == list(range(19, 31))
    assert [plan[i] for i in range(19, 31)] == [-6, -6, -5, -5, -4, -4, -3, -3, -2, -2, -1, -1]
    # with n_left = 0 it is exactly floor((i - L) * n_fl / n_llm) of the DePALM supplement
    plan0 = layer_levels(32, 4, 12, 0)
    assert all(plan0[i] == (i - 32) * 4 // 12 for i in plan0)
    with pytest.raises(ConfigError, match="n_llm_layers"):
        injected_layers(4, 4, 1)


def _inner_model(backbones, llm="llama"):
    cfg = model_config(method="depalm-qp-inner", llm=backbones[llm], encoder=backbones["vit"], frozen_dtype="fp32",
                       extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1}, map={"d_embed": 32},
                       finetune={"n_prompt": 3})
    return build_model(cfg).eval()


@pytest.mark.parametrize("llm", ["llama", "opt", "gpt2"])
def test_inner_injection_writes_level_tokens_at_the_slots_of_each_layer(backbones, llm):
    model = _inner_model(backbones, llm)
    media = tiny_media("vit")
    assert model.plan == {1: -2, 2: -1}  # 4 layers, n_llm 2, n_left 1: layers 1 and 2 get levels -2 and -1
    seen = {}
    handles = [layer.register_forward_pre_hook(lambda m, a, k, i=i: seen.__setitem__(i, (a[0] if a else k["hidden_states"]).detach()), with_kwargs=True)
               for i, layer in enumerate(model.layout.layers)]
    # our pre-hooks were registered first, so these observe the layer input after injection
    ids = torch.randint(5, 90, (2, 5))
    with torch.no_grad():
        model(input_ids=ids, **media)
        mapped = model.encode(**media)  # [B, 2 levels, 32 queries, d]
    for h in handles:
        h.remove()
    n = mapped.shape[2]
    for layer, level in model.plan.items():
        assert torch.allclose(seen[layer][:, :n], mapped[:, level], atol=1e-6), f"layer {layer}"
    assert not torch.allclose(seen[0][:, :n], mapped[:, -2]), "layer 0 must not receive perceptual tokens"


def test_slots_are_invisible_to_text_outside_the_injected_layers(backbones):
    model = _inner_model(backbones)
    ids = torch.randint(5, 90, (2, 5))
    out_hidden = {}
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: out_hidden.__setitem__(i, (o[0] if isinstance(o, tuple) else o).detach()))
               for i, layer in enumerate(model.layout.layers)]
    with torch.no_grad():
        model(input_ids=ids, **tiny_media("vit"))
        first = {k: v.clone() for k, v in out_hidden.items()}
        model(input_ids=ids, **tiny_media("vit"))  # different images
    for h in handles:
        h.remove()
    n = 32
    # layer 0 comes before any injection: its text outputs do not depend on the image
    assert torch.equal(first[0][:, n:], out_hidden[0][:, n:])
    # layer 1 injects: its text outputs do
    assert not torch.allclose(first[1][:, n:], out_hidden[1][:, n:])


def test_inner_injection_equals_prepend_then_remove_reference(backbones):
    """Slots + per-layer masks compute the same text states as literally prepending the tokens to
    the input of layer i and removing them from its output (OPT: positions added at the input)."""
    model = _inner_model(backbones, "opt")
    model.prompt = None
    ids = torch.randint(5, 90, (1, 6))
    media = tiny_media("vit", batch=1)
    with torch.no_grad():
        mapped = model.encode(**media)
        ours = model(input_ids=ids, return_logits=True, **media)["logits"]
        dec = model.llm.model.decoder
        n = mapped.shape[2]
        # reference: positions of the text as in our layout (after the n slots)
        pos = torch.arange(n, n + ids.shape[1])[None]
        h = dec.embed_tokens(ids) + dec.embed_positions(torch.ones(1, n + ids.shape[1], dtype=torch.long), 0, position_ids=pos)
        for i, layer in enumerate(dec.layers):
            if i in model.plan:
                x = torch.cat([mapped[:, model.plan[i]], h], dim=1)
                s = x.shape[1]
                causal = torch.full((s, s), torch.finfo(x.dtype).min).triu(1)[None, None]
                h = layer(x, attention_mask=causal)[:, n:]
                if isinstance(h, tuple):
                    h = h[0][:, n:]
            else:
                s = h.shape[1]
                causal = torch.full((s, s), torch.finfo(h.dtype).min).triu(1)[None, None]
                h = layer(h, attention_mask=causal)
        ref = model.llm.lm_head(dec.final_layer_norm(h))
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_first_layer_prefix_order_is_perceptual_then_prompt_then_text(backbones):
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                       map={"d_embed": 32}, finetune={"n_prompt": 2})
    model = build_model(cfg).eval()
    seen = {}
    h = model.layout.layers[0].register_forward_pre_hook(lambda m, a, k: seen.__setitem__("x", (a[0] if a else k["hidden_states"]).detach()), with_kwargs=True)
    ids = torch.randint(5, 90, (2, 4))
    media = tiny_media("vit")
    with torch.no_grad():
        model(input_ids=ids, **media)
        mapped = model.encode(**media)[:, 0]
    h.remove()
    x = seen["x"]
    assert torch.allclose(x[:, :32], mapped)
    assert torch.allclose(x[:, 32:34], model.prompt()[None].expand(2, -1, -1))
    assert torch.equal(x[:, 34:], model.layout.embed_tokens(ids))


def test_rand_keeps_round_f_tokens_plus_cls_in_training_and_all_at_evaluation(backbones):
    cfg = model_config(method="depalm-r-rand", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32")
    model = build_model(cfg)
    mapper = model.mapper
    feats = torch.randn(3, 1, 17, 32)  # CLS + 16 patches
    model.eval()
    assert mapper(feats).shape[2] == 17  # eval_full: every token at evaluation (the official default)
    assert torch.equal(mapper(feats), mapper(feats))  # deterministic at evaluation
    model.train()
    for _ in range(20):
        out = mapper(feats)
        f = mapper.last_fraction
        assert 1 / 16 <= f <= 1 / 2
        assert out.shape[2] == 1 + max(1, round(f * 16))
    # the CLS token is always kept: the first output token equals the mapped CLS
    kept = mapper.select(feats[:, 0])
    assert torch.equal(kept[:, 0], feats[:, 0, 0])
