"""Rotary position embedding applied to q and k in one kernel (forward + backward).

Same semantics as transformers' ``apply_rotary_pos_emb`` with ``rotate_half``::

    q_embed = q * cos + rotate_half(q) * sin,   rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])

Shapes (``unsqueeze_dim=1``, the HF default): ``q`` ``[B, Hq, T, D]``, ``k`` ``[B, Hk, T, D]`` (``Hk`` may
differ: GQA), ``cos``/``sin`` ``[B, T, D]`` or ``[1, T, D]`` (broadcast over the batch). With
``unsqueeze_dim=2``, ``q`` ``[B, T, Hq, D]`` and ``k`` ``[B, T, Hk, D]``. Any strides (no copies).

One program per (batch, token) loads that token's cos/sin once and rotates all heads of q and k.
The eager rounding is reproduced (each of the two products and their sum is rounded to the output
dtype, ``promote_types(q.dtype, cos.dtype)``; in the backward to q's / k's dtype), so the result
matches the eager function bit for bit up to fp32 contraction. No gradient is produced for
cos/sin (they come from the ``@torch.no_grad`` rotary module): if they require grad, the reference
is used.

:func:`qkv_rope` takes the fused q|k|v projection of a decoder layer instead of q and k: it splits it
into heads (views), rotates q and k into ``[B, T, H, D]`` storage, and its backward writes the
gradient of the fused projection directly (rotated-back q and k from the kernel, v by one copy).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import round_to, to_dtype
from .dispatch import interpreter_active, next_power_of_2, use_triton


@triton.jit
def _rotate_heads(
    X, Y, sxb, sxh, sxt, sxd, syb, syh, syt, syd,
    b, t, NH, HALF, c1, c2, s1, s2,
    BACKWARD: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    # eager rounding dtype = the output's (forward: promote(q, cos); backward: q's = dq's dtype)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_HALF)
    mask_d = offs_d < HALF
    for h0 in range(0, NH, BLOCK_H):
        hh = h0 + offs_h
        mask = (hh < NH)[:, None] & mask_d[None, :]
        xp = X + b * sxb + t * sxt + hh[:, None] * sxh + offs_d[None, :] * sxd
        x1 = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(xp + HALF * sxd, mask=mask, other=0.0).to(tl.float32)
        if BACKWARD:
            # dx1 = g1*cos1 + g2*sin2 ; dx2 = g2*cos2 - g1*sin1
            y1 = round_to(x1 * c1[None, :], Y.dtype.element_ty) + round_to(x2 * s2[None, :], Y.dtype.element_ty)
            y2 = round_to(x2 * c2[None, :], Y.dtype.element_ty) - round_to(x1 * s1[None, :], Y.dtype.element_ty)
        else:
            # y1 = x1*cos1 - x2*sin1 ; y2 = x2*cos2 + x1*sin2
            y1 = round_to(x1 * c1[None, :], Y.dtype.element_ty) + round_to(-x2 * s1[None, :], Y.dtype.element_ty)
            y2 = round_to(x2 * c2[None, :], Y.dtype.element_ty) + round_to(x1 * s2[None, :], Y.dtype.element_ty)
        yp = Y + b * syb + t * syt + hh[:, None] * syh + offs_d[None, :] * syd
        tl.store(yp, to_dtype(y1, Y.dtype.element_ty), mask=mask)
        tl.store(yp + HALF * syd, to_dtype(y2, Y.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    Q, K, QO, KO, COS, SIN,
    sqb, sqh, sqt, sqd,
    skb, skh, skt, skd,
    sqob, sqoh, sqot, sqod,
    skob, skoh, skot, skod,
    scb, sct, scd,
    ssb, sst, ssd,
    T, HQ, HK, HALF,
    BACKWARD: tl.constexpr,
    BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // T
    t = pid % T
    offs_d = tl.arange(0, BLOCK_HALF)
    mask_d = offs_d < HALF
    cp = COS + b * scb + t * sct + offs_d * scd
    sp = SIN + b * ssb + t * sst + offs_d * ssd
    c1 = tl.load(cp, mask=mask_d, other=0.0).to(tl.float32)
    c2 = tl.load(cp + HALF * scd, mask=mask_d, other=0.0).to(tl.float32)
    s1 = tl.load(sp, mask=mask_d, other=0.0).to(tl.float32)
    s2 = tl.load(sp + HALF * ssd, mask=mask_d, other=0.0).to(tl.float32)
    _rotate_heads(Q, QO, sqb, sqh, sqt, sqd, sqob, sqoh, sqot, sqod, b, t, HQ, HALF, c1, c2, s1, s2,
                  BACKWARD, BLOCK_HQ, BLOCK_HALF)
    _rotate_heads(K, KO, skb, skh, skt, skd, skob, skoh, skot, skod, b, t, HK, HALF, c1, c2, s1, s2,
                  BACKWARD, BLOCK_HK, BLOCK_HALF)


_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def _bhtd(x: torch.Tensor, unsqueeze_dim: int) -> torch.Tensor:
    """View as [B, H, T, D] (no copy)."""
    return x if unsqueeze_dim == 1 else x.transpose(1, 2)


def _launch(q, k, qo, ko, cos, sin, backward: bool):
    """All of q, k, qo, ko as [B, H, T, D] views; cos/sin [Bc, T, D]."""
    B, HQ, T, D = q.shape
    HK = k.shape[1]
    half = D // 2
    interpret = interpreter_active() and not q.is_cuda
    BLOCK_HALF = next_power_of_2(half)
    cap = 8 if interpret else max(1, 4096 // BLOCK_HALF)
    BLOCK_HQ = min(next_power_of_2(HQ), cap)
    BLOCK_HK = min(next_power_of_2(HK), cap)
    scb = cos.stride(0) if cos.shape[0] != 1 else 0
    ssb = sin.stride(0) if sin.shape[0] != 1 else 0
    warps = 1 if interpret else (4 if BLOCK_HQ * BLOCK_HALF <= 2048 else 8)
    if B * T == 0:
        return
    _rope_kernel[(B * T,)](
        q, k, qo, ko, cos, sin,
        *q.stride(), *k.stride(), *qo.stride(), *ko.stride(),
        scb, cos.stride(1), cos.stride(2), ssb, sin.stride(1), sin.stride(2),
        T, HQ, HK, half,
        BACKWARD=backward,
        BLOCK_HQ=BLOCK_HQ, BLOCK_HK=BLOCK_HK, BLOCK_HALF=BLOCK_HALF, num_warps=warps,
    )


class RopeFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`rope` (no gradient for cos / sin)."""

    @staticmethod
    def forward(ctx, q, k, cos, sin, unsqueeze_dim: int):
        q_out_dtype = torch.promote_types(q.dtype, cos.dtype)
        k_out_dtype = torch.promote_types(k.dtype, cos.dtype)
        qo = torch.empty_like(q, dtype=q_out_dtype)
        ko = torch.empty_like(k, dtype=k_out_dtype)
        _launch(_bhtd(q, unsqueeze_dim), _bhtd(k, unsqueeze_dim), _bhtd(qo, unsqueeze_dim), _bhtd(ko, unsqueeze_dim),
                cos, sin, False)
        ctx.save_for_backward(cos, sin)
        ctx.unsqueeze_dim = unsqueeze_dim
        ctx.dtypes = (q.dtype, k.dtype)
        return qo, ko

    @staticmethod
    def backward(ctx, dqo, dko):
        cos, sin = ctx.saved_tensors
        u = ctx.unsqueeze_dim
        q_dtype, k_dtype = ctx.dtypes
        need_q, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # (autograd materialises a missing output gradient as zeros: dqo / dko are never None)
        dq = torch.empty_like(dqo, dtype=q_dtype)
        dk = torch.empty_like(dko, dtype=k_dtype)
        _launch(_bhtd(dqo, u), _bhtd(dko, u), _bhtd(dq, u), _bhtd(dk, u), cos, sin, True)
        return (dq if need_q else None), (dk if need_k else None), None, None, None


class QKVRopeFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`qkv_rope`: ``(qkv, cos, sin, hq, hk, hd) → (q, k, v)``."""

    @staticmethod
    def forward(ctx, qkv, cos, sin, hq: int, hk: int, hd: int):
        b, t, _ = qkv.shape
        q_in, k_in, v = _split_heads(qkv, hq, hk, hd)
        # [B, T, H, D] storage, returned as [B, H, T, D] views: the layout attention kernels read and
        # write their gradients in, so the backward below needs no copies to reach ``qkv``'s layout
        qo = torch.empty(b, t, hq, hd, device=qkv.device, dtype=torch.promote_types(qkv.dtype, cos.dtype)).transpose(1, 2)
        ko = torch.empty(b, t, hk, hd, device=qkv.device, dtype=qo.dtype).transpose(1, 2)
        _launch(q_in, k_in, qo, ko, cos, sin, False)
        ctx.save_for_backward(cos, sin)
        ctx.heads = (hq, hk, hd)
        ctx.qkv_dtype = qkv.dtype
        return qo, ko, v

    @staticmethod
    def backward(ctx, dqo, dko, dv):
        cos, sin = ctx.saved_tensors
        hq, hk, hd = ctx.heads
        b, _, t, _ = dqo.shape
        # (autograd materialises missing output gradients as zeros: none of the three is None)
        dqkv = torch.empty(b, t, (hq + 2 * hk) * hd, device=dqo.device, dtype=ctx.qkv_dtype)
        dq, dk, dv_out = _split_heads(dqkv, hq, hk, hd)
        _launch(dqo, dko, dq, dk, cos, sin, True)
        dv_out.copy_(dv)
        return dqkv, None, None, None, None, None


def _split_heads(qkv: torch.Tensor, hq: int, hk: int, hd: int):
    """``qkv`` [B, T, (hq + 2·hk)·hd] → q [B, hq, T, hd], k and v [B, hk, T, hd]: strided views, no copies."""
    b, t, _ = qkv.shape
    q, k, v = qkv.split([hq * hd, hk * hd, hk * hd], dim=-1)
    return (q.view(b, t, hq, hd).transpose(1, 2), k.view(b, t, hk, hd).transpose(1, 2),
            v.view(b, t, hk, hd).transpose(1, 2))


def qkv_rope_reference(qkv, cos, sin, hq: int, hk: int, hd: int):
    """The eager attention code: split the fused projection into heads, then ``apply_rotary_pos_emb``."""
    q, k, v = _split_heads(qkv, hq, hk, hd)
    q, k = rope_reference(q, k, cos, sin)
    return q, k, v


def qkv_rope(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, hq: int, hk: int, hd: int,
             mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a fused q|k|v projection ``qkv`` ``[B, T, (hq + 2·hk)·hd]`` into heads and rotate q and k.

    Returns ``q`` ``[B, hq, T, hd]``, ``k`` and ``v`` ``[B, hk, T, hd]`` (v: a view of ``qkv``), with
    ``cos``/``sin`` ``[B or 1, T, hd]``. The same kernel as :func:`rope`; the difference is the backward:
    one kernel writes the rotated-back gradients of q and k straight into the gradient of ``qkv`` (and
    one copy adds v's), where the eager code runs the rotary backward, a reshape copy per head split and
    the ``cat`` of the split's backward."""
    if qkv.dim() != 3 or qkv.shape[-1] != (hq + 2 * hk) * hd:
        raise ValueError(f"qkv must be [B, T, (hq + 2*hk)*hd] = [.., .., {(hq + 2 * hk) * hd}], got {tuple(qkv.shape)}")
    supported = (cos.dim() == 3 and sin.shape == cos.shape and hd % 2 == 0 and cos.shape[-1] == hd
                 and cos.shape[1] == qkv.shape[1] and cos.shape[0] in (1, qkv.shape[0])
                 and qkv.dtype in _TL and cos.dtype in _TL and sin.dtype == cos.dtype
                 and not (cos.requires_grad or sin.requires_grad))
    if not use_triton(qkv, matmul_heavy=False, mode=mode) or not supported:
        if mode == "triton" and not supported:
            raise ValueError(f"qkv_rope: unsupported inputs for the Triton kernel: qkv {tuple(qkv.shape)} {qkv.dtype}, "
                             f"cos {tuple(cos.shape)} {cos.dtype}, head_dim={hd}")
        return qkv_rope_reference(qkv, cos, sin, hq, hk, hd)
    return QKVRopeFunction.apply(qkv, cos, sin, hq, hk, hd)


