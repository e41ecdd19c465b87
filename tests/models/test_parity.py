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
                       extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1}, map={"d_embed": 32})
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
