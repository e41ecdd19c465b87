"""Generation: KV cache = no cache; a left-padded batch = one sample at a time; beam search sanity."""

import pytest
import torch

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.tiny import tiny_media

CASES = {
    "depalm": {"map": {"d_embed": 32}, "finetune": {"n_prompt": 2}},
    "depalm-qp-inner": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 1}, "map": {"d_embed": 32}},
    "depalm-c-attn": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 1}, "map": {"d_embed": 32}},
    "epalm": {"extract": {"n_levels": 3}, "inject": {"n_llm_layers": 3, "n_left": 0}},
    "depalm-r-rand": {},  # evaluation keeps every token (eval_full): deterministic, batch-independent
}


def _model(backbones, method, llm="llama"):
    model = build_model(model_config(method=method, llm=backbones[llm], encoder=backbones["vit"], frozen_dtype="fp32", **CASES[method])).eval()
    if method == "depalm-c-attn":
        with torch.no_grad():
            model.injection.block.gate.fill_(0.7)  # make the cross-attention matter
    return model


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("llm", ["llama", "opt"])
def test_kv_cache_equals_no_cache(backbones, method, llm):
    model = _model(backbones, method, llm)
    ids = torch.randint(5, 90, (3, 5))
    media = tiny_media("vit", batch=3)
    cached = model.generate(ids, max_new_tokens=8, use_cache=True, **media)
    uncached = model.generate(ids, max_new_tokens=8, use_cache=False, **media)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("llm", ["llama", "gpt2"])
@pytest.mark.parametrize("kv_cache,num_beams", [("dynamic", 1), ("static", 1), ("static", 3)],
                         ids=["dynamic-greedy", "static-greedy", "static-beam"])
def test_left_padded_batch_equals_one_at_a_time(backbones, method, llm, kv_cache, num_beams):
    """The batched result equals batch size 1, with the growing cache and the preallocated static one
    (fixed shapes: the decode step a CUDA graph captures), greedy and beam search."""
    model = _model(backbones, method, llm)
    lengths = [6, 3, 4]
    prompts = [torch.randint(5, 90, (n,)) for n in lengths]
    media = tiny_media("vit", batch=3)["pixel_values"]
    width = max(lengths)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    kw = dict(max_new_tokens=6, kv_cache=kv_cache, num_beams=num_beams)
    batched = model.generate(ids, mask, pixel_values=media, **kw)
    for i, p in enumerate(prompts):
        single = model.generate(p[None], pixel_values=media[i : i + 1], **kw)
        assert torch.equal(batched[i, : single.shape[1]], single[0]), f"sample {i}"


def test_beam_search_with_one_beam_is_greedy_and_wider_beams_score_at_least_as_well(backbones):
    model = _model(backbones, "depalm")
    ids = torch.randint(5, 90, (2, 4))
    media = tiny_media("vit")
    greedy = model.generate(ids, max_new_tokens=5, **media)
    beam = model.generate(ids, max_new_tokens=5, num_beams=4, length_penalty=0.0, **media)
    assert beam.shape[0] == 2

    def logprob(seq_ids, i):
        full = torch.cat([ids[i : i + 1], seq_ids[None]], dim=1)
        labels = full.clone()
        labels[:, : ids.shape[1]] = -100
        model.label_smoothing = 0.0
        out = model(input_ids=full, labels=labels, pixel_values=media["pixel_values"][i : i + 1])
        return -out["loss"].item() * seq_ids.numel()

    for i in range(2):
        assert logprob(beam[i], i) >= logprob(greedy[i], i) - 1e-4


def test_generation_stops_at_eos_and_pads_after(backbones):
    model = _model(backbones, "depalm")
    ids = torch.randint(5, 90, (2, 4))
    media = tiny_media("vit")
    free = model.generate(ids, max_new_tokens=6, **media)
    row = free[0].tolist()
    # pretend the first generated token of sample 0 not seen before it (after the first) is EOS
    j = next((j for j in range(1, len(row)) if row[j] not in row[:j]), 0)  # 0: the model repeats one token
    eos = row[j]
    out = model.generate(ids, max_new_tokens=6, eos_token_id=eos, pad_token_id=0, **media)
    assert out[0, :j].tolist() == row[:j] and int(out[0, j]) == eos and (out[0, j + 1:] == 0).all()


