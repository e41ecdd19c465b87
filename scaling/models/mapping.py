"""Block 2, *map*: turn extracted encoder tokens into tokens the LLM can read.

Every mapper takes ``[batch, n_levels, n_tokens, d_in]`` and returns
``[batch, n_levels, n_out, d_out]``. Unless a mapper is per-level, the same weights map every level
(levels are folded into the batch). Mappers take flat arguments; :func:`build_mapper` builds one
from its registry id and keyword arguments (the ``map`` section of a method).

Registry (``MAPPERS``): ``linear``, ``mlp``, ``qpmapper``, ``resampler`` (block resamplers:
avgpool / linear / qpmapper pooling on the 1-D/2-D/3-D token grid), ``rand`` (R-rand) and
``xattn-resampler`` (the perceptual side of DePALM^c-attn).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config.base import ConfigError, suggest
from scaling.config.blocks import check_mapper_args
from scaling.models.layers import NORM_EPS, QueryPooler, TransformerLayer


class _LevelWise(nn.Module):
    """Applies ``make()``-built modules to each level: one shared module, or one per level."""

    def __init__(self, make, n_levels: int, per_level: bool):
        super().__init__()
        self.per_level = per_level
        self.nets = nn.ModuleList(make() for _ in range(n_levels if per_level else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, L, N, d_in]`` → ``[B, L, N', d_out]``."""
        if self.per_level:
            return torch.stack([net(x[:, i]) for i, net in enumerate(self.nets)], dim=1)
        b, l = x.shape[:2]
        return self.nets[0](x.flatten(0, 1)).unflatten(0, (b, l))


class LinearMapper(_LevelWise):
    """LiMBeR / eP-ALM: one linear projection per token (shared across levels, or one per level)."""

    def __init__(self, d_in: int, d_out: int, n_levels: int = 1, per_level: bool = False):
        super().__init__(lambda: nn.Linear(d_in, d_out), n_levels, per_level)


class MLPMapper(_LevelWise):
    """MLP_2: Linear(d_in → hidden) → GELU → Linear(hidden → d_out), per token."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 256, n_levels: int = 1, per_level: bool = False):
        super().__init__(
            lambda: nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out)), n_levels, per_level
        )


class QPMapper(nn.Module):
    """Query-pooling mapper (MAPL, DePALM): down-projection, query pooler, up-projection, RMSNorm.

    ``[B*, N, d_in]`` → ``[B*, n_queries, d_out]``; ``forward`` takes levels ``[B, L, N, d_in]``.
    """

    def __init__(
        self, d_in: int, d_out: int, d_embed: int = 1024, n_layers: int = 2, n_queries: int = 32,
        n_heads: int = 8, dropout: float = 0.1, ffn_dim: int | None = None, norm: str = "rmsnorm",
    ):
        super().__init__()
        if norm not in ("rmsnorm", "none"):
            raise ConfigError(f"qpmapper norm must be 'rmsnorm' or 'none', got {norm!r}")
        self.proj_in = nn.Linear(d_in, d_embed)
        self.pooler = QueryPooler(d_embed, n_layers, n_queries, n_heads, ffn_dim or d_embed, dropout)
        self.proj_out = nn.Linear(d_embed, d_out)
        self.norm = nn.RMSNorm(d_out, eps=NORM_EPS) if norm == "rmsnorm" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, L, N, d_in]`` → ``[B, L, n_queries, d_out]``."""
        b, l = x.shape[:2]
        h = self.pooler(self.proj_in(x.flatten(0, 1)))
        return self.norm(self.proj_out(h)).unflatten(0, (b, l))


