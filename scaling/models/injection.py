"""Block 3, *inject*: where the mapped tokens enter the frozen LLM.

- ``first-layer``: the tokens are prepended to the text embeddings (then the prompt tokens, then
  the text) and propagate through every layer under the causal mask.
- ``inner``: the tokens of level ``l_i`` are prepended to the input of layer ``i`` and removed from
  its output, for the ``n_llm_layers`` layers that end ``n_left`` layers before the top; ``l_i``
  comes from a level map (``LEVEL_MAPS``: ``depalm``, ``epalm``). We keep a
  fixed set of *slots* at the start of the sequence: a layer that injects overwrites them and
  lets the text attend to them; every other layer hides them from the text. This is the same
  computation as prepending and removing, and it keeps one sequence length for the KV cache.
- ``cross-attention`` (DePALM^c-attn): a tanh-gated cross-attention block (gate initialised at 0)
  before each of those layers; text tokens are queries, the perceptual tokens keys and values
  (the official block by default; the paper text's variant with ``attn_out_proj`` / ``out_norm``).
- ``none``: no perception (the blind baseline: the LLM with prompt tuning only).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

from scaling.config.base import ConfigError, suggest
from scaling.config.blocks import check_injection_args
from scaling.models.layers import NORM_EPS, MultiHeadAttention


def injected_layers(n_layers: int, n_llm_layers: int, n_left: int) -> list[int]:
    """The LLM layers that receive tokens: ``L - n_llm - n_left … L - n_left - 1``."""
    if n_llm_layers < 1 or n_left < 0 or n_llm_layers + n_left > n_layers:
        raise ConfigError(
            f"inner injection needs 1 <= n_llm_layers and n_llm_layers + n_left <= {n_layers} (the LLM's layers); "
            f"got n_llm_layers={n_llm_layers}, n_left={n_left}. Lower inject.n_llm_layers or inject.n_left."
        )
    return list(range(n_layers - n_llm_layers - n_left, n_layers - n_left))


def depalm_level_map(n_llm_layers: int, n_levels: int) -> list[int]:
    """DePALM: the k-th injected layer (k = 0..n_llm-1) reads level ``floor((k - n_llm) · n_fl / n_llm)``.

    With ``n_left = 0`` this is the supplement's ``floor((i - L) · n_fl / n_llm)``; with ``n_left > 0``
    the supplement's formula would index past the first level (e.g. -7 of 6 for eP-ALM's n_left = 1),
    so we count from the last injected layer: the first injected layer always gets the earliest level
    and each level covers ``n_llm / n_fl`` consecutive layers (the main text's rule; DePALM's code,
    ``prefix_tokens.py``: ``hidden_state_id = k · n_fl // n_llm``, the same map).
    """
    return [math.floor((k - n_llm_layers) * n_levels / n_llm_layers) for k in range(n_llm_layers)]


def epalm_level_map(n_llm_layers: int, n_levels: int) -> list[int]:
    """eP-ALM (``models/opt.py``): ``step = n_llm // n_fl`` (1 when n_llm <= n_fl, or with one level);
    the k-th injected layer reads level ``min(k // step, n_fl - 1)`` counted from the earliest level."""
    step = 1 if n_levels == 1 or n_llm_layers <= n_levels else n_llm_layers // n_levels
    return [min(k // step, n_levels - 1) - n_levels for k in range(n_llm_layers)]


# inject.level_map id -> (n_llm_layers, n_levels) -> the level (negative index) of each injected layer
LEVEL_MAPS = {"depalm": depalm_level_map, "epalm": epalm_level_map}


def layer_levels(n_layers: int, n_levels: int, n_llm_layers: int, n_left: int, level_map: str = "depalm") -> dict[int, int]:
    """Layer index → extracted level (negative index into the extracted levels, -1 = deepest), for
    the injected layers ``L - n_llm - n_left … L - n_left - 1`` and the map ``level_map`` (``LEVEL_MAPS``).

    The two maps agree when ``n_fl`` divides ``n_llm`` (e.g. eP-ALM's 6 levels over 12 layers)."""
    if level_map not in LEVEL_MAPS:
        raise ConfigError(f"inject.level_map must be one of {sorted(LEVEL_MAPS)}, got {level_map!r}{suggest(level_map, LEVEL_MAPS)}")
    layers = injected_layers(n_layers, n_llm_layers, n_left)
    return dict(zip(layers, LEVEL_MAPS[level_map](n_llm_layers, n_levels)))


class TokenTuner(nn.Module):
    """DePALM^{QP,inner}'s per-layer touch on the injected tokens (``prefix_tokens.py``: ``token_norm``
    then ``BiasTuner``): RMSNorm (eps 1e-4, learned scale), then a per-channel scale (init 1) and bias (init 0).

    ``[B, n, d]`` → ``[B, n, d]``."""

    def __init__(self, d: int, norm: bool = True, bias_tuning: bool = True):
        super().__init__()
        self.norm = nn.RMSNorm(d, eps=NORM_EPS) if norm else nn.Identity()
        self.scale = nn.Parameter(torch.ones(d)) if bias_tuning else None
        self.bias = nn.Parameter(torch.zeros(d)) if bias_tuning else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x * self.scale + self.bias if self.scale is not None else x


class FirstLayerInjection(nn.Module):
    """Perceptual tokens prepended at the input of the first layer (no options)."""

    kind = "first-layer"


class InnerLayerInjection(nn.Module):
    """Tokens of level ``l_i`` in the slots of layer ``i`` (see :func:`layer_levels`).

    ``token_norm`` / ``bias_tuning``: each injected layer gets its own :class:`TokenTuner` (RMSNorm
    and/or per-channel scale + bias) applied to its tokens (DePALM^{QP,inner}'s official code).
    """

    kind = "inner"

    def __init__(self, d_llm: int, n_llm_layers: int = 12, n_left: int = 0, level_map: str = "depalm",
                 token_norm: bool = False, bias_tuning: bool = False):
        super().__init__()
        if level_map not in LEVEL_MAPS:
            raise ConfigError(f"inject.level_map must be one of {sorted(LEVEL_MAPS)}, got {level_map!r}{suggest(level_map, LEVEL_MAPS)}")
        self.n_llm_layers, self.n_left, self.level_map = n_llm_layers, n_left, level_map
        self.tuners = (
            nn.ModuleList(TokenTuner(d_llm, token_norm, bias_tuning) for _ in range(n_llm_layers))
            if token_norm or bias_tuning else None
        )

    def plan(self, n_layers: int, n_levels: int) -> dict[int, int]:
        return layer_levels(n_layers, n_levels, self.n_llm_layers, self.n_left, self.level_map)

    def layer_tokens(self, mapped: torch.Tensor, plan: dict[int, int]) -> dict[int, torch.Tensor]:
        """mapped ``[B, L, n, d]`` → {layer: ``[B, n, d]``}: each injected layer's level, through its tuner."""
        if self.tuners is None:
            return {i: mapped[:, lvl] for i, lvl in plan.items()}
        return {i: tuner(mapped[:, lvl]) for tuner, (i, lvl) in zip(self.tuners, sorted(plan.items()))}


class GatedCrossAttention(nn.Module):
    """DePALM^c-attn text side: ``x + tanh(h) · x_r`` with the gate ``h`` initialised at 0 (an untrained
    block is the identity).

    Default (the official code, ``CrossAttentionFeatExtractor``):
    ``x_r = Linear_out(RMSNorm_{d_embed}(MHA(W_q · RMSNorm(MLP(x)), W_k · f, W_v · f)))``, the MLP being
    Linear(d_llm → d_embed) → GELU → Linear(d_embed → d_embed); the attention has no output projection
    (``attn_out_proj=False``) and its dropout is off (``dropout=0``: the official code applies none in
    training). The paper's text: ``attn_out_proj=True`` and ``out_norm="llm"`` (RMSNorm at d_llm after
    the up-projection): ``x_r = RMSNorm_{d_llm}(Linear_out(Attn_out(MHA(...))))``.
    """

    kernel_mode = "torch"

    def __init__(self, d_llm: int, d_embed: int = 1024, n_heads: int = 8, dropout: float = 0.0,
                 attn_out_proj: bool = False, out_norm: str = "embed"):
        super().__init__()
        if out_norm not in ("embed", "llm"):
            raise ConfigError(f"cross-attention out_norm must be 'embed' (the official code: RMSNorm before the "
                              f"up-projection) or 'llm' (the paper's text: after it), got {out_norm!r}")
        self.norm_first = out_norm == "embed"
        self.text_ffn = nn.Sequential(nn.Linear(d_llm, d_embed), nn.GELU(), nn.Linear(d_embed, d_embed))
        self.text_norm = nn.RMSNorm(d_embed, eps=NORM_EPS)
        self.attn = MultiHeadAttention(d_embed, n_heads, dropout, out_proj=attn_out_proj)
        self.out_norm = nn.RMSNorm(d_embed if self.norm_first else d_llm, eps=NORM_EPS)
        self.proj_out = nn.Linear(d_embed, d_llm)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, text: torch.Tensor, perceptual: torch.Tensor) -> torch.Tensor:
        """text ``[B, T, d_llm]``, perceptual ``[B, N, d_embed]`` → ``[B, T, d_llm]``."""
        dtype = self.proj_out.weight.dtype
        q = self.text_norm(self.text_ffn(text.to(dtype)))
        a = self.attn(q, perceptual.to(dtype))  # [B, T, d_embed]
        x_r = self.proj_out(self.out_norm(a)) if self.norm_first else self.out_norm(self.proj_out(a))
        return text + (torch.tanh(self.gate) * x_r).to(text.dtype)


class CrossAttentionInjection(nn.Module):
    """One shared :class:`GatedCrossAttention` before each injected layer (levels as for ``inner``)."""

    kind = "cross-attention"

    def __init__(self, d_llm: int, d_embed: int, n_llm_layers: int = 12, n_left: int = 0, n_heads: int = 8, dropout: float = 0.0,
                 attn_out_proj: bool = False, out_norm: str = "embed", level_map: str = "depalm"):
        super().__init__()
        self.n_llm_layers, self.n_left, self.level_map = n_llm_layers, n_left, level_map
        self.block = GatedCrossAttention(d_llm, d_embed, n_heads, dropout, attn_out_proj, out_norm)

    def plan(self, n_layers: int, n_levels: int) -> dict[int, int]:
        return layer_levels(n_layers, n_levels, self.n_llm_layers, self.n_left, self.level_map)


class NoInjection(nn.Module):
    """No perceptual input: the blind baseline."""

    kind = "none"


INJECTIONS: dict[str, type[nn.Module]] = {
    "first-layer": FirstLayerInjection,
    "inner": InnerLayerInjection,
    "cross-attention": CrossAttentionInjection,
    "none": NoInjection,
}

_CONTEXT_ARGS = ("d_llm", "d_embed")  # d_embed: the width of the mapper's output (xattn-resampler)


def injection_options(name: str) -> list[str]:
    """The keyword options an injection's class accepts (``scaling.config.blocks.INJECTION_OPTIONS`` lists the same)."""
    params = inspect.signature(INJECTIONS[name].__init__).parameters
    return [p for p in params if p not in ("self", "args", "kwargs") + _CONTEXT_ARGS]


def build_injection(name: str, kwargs: dict[str, Any], *, d_llm: int, d_embed: int | None = None) -> nn.Module:
    problems = check_injection_args(name, kwargs)
    if problems:
        raise ConfigError(problems)
    cls = INJECTIONS[name]
    params = inspect.signature(cls.__init__).parameters
    context = {k: v for k, v in (("d_llm", d_llm), ("d_embed", d_embed)) if k in params}
    return cls(**context, **kwargs)
