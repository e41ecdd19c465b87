"""Evaluation settings of the official code (3 beams, 50 new tokens, no newline cut) and eP-ALM's total-length cap."""

import pytest
import torch
from transformers import AutoTokenizer

from scaling.config import ConfigError, load_config
from scaling.config.model import model_config
from scaling.evaluation.evaluate import generate_batch
from scaling.models.builder import build_model


def test_eval_defaults_are_the_official_generation_settings():
    cfg = load_config(None, [])
    assert (cfg.eval.num_beams, cfg.eval.max_new_tokens, cfg.eval.max_length, cfg.eval.stop_strings) == (3, 50, None, [])
    assert cfg.eval.generation() == {"max_new_tokens": 50, "num_beams": 3, "max_length": None, "stop_strings": (),
                                     "kv_cache": "dynamic"}
    for bad, msg in (("eval.num_beams=0", "num_beams"), ("eval.max_length=1", "max_length"), ("eval.max_new_tokens=0", "max_new_tokens"),
                     ("eval.kv_cache=paged", "kv_cache")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])


def test_max_length_caps_prompt_plus_generated_tokens(backbones):
    torch.manual_seed(0)
    model = build_model(model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                                     map={"d_embed": 32})).eval()
    tok = AutoTokenizer.from_pretrained(backbones["llama"])
    enc = tok(["what color is the circle ?", "how many ?"], return_tensors="pt", padding=True, padding_side="left")
    batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask,
             "pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}
    width = enc.input_ids.shape[1]
    capped = generate_batch(model, tok, dict(batch), max_new_tokens=50, num_beams=1, stop_strings=(), max_length=width + 3)
    direct = generate_batch(model, tok, dict(batch), max_new_tokens=3, num_beams=1, stop_strings=())
    longer = generate_batch(model, tok, dict(batch), max_new_tokens=12, num_beams=1, stop_strings=())
    assert capped == direct  # Hugging Face max_length: prompt width + new tokens
    assert any(len(tok(a, add_special_tokens=False).input_ids) > len(tok(b, add_special_tokens=False).input_ids)
               for a, b in zip(longer, capped)), "the random tiny model must produce more than 3 tokens uncapped"


def test_eval_kv_cache_from_the_config_reaches_generation_and_gives_the_same_text(backbones, monkeypatch):
    """``eval.kv_cache: static`` in the config reaches ``PerceptualLM.generate`` through ``evaluate``'s keyword
    arguments (``cfg.eval.generation()``), and the static cache writes the same text as the dynamic one."""
    from scaling.evaluation.evaluate import evaluate

    torch.manual_seed(0)
    model = build_model(model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                                     map={"d_embed": 32})).eval()
    tok = AutoTokenizer.from_pretrained(backbones["llama"])
    enc = tok(["what color is the circle ?", "how many ?"], return_tensors="pt", padding=True, padding_side="left")
    batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "ids": ["a", "b"], "answers": [["x"], ["y"]],
             "pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}
    seen = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: seen.append(k.get("kv_cache")) or real(*a, **k))
    texts = {}
    for kind in ("dynamic", "static"):
        cfg = load_config(None, [f"eval.kv_cache={kind}", "eval.num_beams=2", "eval.max_new_tokens=6"])
        texts[kind] = evaluate(model, tok, [dict(batch)], "caption", **cfg.eval.generation(), progress=False).predictions
    assert seen == ["dynamic", "static"]
    assert texts["static"] == texts["dynamic"]