class BlockResampler(nn.Module):
    """DePALM^{R-*}: project, pool blocks of 4 tokens on the token grid, prepend CLS, RMSNorm, project.

    pool: ``avgpool``, ``linear`` (concatenate the block, one linear layer: a strided convolution),
    ``qpmapper`` (a QPMapper with one query over the block's tokens, shared across blocks).

    ``avgpool="channels"`` (default, the official code: ``nn.AvgPool1d(4)`` applied to a block
    ``[4 tokens, d]`` averages groups of 4 adjacent channels inside each token, and the block's token
    is the concatenation of its 4 tokens' results, in grid order); ``avgpool="tokens"``: the mean of
    the block's tokens (the paper's text). ``qp_activation`` is the R-QPMapper's feed-forward
    activation: ``none`` (default, the official ``adapter.activation: null``) or ``gelu``.

    Grids whose sides are not multiples of the block are padded: tokens-avgpool averages only the
    real tokens, qpmapper's attention masks the padding out; linear and channels-avgpool see zeros.
    """

    def __init__(
        self, d_in: int, d_out: int, grid: tuple[int, ...], block: tuple[int, ...], has_cls: bool = True,
        pool: str = "avgpool", d_embed: int | None = None, qp_layers: int = 4, n_heads: int = 8, dropout: float = 0.1,
        avgpool: str = "channels", qp_activation: str = "none",
    ):
        super().__init__()
        if pool not in ("avgpool", "linear", "qpmapper"):
            raise ConfigError(f"resampler pool must be one of ['avgpool', 'linear', 'qpmapper'], got {pool!r}{suggest(pool, ['avgpool', 'linear', 'qpmapper'])}")
        if avgpool not in ("channels", "tokens"):
            raise ConfigError(f"resampler avgpool must be 'channels' (the official code) or 'tokens' (the paper's text), got {avgpool!r}")
        if len(grid) != len(block):
            raise ConfigError(f"resampler block {block} does not match the token grid {grid}")
        d_embed = d_embed or d_out
        self.grid, self.block, self.has_cls, self.pool_kind, self.avgpool = tuple(grid), tuple(block), has_cls, pool, avgpool
        self.block_size = math.prod(block)
        if pool == "avgpool" and avgpool == "channels" and d_embed % self.block_size:
            raise ConfigError(
                f"channel average pooling splits each token's {d_embed} channels into groups of {self.block_size}: "
                f"set model.map.d_embed to a multiple of {self.block_size}, or model.map.avgpool=tokens")
        self.proj_in = nn.Linear(d_in, d_embed)
        if pool == "linear":
            self.pool = nn.Linear(self.block_size * d_embed, d_embed)
        elif pool == "qpmapper":
            self.pool = QueryPooler(d_embed, qp_layers, 1, n_heads, d_embed, dropout, activation=qp_activation)
        self.norm = nn.RMSNorm(d_embed, eps=NORM_EPS)
        self.proj_out = nn.Linear(d_embed, d_out)

    @property
    def n_out(self) -> int:
        return math.prod(math.ceil(g / b) for g, b in zip(self.grid, self.block)) + int(self.has_cls)

    def _blocks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, n_patches, d]`` → (blocks ``[B, n_blocks, block_size, d]``, valid ``[n_blocks, block_size]``)."""
        b, n, d = x.shape
        if n != math.prod(self.grid):
            raise ValueError(f"resampler expected {math.prod(self.grid)} patch tokens (grid {self.grid}), got {n}")
        padded = [math.ceil(g / k) * k for g, k in zip(self.grid, self.block)]
        x = x.reshape(b, *self.grid, d)
        valid = torch.ones(*self.grid, device=x.device, dtype=torch.bool)
        pad: list[int] = []
        for g, p in reversed(list(zip(self.grid, padded))):
            pad += [0, p - g]
        if any(pad):
            x = F.pad(x, [0, 0] + pad)
            valid = F.pad(valid, pad)
        # [B, g1/k1, k1, g2/k2, k2, ..., d] -> [B, n_blocks, block_size, d]
        shape = [b]
        for p, k in zip(padded, self.block):
            shape += [p // k, k]
        x = x.reshape(*shape, d)
        nd = len(self.grid)
        perm = [0] + [1 + 2 * i for i in range(nd)] + [2 + 2 * i for i in range(nd)] + [1 + 2 * nd]
        x = x.permute(*perm).reshape(b, -1, self.block_size, d)
        vshape = []
        for p, k in zip(padded, self.block):
            vshape += [p // k, k]
        valid = valid.reshape(*vshape).permute(*[2 * i for i in range(nd)], *[2 * i + 1 for i in range(nd)]).reshape(-1, self.block_size)
        return x, valid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, L, (1 if CLS) + n_patches, d_in]`` → ``[B, L, n_out, d_out]``."""
        b, l = x.shape[:2]
        h = self.proj_in(x.flatten(0, 1))
        cls, patches = (h[:, :1], h[:, 1:]) if self.has_cls else (h[:, :0], h)
        blocks, valid = self._blocks(patches)
        if self.pool_kind == "avgpool" and self.avgpool == "channels":
            # [B*, n_blocks, k tokens, d] -> mean over k adjacent channels -> [B*, n_blocks, k, d/k] -> concat the k tokens
            k = self.block_size
            pooled = blocks.unflatten(-1, (-1, k)).mean(-1).flatten(2)
        elif self.pool_kind == "avgpool":
            w = valid.to(blocks.dtype)
            pooled = (blocks * w[None, :, :, None]).sum(2) / w.sum(1)[None, :, None]
        elif self.pool_kind == "linear":
            pooled = self.pool(blocks.flatten(2))
        else:
            nb = blocks.shape[1]
            padded = any(g % k for g, k in zip(self.grid, self.block))  # (from the shapes: no device sync)
            mask = valid.expand(b * l, -1, -1).flatten(0, 1) if padded else None  # padded grid sides
            pooled = self.pool(blocks.flatten(0, 1), mask).reshape(b * l, nb, -1)
        out = torch.cat([cls, pooled], dim=1)
        return self.proj_out(self.norm(out)).unflatten(0, (b, l))


