"""Our calls into transformers use the keyword names the installed version declares: training forward and
cached generation (greedy and beam) of every LLM family raise no FutureWarning about a renamed argument
(transformers 5.x: ``past_key_values`` → ``cache``), with and without the fused frozen LLM."""

from __future__ import annotations

import warnings

import pytest
import torch

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.hf_compat import cache_kwarg


# the fused forward applies to LLaMA/Qwen2/Mistral layers only: OPT and GPT-2 run unfused
@pytest.mark.parametrize("llm,fused", [("tiny-llama", "off"), ("tiny-llama", "on"), ("tiny-opt", "off"),
                                       ("tiny-gpt2", "off"), ("tiny-qwen2", "off"), ("tiny-qwen2", "on")])
def test_no_deprecated_keyword_in_forward_or_generate(llm, fused):
    torch.manual_seed(0)
    model = build_model(model_config({"method": "depalm", "llm": llm, "encoder": "tiny-vit", "frozen_dtype": "fp32",
                                      "fused_llm": fused}))
    ids = torch.tensor([[1, 5, 6, 7], [0, 1, 5, 6]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    pix = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=FutureWarning)
        warnings.filterwarnings("error", message=".*past_key_values.*")
        out = model(input_ids=ids[:1], labels=ids[:1], pixel_values=pix[:1])
        assert torch.isfinite(out["loss"])
        greedy = model.generate(ids, mask, max_new_tokens=3, eos_token_id=2, pixel_values=pix)
        beam = model.generate(ids, mask, max_new_tokens=3, num_beams=2, eos_token_id=2, pixel_values=pix)
    assert greedy.shape[0] == 2 and beam.shape[0] == 2
    # the keyword we pass is one the model's forward declares
    import inspect

    assert cache_kwarg(model.layout.base) in inspect.signature(type(model.layout.base).forward).parameters
