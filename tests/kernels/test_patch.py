"""patch_llama_family: the patched tiny LLaMA / Qwen2 gives the unpatched logits and input grads."""

from __future__ import annotations

import pytest
import torch

import scaling.kernels.rms_norm as rms_mod
import scaling.kernels.rope as rope_mod
import scaling.kernels.swiglu as swiglu_mod
from scaling.kernels.patch import patch_llama_family, unpatch_llama_family


def _tiny(family: str, device: str):
    common = dict(hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    if family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        from transformers import Qwen2Config, Qwen2ForCausalLM
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    # non-trivial norm weights so that the weight multiply is exercised
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__.endswith("RMSNorm"):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
    return model.to(device).eval()


def _run(model, embeds):
    e = embeds.clone().requires_grad_()
    logits = model(inputs_embeds=e).logits
    weights = torch.linspace(-1, 1, logits.shape[-1], device=logits.device)
    (g,) = torch.autograd.grad((logits * weights).sum(), e)
    return logits.detach(), g


class _Counter:
    def __init__(self, monkeypatch, cls):
        self.n = 0
        orig = cls.apply

        def apply(*args):
            self.n += 1
            return orig(*args)

        monkeypatch.setattr(cls, "apply", apply)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_patched_model_matches_unpatched(family, device, monkeypatch):
    model = _tiny(family, device)
    ids = torch.randint(0, 128, (2, 11), device=device)
    embeds = model.get_input_embeddings()(ids).detach()
    ref_logits, ref_grad = _run(model, embeds)

    counters = [_Counter(monkeypatch, c) for c in (rms_mod.RMSNormFunction, swiglu_mod.SwiGLUFunction,
                                                    rope_mod.RopeFunction)]
    try:
        report = patch_llama_family(model, mode="triton")
        assert len(report["rms_norm"]) == 2 * 2 + 1  # 2 per layer + final norm
        assert len(report["mlp"]) == 2
        assert report["rope_modules"] == [f"transformers.models.{family}.modeling_{family}"]
        assert report["skipped"] == []
        logits, grad = _run(model, embeds)
        # every patched kernel really ran (forward), and per call as often as expected
        assert [c.n for c in counters] == [5, 2, 2]
    finally:
        unpatch_llama_family(model)

    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5 * ref_grad.abs().max().item())

    # unpatch restores the original functions / forwards exactly
    logits2, grad2 = _run(model, embeds)
    assert torch.equal(logits2, ref_logits) and torch.equal(grad2, ref_grad)
    import importlib
    mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    assert not hasattr(mod.apply_rotary_pos_emb, "_scaling_kernels_original")


def test_patch_torch_mode_is_exact(device):
    model = _tiny("llama", device)
    embeds = model.get_input_embeddings()(torch.randint(0, 128, (1, 7), device=device)).detach()
    ref = _run(model, embeds)
    try:
        patch_llama_family(model, mode="torch")
        out = _run(model, embeds)
    finally:
        unpatch_llama_family(model)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_patch_skips_non_llama_norms():
    from torch import nn

    class GemmaLikeRMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(8))
            self.variance_epsilon = 1e-6

        def forward(self, x):
            x32 = x.float()
            return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.variance_epsilon) * (1 + self.weight)).to(x.dtype)

    model = nn.Sequential(GemmaLikeRMSNorm())
    report = patch_llama_family(model, mode="torch")
    assert report["rms_norm"] == [] and len(report["skipped"]) == 1
    assert "forward" not in model[0].__dict__
