"""Blocks of issue 14 against references written from the official code's description (DePALM d532fe1,
eP-ALM 9ecfeb9), at small widths, with the same weights, to 1e-5 in fp32. The references are our own
code: torch's stock modules arranged as the official files describe them."""

import pytest
import torch
from torch import nn

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.finetune import PromptTuning
from scaling.models.injection import InnerLayerInjection, TokenTuner
from scaling.models.mapping import QPMapper
from scaling.models.tiny import tiny_media


class _OfficialQPMapper(nn.Module):
    """DePALM's QPMapper connector (prefix_tokens.py ``_build_connector`` + common.py
    ``TransformerFeatureExtractor``): Linear(d_in, d_embed) → append the learned queries →
    ``nn.TransformerEncoderLayer(d_embed, heads, dim_feedforward=d_embed, GELU, layer_norm_eps=1e-4,
    batch_first, post-norm)`` × n → the query outputs → Linear(d_embed, d_out). No norm after it
    (``token_norm: false`` with insert_l0.yaml; QP-inner normalises per layer instead)."""

    def __init__(self, d_in, d_out, d_embed, n_layers, n_queries, n_heads):
        super().__init__()
        self.proj_in = nn.Linear(d_in, d_embed)
        self.query_tokens = nn.Parameter(torch.randn(1, n_queries, d_embed))
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(d_embed, n_heads, dim_feedforward=d_embed, dropout=0.1, activation=nn.GELU(),
                                       layer_norm_eps=1e-4, batch_first=True, norm_first=False)
            for _ in range(n_layers)])
        self.proj_out = nn.Linear(d_embed, d_out)

    def forward(self, x):  # [B, N, d_in] -> [B, n_queries, d_out]
        h = self.proj_in(x)
        h = torch.cat([h, self.query_tokens.repeat(h.shape[0], 1, 1)], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.proj_out(h[:, -self.query_tokens.shape[1]:])


def _copy_qpmapper(ours: QPMapper, ref: _OfficialQPMapper) -> None:
    with torch.no_grad():
        ref.proj_in.load_state_dict(ours.proj_in.state_dict())
        ref.proj_out.load_state_dict(ours.proj_out.state_dict())
        ref.query_tokens.copy_(ours.pooler.queries[None])
        for layer, block in zip(ours.pooler.layers, ref.blocks):
            block.self_attn.in_proj_weight.copy_(layer.attn.in_proj.weight)
            block.self_attn.in_proj_bias.copy_(layer.attn.in_proj.bias)
            block.self_attn.out_proj.load_state_dict(layer.attn.out_proj.state_dict())
            block.linear1.load_state_dict(layer.ffn[0].state_dict())
            block.linear2.load_state_dict(layer.ffn[3].state_dict())
            block.norm1.load_state_dict(layer.norm1.state_dict())
            block.norm2.load_state_dict(layer.norm2.state_dict())


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_depalm_qpmapper_equals_the_official_connector(scale):
    """The ``depalm`` preset's mapper (no output RMSNorm, LayerNorm eps 1e-4). At scale 1e-3 the
    activations' variance is ~1e-6, where eps 1e-4 vs 1e-6 changes the output by far more than 1e-5."""
    torch.manual_seed(0)
    map_args = dict(model_config(method="depalm").map)
    map_args.pop("name")
    map_args.update(d_embed=16, n_queries=5, n_heads=4)
    ours = QPMapper(12, 24, **map_args).eval()
    assert isinstance(ours.norm, nn.Identity)
    ref = _OfficialQPMapper(12, 24, 16, map_args["n_layers"], 5, 4).eval()
    _copy_qpmapper(ours, ref)
    with torch.no_grad():
        ref.proj_in.weight.mul_(scale)
        ref.proj_in.bias.mul_(scale)
        ours.proj_in.weight.mul_(scale)
        ours.proj_in.bias.mul_(scale)
        ours.pooler.queries.mul_(scale)
        ref.query_tokens.mul_(scale)
    x = torch.randn(3, 2, 9, 12)  # [B, levels, tokens, d_in]
    with torch.no_grad():
        out = ours(x)
        expected = ref(x.flatten(0, 1)).unflatten(0, (3, 2))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def _official_token_norm_and_bias_tuner(x, norm_weight, scale, bias):
    """prefix_tokens.py ``ABCPrefixTokensOnLayer``: ``adapter_norm_layer`` = get_norm_layer('rms_norm',
    eps=1e-4) (LlamaRMSNorm: x · rsqrt(mean(x²) + eps) · w), then ``BiasTuner``: x · scale + bias."""
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-4) * norm_weight
    return normed * scale + bias