def sample_keep_fraction(
    training: bool, f_min: float, f_max: float, f_mean: float, f_std: float, p_max: float, generator: torch.Generator | None = None
) -> float:
    """The DePALM R-rand fraction: f_max at evaluation; in training f_max with probability p_max,
    else f ~ N(f_mean, f_std) clipped to [f_min, f_max]."""
    if not training:
        return f_max
    if torch.rand((), generator=generator).item() < p_max:
        return f_max
    f = f_mean + f_std * torch.randn((), generator=generator).item()
    return min(max(f, f_min), f_max)


class RandomTokenMapper(nn.Module):
    """DePALM^{R-rand}: keep CLS + a random subset of the patch tokens, RMSNorm, project.

    Default (the official code, ``rand_any_patch``): kept tokens → CLS prepended → RMSNorm(d_in) →
    Linear(d_in → d_out). ``proj_in=True`` is the paper's text (Table 1's 21M): Linear(d_in → d_out)
    → RMSNorm(d_out) → Linear(d_out → d_out).

    Training keeps ``round(f · n_tk)`` patch tokens (``rounding="floor"``: the text's ⌊f · n_tk⌋; at
    least 1), f drawn by :func:`sample_keep_fraction`, one random subset (order preserved) shared by
    the whole batch. Evaluation keeps every token (``eval_full=True``, the official default); with
    ``eval_full=False`` it keeps a random subset of f_max of them, as in training with f = f_max.
    """

    def __init__(
        self, d_in: int, d_out: int, has_cls: bool = True, f_min: float = 1 / 16, f_max: float = 0.5,
        f_mean: float = 0.25, f_std: float = 0.2, p_max: float = 0.1, eval_full: bool = True,
        rounding: str = "round", proj_in: bool = False,
    ):
        super().__init__()
        if not 0 < f_min <= f_max <= 1:
            raise ConfigError(f"R-rand needs 0 < f_min <= f_max <= 1, got f_min={f_min}, f_max={f_max}")
        if rounding not in ("round", "floor"):
            raise ConfigError(f"R-rand rounding must be 'round' (the official code) or 'floor' (the paper's text), got {rounding!r}")
        self.has_cls, self.eval_full, self.rounding = has_cls, eval_full, rounding
        self.f = dict(f_min=f_min, f_max=f_max, f_mean=f_mean, f_std=f_std, p_max=p_max)
        d_norm = d_out if proj_in else d_in
        self.proj_in = nn.Linear(d_in, d_out) if proj_in else nn.Identity()
        self.norm = nn.RMSNorm(d_norm, eps=NORM_EPS)
        self.proj_out = nn.Linear(d_norm, d_out)
        self.last_fraction = 1.0 if eval_full else f_max

    def n_keep(self, f: float, n_tk: int) -> int:
        """Patch tokens kept out of ``n_tk`` for fraction ``f`` (``round`` is Python's: halves to even, as numpy's)."""
        k = round(f * n_tk) if self.rounding == "round" else math.floor(f * n_tk)
        return min(n_tk, max(k, 1))

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, (1) + n_tk, d]`` → ``[B, (1) + k, d]``; the same k kept positions for the whole batch."""
        if not self.training and self.eval_full:
            self.last_fraction = 1.0
            return x
        cls, patches = (x[:, :1], x[:, 1:]) if self.has_cls else (x[:, :0], x)
        n_tk = patches.shape[1]
        f = sample_keep_fraction(self.training, **self.f)
        self.last_fraction = f
        idx = torch.randperm(n_tk)[: self.n_keep(f, n_tk)].sort().values.to(x.device)
        return torch.cat([cls, patches[:, idx]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, L, (1) + n_tk, d_in]`` → ``[B, L, (1) + k, d_out]`` (k = n_tk at evaluation with eval_full)."""
        b, l = x.shape[:2]
        h = self.select(x.flatten(0, 1))
        return self.proj_out(self.norm(self.proj_in(h))).unflatten(0, (b, l))


