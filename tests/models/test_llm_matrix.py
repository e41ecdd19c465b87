"""Any decoder-only causal LM that transformers loads: a matrix of tiny random architectures.

For each architecture (saved with ``save_pretrained`` and loaded through the user's path), with the
presets that touch the LLM differently (first-layer prefix + prompt, inner injection, adapters in
every block, gated cross-attention):
- the model's logits equal the Hugging Face causal LM's own logits for the same input embeddings
  (embedding scale, Gemma-2's final-logit soft-capping, ...);
- a training step gives a finite loss and a gradient to the interface;
- a left-padded batch gives each sample's next-token logits (and greedy tokens) as that sample alone.
"""

from __future__ import annotations

import logging

import pytest
import torch

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.tiny import TINY_LLM_MATRIX, save_tiny_encoder, save_tiny_llm, tiny_media

PRESETS = {
    "depalm": {"map": {"d_embed": 32}, "finetune": {"n_prompt": 2}},
    "epalm": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 1}},
    "epalm-ada": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 0}},
    "depalm-c-attn": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 1}, "map": {"d_embed": 32}},
}


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return save_tiny_encoder(str(tmp_path_factory.mktemp("enc") / "vit"), "vit")


def _left_padded(prompts):
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    return ids, mask


@pytest.mark.slow
@pytest.mark.parametrize("arch", TINY_LLM_MATRIX)
def test_every_architecture_trains_and_batches_like_one_sample(arch, vit, tmp_path):
    llm_dir = save_tiny_llm(str(tmp_path / arch), arch)
    media = tiny_media("vit", batch=2)["pixel_values"]
    prompts = [torch.randint(5, 90, (n,)) for n in (3, 6)]  # the first is left-padded by 3
    ids, mask = _left_padded(prompts)
    for method, extra in PRESETS.items():
        model = build_model(model_config(method=method, llm=llm_dir, encoder=vit, frozen_dtype="fp32", **extra)).eval()
        if method == "depalm-c-attn":
            with torch.no_grad():
                model.injection.block.gate.fill_(0.7)  # make the cross-attention matter
        # the head and the embedding exactly as the LLM's own forward (first-layer prefix only); on learned-position
        # LLMs (OPT, GPT-2) that holds where the prefix is numbered like input tokens (learned_positions=input: the
        # LLM's own forward numbers every input embedding), not under the official default (prefix unnumbered)
        if method == "depalm":
            exact = build_model(model_config(method=method, llm=llm_dir, encoder=vit, frozen_dtype="fp32",
                                             learned_positions="input", **extra)).eval()
            with torch.no_grad():
                mapped = exact.encode(pixel_values=media[:1])
                prefix, _ = exact.prefix(mapped, 1)
                ours = exact(input_ids=prompts[0][None], pixel_values=media[:1], return_logits=True)["logits"]
                emb = torch.cat([prefix, exact.layout.embed_tokens(prompts[0][None])], dim=1)
                ref = exact.llm(inputs_embeds=emb, use_cache=False).logits[:, prefix.shape[1]:]
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
            if getattr(model.llm.config, "final_logit_softcapping", None):
                assert ours.abs().max() < model.llm.config.final_logit_softcapping
        # one training step
        model.train()
        labels = ids.clone()
        labels[mask == 0] = -100
        labels[:, :2] = -100
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=media)["loss"]
        assert torch.isfinite(loss), (arch, method)
        loss.backward()
        grads = [p.grad for _, p in model.trainable_named_parameters()]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), (arch, method)
        model.eval()
        # left-padded batch = each sample alone: next-token logits and greedy tokens
        with torch.no_grad():
            batched = model(input_ids=ids, attention_mask=mask, pixel_values=media, return_logits=True)["logits"][:, -1]
            gen = model.generate(ids, mask, max_new_tokens=2, pixel_values=media)
            for i, p in enumerate(prompts):
                alone = model(input_ids=p[None], pixel_values=media[i : i + 1], return_logits=True)["logits"][0, -1]
                torch.testing.assert_close(batched[i], alone, rtol=1e-4, atol=1e-5, msg=f"{arch} {method} sample {i}")
                single = model.generate(p[None], max_new_tokens=2, pixel_values=media[i : i + 1])
                assert torch.equal(gen[i, : single.shape[1]], single[0]), f"{arch} {method} sample {i}"


def test_a_model_without_sdpa_falls_back_to_eager_with_a_note(tmp_path, caplog):
    from scaling.models.backbones import load_llm

    llm_dir = save_tiny_llm(str(tmp_path / "bloom"), "bloom")
    with caplog.at_level(logging.WARNING, logger="scaling.models.backbones"):
        llm = load_llm(llm_dir, "fp32", attn_implementation="sdpa")
    assert llm.config._attn_implementation == "eager"
    notes = [r.getMessage() for r in caplog.records if "eager" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and "bloom" in notes[0]
