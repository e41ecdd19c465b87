"""Tokens land exactly where the injection formula says, and nowhere else."""

import pytest
import torch

from scaling.config.base import ConfigError
from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.injection import epalm_level_map, injected_layers, layer_levels
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
    with pytest.raises(ConfigError, match="level_map must be one of"):
        layer_levels(32, 6, 12, 1, "epalm2")


def _epalm_reference(n_llm: int, n_fl: int) -> list[int]:
    """eP-ALM models/opt.py, written from its description: ``step = n_llm // n_fl`` when n_llm > n_fl
    and there is more than one level, else 1; layer k (counted from the first injected one) reads
    ``vis_prefix[min(k // step, n_fl - 1)]``, ``vis_prefix`` ordered from the earliest level."""
    step = (n_llm // n_fl if n_llm > n_fl else 1) if n_fl > 1 else 1
    return [min(k // step, n_fl - 1) for k in range(n_llm)]


def test_epalm_level_map_follows_epalm_code_and_differs_from_depalm_when_not_divisible():
    for n_llm in range(1, 17):
        for n_fl in range(1, 9):
            assert epalm_level_map(n_llm, n_fl) == [lvl - n_fl for lvl in _epalm_reference(n_llm, n_fl)], (n_llm, n_fl)
    # 5 levels over 12 layers: eP-ALM steps by 2 and gives the last level the remaining 4 layers
    assert list(layer_levels(32, 5, 12, 1, "epalm").values()) == [-5, -5, -4, -4, -3, -3, -2, -2, -1, -1, -1, -1]
    assert list(layer_levels(32, 5, 12, 1, "depalm").values()) == [-5, -5, -5, -4, -4, -3, -3, -3, -2, -2, -1, -1]
    # the eP-ALM presets use eP-ALM's map; for 6 levels over 12 layers both maps agree
    assert layer_levels(32, 6, 12, 1, "epalm") == layer_levels(32, 6, 12, 1, "depalm")
    for method in ("epalm", "epalm-lin", "epalm-pt", "epalm-ada"):
        assert model_config(method=method).inject["level_map"] == "epalm"
    assert model_config(method="depalm-qp-inner").inject.get("level_map", "depalm") == "depalm"


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
    tuned = model.injection.layer_tokens(mapped, model.plan)  # QP-inner: each layer's own RMSNorm + bias tuner
    for layer, _level in model.plan.items():
        assert torch.allclose(seen[layer][:, :n], tuned[layer], atol=1e-6), f"layer {layer}"
    assert not torch.allclose(seen[0][:, :n], tuned[1]), "layer 0 must not receive perceptual tokens"


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


def _opt_prepend_then_remove_reference(model, ids, media, prompt_positions: bool):
    """OPT with the tokens of layer i literally prepended to its input and removed from its output.
    Positions as the official codes: the injected tokens get none (they enter after the embedding);
    the prompt is numbered with the text (DePALM's LearnedPrefixTokensL0, ``prompt_positions``) or gets
    no position and the text starts at 0 (eP-ALM's models/opt.py)."""
    dec = model.llm.model.decoder
    mapped = model.encode(**media)
    tokens = model.injection.layer_tokens(mapped, model.plan)
    n = mapped.shape[2]
    prompt = model.prompt()[None] if model.prompt is not None else torch.zeros(1, 0, ids.shape[1])
    n_p = prompt.shape[1]
    text_start = n_p if prompt_positions else 0
    table = lambda pos: dec.embed_positions(torch.ones(1, pos.shape[1], dtype=torch.long), 0, position_ids=pos)  # noqa: E731
    text = dec.embed_tokens(ids) + table(torch.arange(text_start, text_start + ids.shape[1])[None])
    if prompt_positions and n_p:
        prompt = prompt + table(torch.arange(n_p)[None])
    h = torch.cat([prompt, text], dim=1)
    for i, layer in enumerate(dec.layers):
        x = torch.cat([tokens[i], h], dim=1) if i in model.plan else h
        s = x.shape[1]
        causal = torch.full((s, s), torch.finfo(x.dtype).min).triu(1)[None, None]
        out = layer(x, attention_mask=causal)
        out = out[0] if isinstance(out, tuple) else out
        h = out[:, n:] if i in model.plan else out
    return model.llm.lm_head(dec.final_layer_norm(h))[:, n_p:]


@pytest.mark.parametrize("scheme", ["prompt", "input", "text"])
def test_inner_injection_on_opt_equals_prepend_then_remove_reference(backbones, scheme):
    """Slots + per-layer masks compute the same text states as literally prepending the tokens to
    the input of layer i and removing them from its output; on OPT the slots get no position
    embedding and the prompt is numbered (``input``, DePALM's code) or not (``text``, eP-ALM's)."""
    cfg = model_config(method="depalm-qp-inner", llm=backbones["opt"], encoder=backbones["vit"], frozen_dtype="fp32",
                       extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1}, map={"d_embed": 32},
                       finetune={"n_prompt": 3}, learned_positions=scheme)
    model = build_model(cfg).eval()
    ids = torch.randint(5, 90, (1, 6))
    media = tiny_media("vit", batch=1)
    with torch.no_grad():
        ours = model(input_ids=ids, return_logits=True, **media)["logits"]
        ref = _opt_prepend_then_remove_reference(model, ids, media, prompt_positions=scheme != "text")
        other = _opt_prepend_then_remove_reference(model, ids, media, prompt_positions=scheme == "text")
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, other, atol=1e-3)  # the two schemes differ


def test_learned_positions_sequence_numbers_every_token_and_rotary_llms_ignore_the_scheme(backbones):
    ids = torch.randint(5, 90, (2, 5))
    media = tiny_media("vit")
    outs = {}
    for llm in ("opt", "llama"):
        for scheme in ("prompt", "input", "text", "sequence"):
            torch.manual_seed(0)
            model = build_model(model_config(method="epalm", llm=backbones[llm], encoder=backbones["vit"], frozen_dtype="fp32",
                                             extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1},
                                             learned_positions=scheme)).eval()
            with torch.no_grad():
                outs[llm, scheme] = model(input_ids=ids, return_logits=True, **media)["logits"]
    assert torch.equal(outs["llama", "prompt"], outs["llama", "input"])
    assert torch.equal(outs["llama", "input"], outs["llama", "text"]) and torch.equal(outs["llama", "text"], outs["llama", "sequence"])
    assert not torch.allclose(outs["opt", "text"], outs["opt", "sequence"], atol=1e-3)
    assert not torch.allclose(outs["opt", "input"], outs["opt", "sequence"], atol=1e-3)
    assert model_config(method="epalm").learned_positions == "text" and model_config(method="depalm").learned_positions == "prompt"