class CrossAttentionResampler(nn.Module):
    """DePALM^{c-attn}, perceptual side: P_in (d_in → d_embed), one transformer layer, then (the
    official code; ``proj_out=False`` leaves it out, as the paper's text) a Linear(d_embed → d_embed).

    Output stays at ``d_embed``: the gated cross-attention injection reads it as keys/values.
    """

    def __init__(self, d_in: int, d_out: int, d_embed: int = 1024, n_heads: int = 8, dropout: float = 0.1, proj_out: bool = True):
        super().__init__()
        self.d_embed = d_embed
        self.proj_in = nn.Linear(d_in, d_embed)
        self.layer = TransformerLayer(d_embed, n_heads, d_embed, dropout)
        self.proj_out = nn.Linear(d_embed, d_embed) if proj_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, L, N, d_in]`` → ``[B, L, N, d_embed]``."""
        b, l = x.shape[:2]
        return self.proj_out(self.layer(self.proj_in(x.flatten(0, 1)))).unflatten(0, (b, l))


# id -> class; builders receive (d_in, d_out, n_levels, grid, block, has_cls) where their signature asks
MAPPERS: dict[str, type[nn.Module]] = {
    "linear": LinearMapper,
    "mlp": MLPMapper,
    "qpmapper": QPMapper,
    "resampler": BlockResampler,
    "rand": RandomTokenMapper,
    "xattn-resampler": CrossAttentionResampler,
}

_CONTEXT_ARGS = ("d_in", "d_out", "n_levels", "grid", "block", "has_cls")


def mapper_options(name: str) -> list[str]:
    """The keyword options a mapper's class accepts (``scaling.config.blocks.MAPPER_OPTIONS`` lists the same)."""
    params = inspect.signature(MAPPERS[name].__init__).parameters
    return [p for p in params if p not in ("self",) + _CONTEXT_ARGS]


def build_mapper(name: str, kwargs: dict[str, Any], *, d_in: int, d_out: int, n_levels: int, grid, block, has_cls: bool) -> nn.Module:
    """Build the mapper ``name`` from its options and the backbone context."""
    problems = check_mapper_args(name, kwargs)
    if problems:
        raise ConfigError(problems)
    cls = MAPPERS[name]
    params = inspect.signature(cls.__init__).parameters
    context = dict(d_in=d_in, d_out=d_out, n_levels=n_levels, grid=tuple(grid), block=tuple(block), has_cls=has_cls)
    return cls(**{k: v for k, v in context.items() if k in params}, **kwargs)