def test_qp_inner_gives_each_injected_layer_its_own_rmsnorm_and_bias_tuner(backbones):
    cfg = model_config(method="depalm-qp-inner", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                       extract={"n_levels": 2}, inject={"n_llm_layers": 3, "n_left": 0}, map={"d_embed": 32},
                       finetune={"n_prompt": 2})
    model = build_model(cfg).eval()
    inj = model.injection
    assert isinstance(inj, InnerLayerInjection) and len(inj.tuners) == 3
    with torch.no_grad():  # distinct weights per layer, so a shared or misrouted tuner would show
        for t in inj.tuners:
            t.norm.weight.normal_()
            t.scale.normal_()
            t.bias.normal_()
    seen = {}
    handles = [layer.register_forward_pre_hook(lambda m, a, k, i=i: seen.__setitem__(i, (a[0] if a else k["hidden_states"]).detach()), with_kwargs=True)
               for i, layer in enumerate(model.layout.layers)]
    media = tiny_media("vit")
    ids = torch.randint(5, 90, (2, 5))
    with torch.no_grad():
        model(input_ids=ids, **media)
        mapped = model.encode(**media)
    for h in handles:
        h.remove()
    n = mapped.shape[2]
    for k, (layer, level) in enumerate(sorted(model.plan.items())):
        t = inj.tuners[k]
        expected = _official_token_norm_and_bias_tuner(mapped[:, level], t.norm.weight, t.scale, t.bias)
        torch.testing.assert_close(seen[layer][:, :n], expected, atol=1e-5, rtol=0)
    # parameters: RMSNorm weight + scale + bias per injected layer, nothing else in the injection
    d = model.layout.hidden_size
    assert sum(p.numel() for p in inj.parameters()) == 3 * 3 * d
    # the text's version: one RMSNorm after the shared QPMapper, no per-layer tuners
    text = model_config(method="depalm-qp-inner", map={"norm": "rmsnorm"}, inject={"token_norm": False, "bias_tuning": False})
    assert text.map["norm"] == "rmsnorm" and not text.inject["token_norm"]


def test_token_tuner_starts_as_a_plain_rmsnorm():
    t = TokenTuner(8)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(t(x), _official_token_norm_and_bias_tuner(x, torch.ones(8), torch.ones(8), torch.zeros(8)),
                               atol=1e-6, rtol=0)


def test_epalm_prompt_mlp_equals_input_prompts(backbones):
    """eP-ALM models/epalm.py ``InputPrompts``: Embedding(n, d) → Linear(d, d) → Tanh → Linear(d, d)
    (``mid_dim=prompt_dim``), applied to the prompt ids 0..n-1."""
    model = build_model(model_config(method="epalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                                     extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1})).eval()
    prompt = model.prompt
    d = model.layout.hidden_size
    assert isinstance(prompt, PromptTuning) and prompt.mlp[0].out_features == d  # hidden width d, not d/4
    n = prompt.tokens.shape[0]
    ref = nn.Sequential(nn.Embedding(n, d), nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
    with torch.no_grad():
        ref[0].weight.copy_(prompt.tokens)
        ref[1].load_state_dict(prompt.mlp[0].state_dict())
        ref[3].load_state_dict(prompt.mlp[2].state_dict())
        torch.testing.assert_close(prompt(), ref(torch.arange(n)), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in prompt.parameters()) == n * d + 2 * (d * d + d)
    # the embedding starts as nn.Embedding does (N(0, 1)), not as a small prompt-tuning init
    assert 0.5 < prompt.tokens.std().item() < 2.0
    text = build_model(model_config(method="epalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                                    extract={"n_levels": 2}, inject={"n_llm_layers": 2, "n_left": 1},
                                    finetune={"prompt_mlp_hidden": d // 4}), meta=True)
    assert text.prompt.mlp[0].out_features == d // 4
