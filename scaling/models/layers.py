"""Small transformer pieces shared by the mapping and injection blocks.

``TransformerLayer`` is a standard post-norm transformer encoder layer (the QPMapper's, as
``nn.TransformerEncoderLayer`` with GELU, the same parameters) whose attention goes through
:func:`scaling.models.ops.attention` (Triton flash attention on GPU), and which can compute only the
last ``n`` rows (the query tokens) in the QPMapper's last layer. Its feed-forward activation is
``gelu`` or ``none`` (the official DePALM R-QPMapper runs its FFN with no activation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config.base import ConfigError, suggest
from scaling.config.blocks import NORM_EPS as NORM_EPS_CHOICES
from scaling.models import ops

# feed-forward activations of TransformerLayer: id -> module factory
ACTIVATIONS = {"gelu": nn.GELU, "none": nn.Identity}


def make_activation(name: str) -> nn.Module:
    """The activation module ``name`` (``ACTIVATIONS``); an unknown name is a ConfigError listing the valid ones."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}{suggest(name, ACTIVATIONS)}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# LayerNorm / RMSNorm epsilon the mapping and injection blocks are built with: the official DePALM get_norm_layer
# (depalm/utils/utility.py) and its QPMapper's nn.TransformerEncoderLayer(layer_norm_eps=1e-4); another
# model.norm_eps is set on the built blocks by set_norm_eps
NORM_EPS = NORM_EPS_CHOICES["official"]["rmsnorm"]
# the norm classes set_norm_eps sets, by their key in a NORM_EPS_CHOICES entry
_NORM_KINDS = ((nn.RMSNorm, "rmsnorm"), (nn.LayerNorm, "layernorm"))


def set_norm_eps(block: nn.Module, choice: str) -> int:
    """Set the epsilon of every RMSNorm and LayerNorm inside ``block`` (a map or inject block) to the values of
    ``model.norm_eps`` ``choice`` (``scaling.config.blocks.NORM_EPS``); returns how many norms were set."""
    if choice not in NORM_EPS_CHOICES:
        raise ConfigError(f"model.norm_eps must be one of {sorted(NORM_EPS_CHOICES)}, got {choice!r}"
                          f"{suggest(choice, NORM_EPS_CHOICES)}")
    values, count = NORM_EPS_CHOICES[choice], 0
    for module in block.modules():
        for cls, kind in _NORM_KINDS:
            if isinstance(module, cls):
                module.eps = values[kind]
                count += 1
    return count


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a packed input projection (as ``nn.MultiheadAttention``).

    ``out_proj=False`` leaves out the output projection: the heads' outputs are concatenated and
    returned as they are (the official DePALM c-attn cross-attention)."""

    kernel_mode = "torch"

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, out_proj: bool = True):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"attention width {dim} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim) if out_proj else nn.Identity()
        self.dropout = dropout

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x_q ``[B, Nq, dim]``, x_kv ``[B, Nk, dim]`` → ``[B, Nq, dim]``; ``key_mask`` ``[B, Nk]`` bool
        (False: a padded key no query attends to; SDPA path)."""
        dim = x_q.shape[-1]
        w_q, w_kv = self.in_proj.weight.split([dim, 2 * dim])
        b_q, b_kv = self.in_proj.bias.split([dim, 2 * dim])
        q = F.linear(x_q, w_q, b_q)
        k, v = F.linear(x_kv, w_kv, b_kv).chunk(2, dim=-1)
        heads = lambda t: t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)  # noqa: E731
        if key_mask is not None:
            out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=key_mask[:, None, None, :],
                                                 dropout_p=self.dropout if self.training else 0.0)
        elif self.training and self.dropout > 0:
            out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), dropout_p=self.dropout)
        else:
            out = ops.attention(heads(q), heads(k), heads(v), mode=self.kernel_mode)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TransformerLayer(nn.Module):
    """Post-norm transformer encoder layer: LN(x + Attn(x)), then LN(h + FFN(h)); GELU (or no
    activation: ``activation="none"``); dropout."""

    def __init__(self, dim: int, n_heads: int = 8, ffn_dim: int | None = None, dropout: float = 0.1, activation: str = "gelu"):
        super().__init__()
        ffn_dim = ffn_dim or dim
        self.attn = MultiHeadAttention(dim, n_heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        act = make_activation(activation)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), act, nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, last_rows: int | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[B, N, dim]`` → ``[B, N, dim]``, or ``[B, last_rows, dim]`` (only those rows computed);
        ``key_mask`` ``[B, N]`` bool: tokens no row attends to (padding)."""
        rows = x[:, -last_rows:] if last_rows else x
        h = self.norm1(rows + self.drop(self.attn(rows, x, key_mask)))
        return self.norm2(h + self.drop(self.ffn(h)))


class QueryPooler(nn.Module):
    """Learned query tokens appended to the input, ``n_layers`` transformer layers, query outputs kept."""

    def __init__(self, dim: int, n_layers: int, n_queries: int, n_heads: int = 8, ffn_dim: int | None = None, dropout: float = 0.1,
                 activation: str = "gelu"):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.layers = nn.ModuleList(TransformerLayer(dim, n_heads, ffn_dim, dropout, activation) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[B, N, dim]`` → ``[B, n_queries, dim]``; ``valid`` ``[B, N]`` bool: False marks padding
        that no token attends to (in every layer)."""
        n_q = self.queries.shape[0]
        h = torch.cat([x, self.queries.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        key_mask = None
        if valid is not None:
            key_mask = torch.cat([valid, valid.new_ones(x.shape[0], n_q)], dim=1)
        for i, layer in enumerate(self.layers):
            h = layer(h, last_rows=n_q if i == len(self.layers) - 1 else None, key_mask=key_mask)
        return h[:, -n_q:]
