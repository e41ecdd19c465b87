"""The DePALM mapping blocks against references written from the official code's description.

Each reference below is our own code, written from the structure of the official modules
(facebookresearch/DePALM @ d532fe1: ``depalm/models/adapters/resamplers.py``, ``common.py``,
``prefix_tokens.py``; see docs/fidelity.md "Mapping blocks"). The official code is not part of the
project. Small widths, the same weights copied in, fp32, tolerance 1e-5.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scaling.config.base import ConfigError
from scaling.models.injection import GatedCrossAttention
from scaling.models.mapping import BlockResampler, CrossAttentionResampler, RandomTokenMapper

TOL = dict(rtol=1e-5, atol=1e-5)
OFFICIAL_NORM_EPS = 1e-4  # get_norm_layer's default in the official code


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def torch_encoder_layer(ours, activation):
    """A PyTorch ``nn.TransformerEncoderLayer`` (what the official code builds: post-norm, batch-first, FFN width = d)
    holding the weights of our ``TransformerLayer``."""
    d = ours.norm1.normalized_shape[0]
    ref = nn.TransformerEncoderLayer(d, ours.attn.n_heads, dim_feedforward=ours.ffn[0].out_features, dropout=0.0,
                                     activation=activation, layer_norm_eps=ours.norm1.eps, batch_first=True, norm_first=False)
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.attn.in_proj.weight)
        ref.self_attn.in_proj_bias.copy_(ours.attn.in_proj.bias)
        ref.self_attn.out_proj.weight.copy_(ours.attn.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(ours.attn.out_proj.bias)
        ref.linear1.load_state_dict(ours.ffn[0].state_dict())
        ref.linear2.load_state_dict(ours.ffn[3].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    return ref.eval()


def official_blocks(patches, grid, r=2):
    """Official TokensResampler grouping of a 2-D grid: ``[B, g1·g2, d]`` → ``[B·n_blocks, r·r, d]``
    (reshape ``[B, g1/r, r, g2/r, r, d]``, swap the two middle axes, blocks row-major, tokens row-major inside)."""
    b, _, d = patches.shape
    g1, g2 = grid
    x = patches.reshape(b, g1 // r, r, g2 // r, r, d).transpose(2, 3).reshape(b, g1 * g2 // (r * r), r * r, d)
    return x.reshape(-1, r * r, d)


# ---------------------------------------------------------------- R-avgpool


def test_r_avgpool_default_is_the_official_channel_pooling():
    torch.manual_seed(0)
    grid, d_in, d_emb, d_out = (4, 6), 12, 16, 20
    m = BlockResampler(d_in, d_out, grid, (2, 2), has_cls=True, pool="avgpool", d_embed=d_emb).eval()
    assert m.avgpool == "channels"
    x = torch.randn(3, 1, 1 + 24, d_in)
    # official: Linear(d_feats → d_emb), AvgPool1d(4) on [blocks, 4 tokens, d_emb] (pools the last axis: channels),
    # reshape to [B, n_blocks, d_emb] (the block's 4 pooled tokens concatenated), CLS first, RMSNorm, Linear
    h = m.proj_in(x[:, 0])
    blocks = official_blocks(h[:, 1:], grid)  # [B·6, 4, 16]
    pooled = nn.AvgPool1d(4)(blocks).reshape(3, -1, d_emb)  # [B, 6, 16]
    tokens = torch.cat([h[:, :1], pooled], dim=1)
    expected = m.proj_out(rms_norm(tokens, m.norm.weight, m.norm.eps))
    with torch.no_grad():
        torch.testing.assert_close(m(x)[:, 0], expected, **TOL)
        # it is not the mean of the block's tokens (the paper's text), which stays available as avgpool=tokens
        text = BlockResampler(d_in, d_out, grid, (2, 2), pool="avgpool", d_embed=d_emb, avgpool="tokens").eval()
        text.load_state_dict(m.state_dict())
        mean = torch.cat([h[:, :1], blocks.mean(1).reshape(3, -1, d_emb)], dim=1)
        torch.testing.assert_close(text(x)[:, 0], m.proj_out(rms_norm(mean, m.norm.weight, m.norm.eps)), **TOL)
        assert not torch.allclose(text(x), m(x), atol=1e-3)


def test_r_avgpool_channels_needs_a_width_divisible_by_the_block():
    with pytest.raises(ConfigError, match="avgpool=tokens"):
        BlockResampler(8, 8, (4, 4), (2, 2), pool="avgpool", d_embed=10)
    with pytest.raises(ConfigError, match="channels"):
        BlockResampler(8, 8, (4, 4), (2, 2), pool="avgpool", avgpool="mean")
    BlockResampler(8, 8, (4, 4), (2, 2), pool="avgpool", d_embed=10, avgpool="tokens")  # the text's mean has no constraint


# ---------------------------------------------------------------- R-QPMapper


@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_r_qpmapper_matches_torch_encoder_layers_with_the_official_activation(activation):
    torch.manual_seed(0)
    grid, d_in, d_emb, d_out = (4, 4), 12, 16, 24
    m = BlockResampler(d_in, d_out, grid, (2, 2), pool="qpmapper", d_embed=d_emb, qp_layers=3, n_heads=4,
                       dropout=0.1, qp_activation=activation).eval()
    x = torch.randn(2, 1, 17, d_in)
    # official: Linear(d_feats → 768), per block TransformerFeatureExtractor (tokens + 1 learned query, n layers of
    # nn.TransformerEncoderLayer with get_activation(adapter.activation) — null → Identity — keep the query),
    # CLS first, RMSNorm, Linear(768 → d_LLM)
    act = nn.Identity() if activation == "none" else nn.GELU()
    layers = [torch_encoder_layer(layer, act) for layer in m.pool.layers]
    with torch.no_grad():
        h = m.proj_in(x[:, 0])
        blocks = official_blocks(h[:, 1:], grid)  # [B·4, 4, d_emb]
        seq = torch.cat([blocks, m.pool.queries.expand(blocks.shape[0], -1, -1)], dim=1)
        for layer in layers:
            seq = layer(seq)
        pooled = seq[:, -1:].reshape(2, -1, d_emb)
        expected = m.proj_out(rms_norm(torch.cat([h[:, :1], pooled], dim=1), m.norm.weight, m.norm.eps))
        torch.testing.assert_close(m(x)[:, 0], expected, **TOL)
    assert isinstance(m.pool.layers[0].ffn[1], nn.Identity if activation == "none" else nn.GELU)


def test_r_qpmapper_default_ffn_has_no_activation():
    m = BlockResampler(8, 8, (4, 4), (2, 2), pool="qpmapper", d_embed=16, qp_layers=2)
    assert all(isinstance(layer.ffn[1], nn.Identity) for layer in m.pool.layers)
    with pytest.raises(ConfigError, match="valid"):
        BlockResampler(8, 8, (4, 4), (2, 2), pool="qpmapper", d_embed=16, qp_activation="relu6")


# ---------------------------------------------------------------- R-rand


def _rand_reference(m, kept):
    """Official: kept tokens (CLS first) → RMSNorm(d_feats) → Linear(d_feats → d_LLM)."""
    return F.linear(rms_norm(kept, m.norm.weight, OFFICIAL_NORM_EPS), m.proj_out.weight, m.proj_out.bias)


def test_r_rand_evaluation_keeps_every_token_through_rmsnorm_and_one_linear():
    torch.manual_seed(0)
    m = RandomTokenMapper(12, 20).eval()
    assert isinstance(m.proj_in, nn.Identity) and m.norm.normalized_shape == (12,) and m.norm.eps == OFFICIAL_NORM_EPS
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 1, 1 + 16, 12)
    with torch.no_grad():
        out = m(x)
        assert out.shape == (3, 1, 17, 20)  # eval_full: CLS + all 16 patch tokens
        torch.testing.assert_close(out[:, 0], _rand_reference(m, x[:, 0]), **TOL)


def test_r_rand_training_keeps_round_f_n_tokens_one_subset_for_the_batch():
    torch.manual_seed(0)
    n, b = 16, 4
    m = RandomTokenMapper(12, 20).train()
    # token t of sample s carries (s, t) in its first two channels, so the kept positions can be read back
    x = torch.randn(b, 1, 1 + n, 12)
    x[..., 0] = torch.arange(b, dtype=torch.float)[:, None, None]
    x[..., 1] = torch.arange(1 + n, dtype=torch.float)
    counts = set()
    for _ in range(30):
        state = torch.get_rng_state()
        with torch.no_grad():
            out = m(x)
        torch.set_rng_state(state)
        kept = m.select(x[:, 0])  # the same draw as the forward above
        f = m.last_fraction
        assert 1 / 16 <= f <= 1 / 2
        k = min(n, max(1, round(f * n)))
        assert out.shape == (b, 1, 1 + k, 20) and kept.shape[1] == 1 + k
        pos = kept[..., 1]
        assert torch.equal(pos[:, 0], torch.zeros(b))  # CLS first
        assert torch.equal(pos, pos[:1].expand(b, -1))  # one subset for the whole batch
        assert bool((pos[0, 1:].diff() > 0).all())  # order preserved, no repeats
        assert torch.equal(kept[..., 0], x[:, 0, : 1 + k, 0])  # each row still holds its own sample
        with torch.no_grad():
            torch.testing.assert_close(out[:, 0], _rand_reference(m, kept), **TOL)
        counts.add(k)
    assert len(counts) > 2  # f really varies between steps


def test_r_rand_rounding_and_text_options():
    m = RandomTokenMapper(8, 8)
    assert m.n_keep(0.3, 16) == 5 and m.n_keep(0.25 * 10 / 16, 16) == 2 and m.n_keep(0.01, 16) == 1  # round (half to even)
    assert RandomTokenMapper(8, 8, rounding="floor").n_keep(0.3, 16) == 4  # the text's floor
    x = torch.randn(2, 1, 17, 8)
    text = RandomTokenMapper(8, 8, eval_full=False, proj_in=True).eval()
    assert text(x).shape == (2, 1, 1 + 8, 8)  # f_max = 1/2 of the patch tokens at evaluation
    assert isinstance(text.proj_in, nn.Linear) and text.norm.normalized_shape == (8,)
    with pytest.raises(ConfigError, match="rounding"):
        RandomTokenMapper(8, 8, rounding="ceil")


# ---------------------------------------------------------------- c-attn


def test_c_attn_perceptual_side_is_linear_transformer_layer_linear():
    torch.manual_seed(0)
    m = CrossAttentionResampler(12, 99, d_embed=16, n_heads=4, dropout=0.1).eval()
    ref_layer = torch_encoder_layer(m.layer, nn.GELU())
    x = torch.randn(2, 3, 7, 12)
    with torch.no_grad():
        expected = m.proj_out(ref_layer(m.proj_in(x.flatten(0, 1)))).unflatten(0, (2, 3))
        torch.testing.assert_close(m(x), expected, **TOL)
    assert isinstance(m.proj_out, nn.Linear) and m.proj_out.in_features == m.proj_out.out_features == 16
    assert isinstance(CrossAttentionResampler(12, 99, d_embed=16, proj_out=False).proj_out, nn.Identity)


def _c_attn_reference(blk, x, f, n_heads, text_version=False):
    """Official CrossAttentionFeatExtractor (heads split per token), or the paper text's block."""
    e = blk.text_ffn[2].out_features
    w_q, w_k, w_v = blk.attn.in_proj.weight.split(e)
    b_q, b_k, b_v = blk.attn.in_proj.bias.split(e)
    h = blk.text_ffn[2](F.gelu(blk.text_ffn[0](x)))
    h = rms_norm(h, blk.text_norm.weight, OFFICIAL_NORM_EPS)
    q, k, v = F.linear(h, w_q, b_q), F.linear(f, w_k, b_k), F.linear(f, w_v, b_v)
    heads = lambda t: t.unflatten(-1, (n_heads, -1)).transpose(1, 2)  # noqa: E731
    att = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(e // n_heads), dim=-1) @ heads(v)
    a = att.transpose(1, 2).flatten(2)  # [B, T, e], no output projection
    if text_version:
        a = blk.attn.out_proj(a)
        x_r = rms_norm(blk.proj_out(a), blk.out_norm.weight, OFFICIAL_NORM_EPS)
    else:
        x_r = blk.proj_out(rms_norm(a, blk.out_norm.weight, OFFICIAL_NORM_EPS))
    return x + torch.tanh(blk.gate) * x_r


@pytest.mark.parametrize("text_version", [False, True])
def test_c_attn_text_side_matches_the_reference(text_version):
    torch.manual_seed(0)
    opts = dict(attn_out_proj=True, out_norm="llm") if text_version else {}
    blk = GatedCrossAttention(24, d_embed=16, n_heads=4, **opts).eval()
    with torch.no_grad():
        blk.gate.fill_(0.7)
        blk.text_norm.weight.uniform_(0.5, 1.5)
        blk.out_norm.weight.uniform_(0.5, 1.5)
    x, f = torch.randn(2, 5, 24), torch.randn(2, 9, 16)
    with torch.no_grad():
        torch.testing.assert_close(blk(x, f), _c_attn_reference(blk, x, f, 4, text_version), **TOL)
    if not text_version:
        assert isinstance(blk.attn.out_proj, nn.Identity) and blk.out_norm.normalized_shape == (16,)
        assert blk.attn.dropout == 0.0  # the official training runs this attention without dropout


def test_c_attn_block_is_causal():
    """The official code's second head reshape mixes positions (a text token's query comes from other,
    later tokens; docs/fidelity.md): we leave that bug out, so each output row depends on its own token only."""
    torch.manual_seed(0)
    blk = GatedCrossAttention(24, d_embed=16, n_heads=4).eval()
    with torch.no_grad():
        blk.gate.fill_(0.7)
        x, f = torch.randn(2, 5, 24), torch.randn(2, 9, 16)
        y = x.clone()
        y[:, -1] += 1.0
        torch.testing.assert_close(blk(y, f)[:, :-1], blk(x, f)[:, :-1], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="out_norm"):
        GatedCrossAttention(24, d_embed=16, out_norm="text")
