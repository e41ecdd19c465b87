"""Dispatch of the hot operations to Triton kernels (``scaling.kernels``) or their PyTorch reference.

Modules call these functions with their ``kernel_mode`` ("auto" | "triton" | "torch"). "auto" uses
a Triton kernel when the tensors are on a CUDA device and the kernel exists (matmul-heavy kernels
only on compute capability >= 8.0, see ``scaling.kernels.dispatch``); otherwise PyTorch.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F

KERNEL_MODES = ("auto", "triton", "torch")


def _kernel(module: str, name: str):
    try:
        return getattr(importlib.import_module(f"scaling.kernels.{module}"), name)
    except (ImportError, AttributeError):
        return None


def _want_triton(t: torch.Tensor, mode: str) -> bool:
    if mode == "torch":
        return False
    if mode == "triton":
        return True
    return t.is_cuda


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str = "torch") -> torch.Tensor:
    """Non-causal attention: q ``[B, H, Nq, D]``, k/v ``[B, H, Nk, D]`` → ``[B, H, Nq, D]``."""
    if _want_triton(q, mode):
        fn = _kernel("attention", "attention")
        if fn is not None:
            return fn(q, k, v, mode=mode)
        if mode == "triton":
            raise RuntimeError("kernel_mode='triton' but scaling.kernels.attention is unavailable")
    return F.scaled_dot_product_attention(q, k, v)


def target_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
    bias: torch.Tensor | None = None, mode: str = "torch",
) -> torch.Tensor:
    """Mean label-smoothed cross-entropy of ``hidden [N, D] @ weight[V, D].T`` against ``labels [N]``."""
    if _want_triton(hidden, mode):
        fn = _kernel("target_loss", "target_cross_entropy")
        if fn is not None:
            return fn(hidden, weight, labels, label_smoothing=label_smoothing, bias=bias, mode=mode)
        if mode == "triton":
            raise RuntimeError("kernel_mode='triton' but scaling.kernels.target_loss is unavailable")
    logits = F.linear(hidden, weight, bias)
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def inject_prefix(
    embed_weight: torch.Tensor, input_ids: torch.Tensor, text_mask: torch.Tensor, prefix: torch.Tensor,
    mode: str = "torch",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build the LLM input ``[prefix; embed(input_ids)]``, its mask and position ids.

    embed_weight ``[V, D]``, input_ids/text_mask ``[B, T]``, prefix ``[B, P, D]`` →
    (inputs_embeds ``[B, P+T, D]``, attention_mask ``[B, P+T]``, position_ids ``[B, P+T]``).
    Positions count real tokens only (padding anywhere in the text); padded positions get 1.
    """
    if _want_triton(prefix if prefix.numel() else input_ids, mode):
        fn = _kernel("prefix_injection", "inject_prefix")
        if fn is not None:
            return fn(embed_weight, input_ids, text_mask, prefix, mode=mode)
        if mode == "triton":
            raise RuntimeError("kernel_mode='triton' but scaling.kernels.prefix_injection is unavailable")
    text = F.embedding(input_ids, embed_weight)
    embeds = torch.cat([prefix.to(text.dtype), text], dim=1) if prefix.shape[1] else text
    ones = torch.ones(prefix.shape[0], prefix.shape[1], dtype=text_mask.dtype, device=text_mask.device)
    mask = torch.cat([ones, text_mask], dim=1)
    positions = position_ids_from_mask(mask)
    return embeds, mask, positions


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` 0/1 mask → positions counting real tokens (padding gets 1, the HF convention)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def padding_is_trailing(mask: torch.Tensor) -> bool:
    """``[B, S]`` 0/1 mask → True when no sample has a padded position before a real one (right
    padding, or none). Then causal attention without a padding mask is exact for every real token:
    no real query can reach a padded key. (One device→host sync.)"""
    if mask.shape[1] < 2:
        return True
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def arange_positions(mask: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` → positions ``0..S-1`` for every row: equal to :func:`position_ids_from_mask` at
    real tokens when the padding is trailing, and strictly increasing (so Hugging Face does not read
    the padded tail as a second packed sequence and build a mask after all)."""
    return torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)


def overwrite_slots(hidden: torch.Tensor, tokens: torch.Tensor, start: int, mode: str = "torch") -> torch.Tensor:
    """``hidden [B, S, D]`` with rows ``start:start+n`` replaced by ``tokens [B, n, D]`` (out of place)."""
    if _want_triton(hidden, mode):
        fn = _kernel("prefix_injection", "overwrite_slots")
        if fn is not None:
            return fn(hidden, tokens, start, mode=mode)
        if mode == "triton":
            raise RuntimeError("kernel_mode='triton' but scaling.kernels.prefix_injection is unavailable")
    n = tokens.shape[1]
    return torch.cat([hidden[:, :start], tokens.to(hidden.dtype), hidden[:, start + n :]], dim=1)