def rope_reference(q, k, cos, sin, unsqueeze_dim: int = 1):
    """transformers' ``apply_rotary_pos_emb`` (LLaMA / Qwen2) verbatim."""
    def rotate_half(x):
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1,
         mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Apply rotary embeddings to ``q`` ``[B, Hq, T, D]`` and ``k`` ``[B, Hk, T, D]`` with ``cos``/``sin`` ``[B, T, D]``.

    Returns ``(q_embed, k_embed)`` exactly like ``transformers`` ``apply_rotary_pos_emb``.
    Falls back to the reference for layouts it does not handle (cos/sin not 3-D, odd head dim,
    ``unsqueeze_dim`` not 1/2, cos/sin requiring grad, fp64).
    """
    supported = (
        q.dim() == 4 and k.dim() == 4 and cos.dim() == 3 and sin.shape == cos.shape
        and unsqueeze_dim in (1, 2) and q.shape[-1] % 2 == 0 and q.shape[-1] == k.shape[-1] == cos.shape[-1]
        and q.dtype in _TL and k.dtype in _TL and cos.dtype in _TL and sin.dtype == cos.dtype
        and not (cos.requires_grad or sin.requires_grad)
    )
    if supported:
        qb, kb = _bhtd(q, unsqueeze_dim), _bhtd(k, unsqueeze_dim)
        supported = (qb.shape[0] == kb.shape[0] and qb.shape[2] == kb.shape[2] == cos.shape[1]
                     and cos.shape[0] in (1, qb.shape[0]))
    if not use_triton(q, matmul_heavy=False, mode=mode):
        return rope_reference(q, k, cos, sin, unsqueeze_dim)
    if not supported:
        if mode == "triton":
            raise ValueError(f"rope: unsupported inputs for the Triton kernel: q {tuple(q.shape)} {q.dtype}, "
                             f"k {tuple(k.shape)}, cos {tuple(cos.shape)} {cos.dtype}, unsqueeze_dim={unsqueeze_dim}")
        return rope_reference(q, k, cos, sin, unsqueeze_dim)
    return RopeFunction.apply(q, k, cos, sin, unsqueeze_dim)


__all__ = ["rope", "rope_reference", "RopeFunction", "qkv_rope", "qkv_rope_reference", "QKVRopeFunction"]
