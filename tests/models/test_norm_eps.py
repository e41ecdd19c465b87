"""``model.norm_eps``: the epsilon of the map and inject blocks' norms (scaling/config/blocks.py ``NORM_EPS``).

``official`` (default) is DePALM's 1e-4 for every RMSNorm and LayerNorm of the blocks; ``format-1`` is what scaling
built before issue 14 (RMSNorm 1e-6, LayerNorm 1e-5), which a format-1 adapter's stored config gets on loading
(scaling/config/versions.py; the end-to-end check is tests/config/test_config_format.py).
"""

import pytest
import torch
from torch import nn

from scaling.config import ConfigError
from scaling.config.model import model_config
from scaling.config.versions import upgrade_format
from scaling.models.builder import build_model
from scaling.models.tiny import tiny_media

# presets whose blocks hold every kind of norm: the QPMapper's output RMSNorm and its transformer layers' LayerNorms,
# the block resampler's RMSNorm (+ R-QPMapper's LayerNorms), R-rand's RMSNorm, c-attn's two RMSNorms and its layer
TINY = {"llm": "tiny-llama", "encoder": "tiny-vit", "frozen_dtype": "fp32"}
PRESETS = {
    "depalm": {"map": {"norm": "rmsnorm"}},
    "depalm-qp-inner": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 0}},
    "depalm-r-qpmapper": {},
    "depalm-r-rand": {},
    "depalm-c-attn": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 0}},
}


def _norms(model) -> list[nn.Module]:
    return [m for block in (model.mapper, model.injection) for m in block.modules()
            if isinstance(m, (nn.RMSNorm, nn.LayerNorm))]


def _build(method: str, **extra):
    torch.manual_seed(0)
    return build_model(model_config(method=method, **TINY, **PRESETS[method], **extra)).eval()


@pytest.mark.parametrize("method", PRESETS)
def test_default_is_the_official_eps_and_format_1_the_old_one(method):
    assert model_config(method=method).norm_eps == "official"
    today = _build(method)
    assert _norms(today) and {m.eps for m in _norms(today)} == {1e-4}  # DePALM's get_norm_layer
    old = _build(method, norm_eps="format-1")
    assert _norms(old), method
    for m in _norms(old):
        assert m.eps == (1e-6 if isinstance(m, nn.RMSNorm) else 1e-5), (method, m)
    # the same weights: the eps is the only difference, and it reaches the outputs
    old.load_state_dict(today.state_dict())
    media = tiny_media("vit")
    ids = torch.randint(5, 90, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for model in (today, old):  # c-attn's tanh gate starts at 0 (no perceptual effect): open it
            for name, p in model.injection.named_parameters():
                p.fill_(1.0) if name.endswith("gate") else None
        for m in _norms(today) + _norms(old):  # small-variance inputs to the norms, where eps 1e-4 vs 1e-6 shows
            m.register_forward_pre_hook(lambda _, args: (args[0] * 1e-3,))
        a = today(input_ids=ids, **media, return_logits=True)["logits"]
        b = old(input_ids=ids, **media, return_logits=True)["logits"]
    assert not torch.allclose(a, b, atol=1e-6, rtol=0), method


def test_a_norm_computes_with_the_eps_it_was_given():
    """RMSNorm with format-1's eps is x · rsqrt(mean(x²) + 1e-6) · w, LayerNorm uses 1e-5 (behaviour, not only the
    attribute: nn.RMSNorm / nn.LayerNorm read ``eps`` at each call)."""
    model = _build("depalm", norm_eps="format-1")
    rms = model.mapper.norm
    ln = model.mapper.pooler.layers[0].norm1
    x = torch.randn(2, 3, rms.normalized_shape[0]) * 1e-3
    with torch.no_grad():
        expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * rms.weight
        torch.testing.assert_close(rms(x), expected, rtol=1e-5, atol=1e-7)
        y = torch.randn(2, 3, ln.normalized_shape[0]) * 1e-3
        mu, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
        torch.testing.assert_close(ln(y), (y - mu) / torch.sqrt(var + 1e-5) * ln.weight + ln.bias, rtol=1e-5, atol=1e-6)


def test_a_format_1_stored_config_gets_the_old_eps_and_today_s_stays_official():
    stored = {"model": {"method": "depalm", "llm": "tiny-llama", "encoder": "tiny-vit"}}  # format 1: no learned_positions
    upgraded = upgrade_format(stored)
    assert upgraded["model"]["norm_eps"] == "format-1"
    today = {"config_format": upgraded["config_format"], "model": dict(stored["model"])}
    assert "norm_eps" not in upgrade_format(today)["model"]  # a current config keeps the default


def test_an_unknown_choice_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"model.norm_eps must be one of \['format-1', 'official'\].*'format1'"):
        model_config(method="depalm", norm_eps="format1")