def _opt_inserted_inside_layer0_reference(model, ids, media):
    """The official DePALM layer-0 injection on OPT, written from its described behaviour: the decoder's input is
    the prompt and the text, numbered 0..n_p+T-1 by OPT's learned position table; the perceptual tokens are
    inserted in front of them inside layer 0 (after the position embedding: none of their own) and kept to the end."""
    dec = model.llm.model.decoder
    tokens = model.encode(**media).flatten(1, 2)
    n = tokens.shape[1]
    prompt = model.prompt()[None] if model.prompt is not None else torch.zeros(1, 0, tokens.shape[-1])
    n_p = prompt.shape[1]
    x = torch.cat([prompt, dec.embed_tokens(ids)], dim=1)
    x = x + dec.embed_positions(torch.ones(1, x.shape[1], dtype=torch.long), 0, position_ids=torch.arange(x.shape[1])[None])
    h = torch.cat([tokens, x], dim=1)
    s = h.shape[1]
    causal = torch.full((s, s), torch.finfo(h.dtype).min).triu(1)[None, None]
    for layer in dec.layers:
        out = layer(h, attention_mask=causal)
        h = out[0] if isinstance(out, tuple) else out
    return model.llm.lm_head(dec.final_layer_norm(h))[:, n + n_p:]


@pytest.mark.parametrize("method", ["depalm", "mapl", "limber-1"])
def test_first_layer_injection_on_opt_gives_the_perceptual_tokens_no_position_by_default(backbones, method):
    """DePALM's layer-0 methods insert their tokens inside layer 0, after OPT's position embedding: the default
    ``learned_positions`` (``prompt``) reproduces it; ``input`` (every input token numbered) does not."""
    ids = torch.randint(5, 90, (1, 6))
    media = tiny_media("vit", batch=1)
    logits = {}
    for scheme in (None, "input"):
        extra = {} if scheme is None else {"learned_positions": scheme}
        torch.manual_seed(0)
        cfg = model_config(method=method, llm=backbones["opt"], encoder=backbones["vit"], frozen_dtype="fp32",
                           map={"d_embed": 32} if method != "limber-1" else {}, **extra)
        model = build_model(cfg).eval()
        with torch.no_grad():
            logits[scheme] = model(input_ids=ids, return_logits=True, **media)["logits"]
            ref = _opt_inserted_inside_layer0_reference(model, ids, media)
    torch.testing.assert_close(logits[None], ref, atol=1e-5, rtol=0)
    assert not torch.allclose(logits["input"], ref, atol=1e-3)


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
