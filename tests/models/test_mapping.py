"""Mapping blocks: shapes, shared vs per-level weights, query-only last layer, block pooling."""

import math

import pytest
import torch

from scaling.config.base import ConfigError
from scaling.models.layers import QueryPooler
from scaling.models.mapping import BlockResampler, LinearMapper, MLPMapper, QPMapper, build_mapper, check_mapper_args


def test_linear_shared_vs_per_level():
    x = torch.randn(2, 3, 5, 8)
    shared = LinearMapper(8, 16, n_levels=3)
    per = LinearMapper(8, 16, n_levels=3, per_level=True)
    assert shared(x).shape == per(x).shape == (2, 3, 5, 16)
    assert len(shared.nets) == 1 and len(per.nets) == 3
    assert torch.allclose(per(x)[:, 1], per.nets[1](x[:, 1]))
    assert MLPMapper(8, 16, hidden=4)(x).shape == (2, 3, 5, 16)


def test_qpmapper_last_layer_computes_only_query_rows_exactly():
    torch.manual_seed(0)
    pooler = QueryPooler(32, n_layers=2, n_queries=5, n_heads=8, dropout=0.0).eval()
    x = torch.randn(3, 11, 32)
    fast = pooler(x)
    # reference: run every layer over the whole sequence, keep the query rows at the end
    h = torch.cat([x, pooler.queries.expand(3, -1, -1)], dim=1)
    for layer in pooler.layers:
        h = layer(h)
    assert torch.allclose(fast, h[:, -5:], atol=1e-6)


def test_qpmapper_output_shape_and_rmsnorm():
    m = QPMapper(24, 40, d_embed=32, n_layers=1, n_queries=7).eval()
    out = m(torch.randn(2, 2, 9, 24))
    assert out.shape == (2, 2, 7, 40)
    rms = out.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-3)  # RMSNorm with unit weight


@pytest.mark.parametrize("grid,block", [((4, 4), (2, 2)), ((5, 3), (2, 2)), ((2, 4, 4), (1, 2, 2)), ((9,), (4,))])
def test_block_resampler_token_avgpool_is_a_masked_average(grid, block):
    """avgpool=tokens (the paper's text): the mean of a block's real tokens, on any grid."""
    torch.manual_seed(0)
    n = math.prod(grid)
    m = BlockResampler(8, 8, grid, block, has_cls=True, pool="avgpool", d_embed=8, avgpool="tokens")
    x = torch.randn(2, 1, 1 + n, 8)
    out = m(x)
    n_blocks = math.prod(math.ceil(g / b) for g, b in zip(grid, block))
    assert out.shape == (2, 1, 1 + n_blocks, 8) and m.n_out == 1 + n_blocks
    # reference for the first block: average of the projected tokens of block 0 on the grid
    h = m.proj_in(x[:, 0])
    patches = h[:, 1:].reshape(2, *grid, 8)
    sl = tuple(slice(0, b) for b in block)
    first = patches[(slice(None),) + sl].reshape(2, -1, 8).mean(1)
    expected = m.proj_out(m.norm(torch.stack([h[:, 0], first], dim=1)))
    assert torch.allclose(out[:, 0, :2], expected, atol=1e-5)


def test_block_resampler_linear_and_qpmapper_pools():
    lin = BlockResampler(8, 12, (4, 4), (2, 2), pool="linear", d_embed=8)
    assert lin(torch.randn(2, 1, 17, 8)).shape == (2, 1, 5, 12)
    qp = BlockResampler(8, 12, (4, 4), (2, 2), pool="qpmapper", d_embed=8, qp_layers=2)
    assert qp(torch.randn(2, 1, 17, 8)).shape == (2, 1, 5, 12)
    with pytest.raises(ValueError, match="patch tokens"):
        lin(torch.randn(2, 1, 10, 8))


def test_unknown_mapper_or_option_lists_valid_ones():
    assert "valid" in check_mapper_args("qpmaper", {})[0] and "qpmapper" in check_mapper_args("qpmaper", {})[0]
    with pytest.raises(ConfigError, match="n_queries"):
        build_mapper("qpmapper", {"n_query": 3}, d_in=8, d_out=8, n_levels=1, grid=(2, 2), block=(2, 2), has_cls=True)


def test_r_qpmapper_pools_a_padded_block_over_its_real_tokens_only():
    """Odd grid sides (AST's 12×101) pad blocks with zeros: the QPMapper pooling must not attend to them."""
    from scaling.models.mapping import BlockResampler

    torch.manual_seed(0)
    r = BlockResampler(8, 8, grid=(2, 3), block=(2, 2), has_cls=False, pool="qpmapper", d_embed=16, qp_layers=2,
                       n_heads=2, dropout=0.0).eval()
    x = torch.randn(2, 1, 6, 8)
    with torch.no_grad():
        out = r(x)  # [2, 1, 2 blocks, 8]
        tokens = r.proj_in(x.flatten(0, 1))  # [2, 6 patches of the 2 x 3 grid, row-major, 8]
        # 2 x 2 blocks: the first holds patches (0,0) (0,1) (1,0) (1,1); the second only (0,2) and (1,2), padded
        only_real = r.pool(tokens[:, [2, 5]])  # the second block's two real tokens alone
        expected = r.proj_out(r.norm(only_real))
        torch.testing.assert_close(out[:, 0, 1], expected[:, 0], rtol=1e-5, atol=1e-6)
        full = r.proj_out(r.norm(r.pool(tokens[:, [0, 1, 3, 4]])))  # a block without padding: unchanged path
        torch.testing.assert_close(out[:, 0, 0], full[:, 0], rtol=1e-5, atol=1e-6)