def test_beam_search_with_eos_picks_what_hugging_face_beam_search_picks(backbones):
    """EOS firing inside the beam: the same hypotheses as ``generate(num_beams=k, early_stopping=True)``.
    (Accepting EOS candidates ranked below the k best, or dropping full-length live beams at the last
    step, makes the two differ on these peaked distributions.)"""
    model = build_model(model_config(method="blind", llm=backbones["llama"], frozen_dtype="fp32")).eval()
    with torch.no_grad():
        model.layout.lm_head.weight.mul_(20)  # peaked distributions: EOS often ranks in the top 2k
    llm = model.llm
    torch.manual_seed(0)
    compared = with_eos = 0
    for trial in range(30):
        ids = torch.randint(5, 90, (1, 4))
        with torch.no_grad():
            prefix, _ = model.prefix(None, 1)
            emb = torch.cat([prefix, model.layout.embed_tokens(ids)], 1)
            first = llm(inputs_embeds=emb).logits[0, -1].float()
        eos = int(first.topk(3).indices[trial % 3])
        for k in (2, 3):
            ours = model.generate(ids, max_new_tokens=6, num_beams=k, eos_token_id=eos, pad_token_id=0)[0].tolist()
            ref = llm.generate(inputs_embeds=emb, attention_mask=torch.ones(emb.shape[:2], dtype=torch.long),
                               max_new_tokens=6, num_beams=k, early_stopping=True, eos_token_id=eos, pad_token_id=0,
                               do_sample=False, length_penalty=1.0)[0].tolist()
            cut = lambda seq: seq[: seq.index(eos) + 1] if eos in seq else seq  # noqa: E731
            assert cut(ours) == cut(ref), f"trial {trial} k={k} eos={eos}: ours {cut(ours)} vs HF {cut(ref)}"
            compared += 1
            with_eos += eos in ours
    assert compared == 60 and with_eos >= 10, "the comparison must exercise EOS inside the beam"


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("num_beams", [1, 3])
def test_static_kv_cache_equals_the_dynamic_one(backbones, method, num_beams):
    model = _model(backbones, method, "opt")
    ids = torch.randint(5, 90, (3, 5))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    media = tiny_media("vit", batch=3)
    dynamic = model.generate(ids, mask, max_new_tokens=7, num_beams=num_beams, **media)
    static = model.generate(ids, mask, max_new_tokens=7, num_beams=num_beams, kv_cache="static", **media)
    assert torch.equal(static, dynamic)


def test_unknown_kv_cache_is_refused(backbones):
    model = _model(backbones, "depalm")
    with pytest.raises(ValueError, match="kv_cache must be one of"):
        model.generate(torch.randint(5, 90, (1, 3)), kv_cache="paged", **tiny_media("vit", batch=1))


def test_static_cache_is_reused_and_reset_in_place(backbones):
    """A second generate call of the same shape writes into the first call's static cache (same buffers:
    the CUDA graph of compile_decode replays instead of re-recording) and still equals a fresh model's."""
    model = _model(backbones, "depalm")
    ids = torch.randint(5, 90, (2, 4))
    first_media, second_media = tiny_media("vit", batch=2), tiny_media("vit", batch=2)
    model.generate(ids, max_new_tokens=5, kv_cache="static", **first_media)
    cache = model._static_cache[1]
    keys = [layer.keys.data_ptr() for layer in cache.layers]
    second = model.generate(ids, max_new_tokens=5, kv_cache="static", **second_media)
    assert model._static_cache[1] is cache and [layer.keys.data_ptr() for layer in cache.layers] == keys
    assert torch.equal(second, model.generate(ids, max_new_tokens=5, **second_media))  # dynamic: a fresh cache
    model.generate(ids[:1], max_new_tokens=5, kv_cache="static", **tiny_media("vit", batch=1))
    assert model._static_cache[1] is not cache  # another batch size: a new cache


def test_decode_accepts_a_module_that_cannot_be_tested_for_truth(backbones, monkeypatch):
    """torch.compile'd modules raise TypeError on bool(); the decode step must only compare with None."""
    model = _model(backbones, "depalm")

    class NoTruth(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def __bool__(self):
            raise TypeError("LlamaModel does not support len()")

        def forward(self, *args, **kwargs):
            self.calls += 1
            return self.inner(*args, **kwargs)

    wrapper = NoTruth(model.layout.base)
    monkeypatch.setattr(model, "_decoder", lambda static, device: wrapper)
    ids = torch.randint(5, 90, (2, 4))
    media = tiny_media("vit", batch=2)
    out = model.generate(ids, max_new_tokens=4, kv_cache="static", **media)
    assert wrapper.calls == 3  # every decode step after the prefill
    monkeypatch.undo()
    assert torch.equal(out, model.generate(ids, max_new_tokens=4, **media))
