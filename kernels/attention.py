"""Flash-style non-causal multi-head attention (forward + backward) in Triton.

Used by the QPMapper interface (d_embed 1024, 8 heads, head dim 128) where the token count is
257 perceptual tokens + 32 query tokens = 289, and whose last layer computes only the ``n_Q = 32``
query rows against keys/values of all tokens (``Nq != Nk``).

Shapes: ``q`` ``[B, H, Nq, D]``, ``k`` and ``v`` ``[B, H, Nk, D]``, output ``[B, H, Nq, D]``.
Any strides are accepted (e.g. ``x.view(B, N, H, D).transpose(1, 2)``), no copies are made.

Forward: online softmax over blocks of keys (the ``Nq x Nk`` score matrix never exists in memory),
saves the per-row log-sum-exp (base 2, fp32). Backward (FlashAttention-2 style, recomputes the
probabilities from the saved log-sum-exp): one kernel computes ``delta = rowsum(dO * O)``, one
kernel per key block accumulates ``dK``/``dV`` over query blocks, one kernel per query block
accumulates ``dQ`` over key blocks (no atomics). Accumulation is fp32; matmul inputs are in the
input dtype (fp32 inputs use IEEE fp32 dots unless ``torch.backends.cuda.matmul.allow_tf32``).

The head dim need not be a power of two: blocks are padded to the next power of two (>= 16) with
masked loads (e.g. D = 80 -> 128 lanes).

Reference: :func:`attention_reference` = ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._triton_utils import dot, to_dtype
from .dispatch import interpreter_active, next_power_of_2, use_triton

_LOG2E = 1.4426950408889634


# --------------------------------------------------------------------------------------------------
# Triton kernels
# --------------------------------------------------------------------------------------------------
@triton.jit
def _attn_fwd_kernel(
    Q, K, V, O, LSE,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sob, soh, som, sod,
    H, NQ, NK, HEAD_DIM,
    qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < NQ
    mask_d = offs_d < HEAD_DIM

    q_ptrs = Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd
    q = tl.load(q_ptrs, mask=mask_m[:, None] & mask_d[None, :], other=0.0)

    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, NK, BLOCK_N):
        cols = start_n + offs_n
        mask_n = cols < NK
        kT = tl.load(
            k_base + cols[None, :] * skn + offs_d[:, None] * skd,
            mask=mask_n[None, :] & mask_d[:, None], other=0.0,
        )  # [BLOCK_D, BLOCK_N]
        s = dot(q, kT, INPUT_PRECISION) * qk_scale  # log2 units
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            v_base + cols[:, None] * svn + offs_d[None, :] * svd,
            mask=mask_n[:, None] & mask_d[None, :], other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        acc = acc * alpha[:, None] + dot(to_dtype(p, V.dtype.element_ty), v, INPUT_PRECISION)
        m_i = m_new

    acc = acc / l_i[:, None]
    o_ptrs = O + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod
    tl.store(o_ptrs, to_dtype(acc, O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
    tl.store(LSE + pid_bh * NQ + offs_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _attn_bwd_preprocess_kernel(
    O, DO, DELTA,
    sob, soh, som, sod,
    sdob, sdoh, sdom, sdod,
    H, NQ, HEAD_DIM,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m < NQ)[:, None] & (offs_d < HEAD_DIM)[None, :]
    o = tl.load(O + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod, mask=mask, other=0.0)
    do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :] * sdod, mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + pid_bh * NQ + offs_m, delta, mask=offs_m < NQ)


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod,
    sdkb, sdkh, sdkn, sdkd,
    sdvb, sdvh, sdvn, sdvd,
    H, NQ, NK, HEAD_DIM,
    sm_scale, qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < NK
    mask_d = offs_d < HEAD_DIM
    mask_nd = mask_n[:, None] & mask_d[None, :]

    k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd, mask=mask_nd, other=0.0)
    v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd, mask=mask_nd, other=0.0)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    q_base = Q + b * sqb + h * sqh
    do_base = DO + b * sdob + h * sdoh
    for start_m in range(0, NQ, BLOCK_M):
        rows = start_m + offs_m
        mask_m = rows < NQ
        mask_md = mask_m[:, None] & mask_d[None, :]
        q = tl.load(q_base + rows[:, None] * sqm + offs_d[None, :] * sqd, mask=mask_md, other=0.0)
        do = tl.load(do_base + rows[:, None] * sdom + offs_d[None, :] * sdod, mask=mask_md, other=0.0)
        lse = tl.load(LSE + pid_bh * NQ + rows, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + pid_bh * NQ + rows, mask=mask_m, other=0.0)

        sT = dot(k, tl.trans(q), INPUT_PRECISION) * qk_scale  # [BLOCK_N, BLOCK_M]
        pT = tl.exp2(sT - lse[None, :])
        pT = tl.where(mask_n[:, None] & mask_m[None, :], pT, 0.0)
        dv += dot(to_dtype(pT, DO.dtype.element_ty), do, INPUT_PRECISION)
        dpT = dot(v, tl.trans(do), INPUT_PRECISION)  # [BLOCK_N, BLOCK_M]
        dsT = pT * (dpT - delta[None, :])
        dk += dot(to_dtype(dsT, Q.dtype.element_ty), q, INPUT_PRECISION)

    dk = dk * sm_scale
    tl.store(DK + b * sdkb + h * sdkh + offs_n[:, None] * sdkn + offs_d[None, :] * sdkd,
             to_dtype(dk, DK.dtype.element_ty), mask=mask_nd)
    tl.store(DV + b * sdvb + h * sdvh + offs_n[:, None] * sdvn + offs_d[None, :] * sdvd,
             to_dtype(dv, DV.dtype.element_ty), mask=mask_nd)


@triton.jit
def _attn_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod,
    sdqb, sdqh, sdqm, sdqd,
    H, NQ, NK, HEAD_DIM,
    sm_scale, qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < NQ
    mask_d = offs_d < HEAD_DIM
    mask_md = mask_m[:, None] & mask_d[None, :]

    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd, mask=mask_md, other=0.0)
    do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :] * sdod, mask=mask_md, other=0.0)
    lse = tl.load(LSE + pid_bh * NQ + offs_m, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + pid_bh * NQ + offs_m, mask=mask_m, other=0.0)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    for start_n in range(0, NK, BLOCK_N):
        cols = start_n + offs_n
        mask_n = cols < NK
        mask_dn = mask_d[:, None] & mask_n[None, :]
        kT = tl.load(k_base + cols[None, :] * skn + offs_d[:, None] * skd, mask=mask_dn, other=0.0)
        vT = tl.load(v_base + cols[None, :] * svn + offs_d[:, None] * svd, mask=mask_dn, other=0.0)
        s = dot(q, kT, INPUT_PRECISION) * qk_scale
        p = tl.exp2(s - lse[:, None])
        p = tl.where(mask_n[None, :], p, 0.0)
        dp = dot(do, vT, INPUT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += dot(to_dtype(ds, K.dtype.element_ty), tl.trans(kT), INPUT_PRECISION)

    dq = dq * sm_scale
    tl.store(DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqm + offs_d[None, :] * sdqd,
             to_dtype(dq, DQ.dtype.element_ty), mask=mask_md)


# --------------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------------
def _input_precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"  # ignored for fp16/bf16 inputs


def _block_d(head_dim: int) -> int:
    return max(16, next_power_of_2(head_dim))


def _fwd_configs(nq: int, block_d: int, elem_bytes: int, interpret: bool) -> list[tuple[int, int, int, int]]:
    """Candidate (BLOCK_M, BLOCK_N, num_warps, num_stages) for the forward kernel, best first (the
    next one is tried if a candidate does not fit the GPU's shared memory / registers)."""
    if interpret:
        return [(32, 32, 4, 1)]
    block_m = 128 if nq > 64 else max(16, min(64, next_power_of_2(nq)))
    if elem_bytes >= 4:  # fp32 operands: halve the tiles
        cands = [(min(block_m, 64), 32, 4, 2)]
    elif block_d <= 64:
        cands = [(block_m, 64, 4, 3)]
    elif block_d <= 128:
        cands = [(block_m, 64, 8 if block_m == 128 else 4, 3)]
    else:
        cands = [(min(block_m, 64), 32, 8, 2)]
    return cands + [(min(block_m, 64), 32, 4, 1), (16, 16, 4, 1)]


def _bwd_configs(block_d: int, elem_bytes: int, interpret: bool) -> list[tuple[int, int, int, int]]:
    """Candidate (BLOCK_M, BLOCK_N, num_warps, num_stages) for the backward kernels, best first."""
    if interpret:
        return [(32, 32, 4, 1)]
    if elem_bytes >= 4:
        cands = [(32, 32, 4, 1)]
    elif block_d <= 64:
        cands = [(64, 64, 4, 2)]
    elif block_d <= 128:
        cands = [(64, 64, 8, 2)]
    else:
        cands = [(32, 32, 8, 1)]
    return cands + [(32, 32, 4, 1), (16, 16, 4, 1)]


def _launch(kernel, grid_fn, args, cands, **const):
    """Launch with the first candidate config that compiles within the device's resources."""
    from triton.runtime.errors import OutOfResources

    last_err = None
    for block_m, block_n, warps, stages in cands:
        try:
            kernel[grid_fn(block_m, block_n)](*args, BLOCK_M=block_m, BLOCK_N=block_n,
                                              num_warps=warps, num_stages=stages, **const)
            return
        except OutOfResources as err:  # pragma: no cover - GPU dependent
            last_err = err
    raise last_err  # type: ignore[misc]


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects 4-D [B, H, N, D] tensors, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, _, D = q.shape
    if k.shape[:2] != (B, H) or v.shape[:2] != (B, H) or k.shape[2] != v.shape[2]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[3] != D or v.shape[3] != D:
        raise ValueError("q, k and v must share the head dim")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if D > 256:
        raise ValueError(f"head dim {D} > 256 is not supported by the Triton attention kernel")
    if k.shape[2] == 0:
        raise ValueError("attention needs at least one key")


def _attention_fwd(q, k, v, sm_scale: float):
    B, H, NQ, D = q.shape
    NK = k.shape[2]
    interpret = interpreter_active() and not q.is_cuda
    block_d = _block_d(D)
    o = torch.empty((B, H, NQ, D), device=q.device, dtype=q.dtype)
    lse = torch.empty((B * H, NQ), device=q.device, dtype=torch.float32)
    _launch(
        _attn_fwd_kernel, lambda bm, bn: (triton.cdiv(NQ, bm), B * H),
        (q, k, v, o, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(o), H, NQ, NK, D, sm_scale * _LOG2E),
        _fwd_configs(NQ, block_d, q.element_size(), interpret),
        BLOCK_D=block_d, INPUT_PRECISION=_input_precision(q.dtype),
    )
    return o, lse


def _attention_bwd(do, q, k, v, o, lse, sm_scale: float, need_dq: bool, need_dkdv: bool):
    B, H, NQ, D = q.shape
    NK = k.shape[2]
    interpret = interpreter_active() and not q.is_cuda
    block_d = _block_d(D)
    cands = _bwd_configs(block_d, q.element_size(), interpret)
    prec = _input_precision(q.dtype)
    if do.dtype != q.dtype:
        do = do.to(q.dtype)

    delta = torch.empty((B * H, NQ), device=q.device, dtype=torch.float32)
    pre_m = 32 if interpret else 64
    _attn_bwd_preprocess_kernel[(triton.cdiv(NQ, pre_m), B * H)](
        o, do, delta, *_strides(o), *_strides(do), H, NQ, D,
        BLOCK_M=pre_m, BLOCK_D=block_d, num_warps=4,
    )
    dq = dk = dv = None
    if need_dkdv:
        dk = torch.empty((B, H, NK, D), device=q.device, dtype=k.dtype)
        dv = torch.empty((B, H, NK, D), device=q.device, dtype=v.dtype)
        _launch(
            _attn_bwd_dkdv_kernel, lambda bm, bn: (triton.cdiv(NK, bn), B * H),
            (q, k, v, do, lse, delta, dk, dv,
             *_strides(q), *_strides(k), *_strides(v), *_strides(do), *_strides(dk), *_strides(dv),
             H, NQ, NK, D, sm_scale, sm_scale * _LOG2E),
            cands, BLOCK_D=block_d, INPUT_PRECISION=prec,
        )
    if need_dq:
        dq = torch.empty((B, H, NQ, D), device=q.device, dtype=q.dtype)
        _launch(
            _attn_bwd_dq_kernel, lambda bm, bn: (triton.cdiv(NQ, bm), B * H),
            (q, k, v, do, lse, delta, dq,
             *_strides(q), *_strides(k), *_strides(v), *_strides(do), *_strides(dq),
             H, NQ, NK, D, sm_scale, sm_scale * _LOG2E),
            cands, BLOCK_D=block_d, INPUT_PRECISION=prec,
        )
    return dq, dk, dv


class TritonAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: forward saves (q, k, v, out, logsumexp); backward recomputes P."""

    @staticmethod
    def forward(ctx, q, k, v, sm_scale: float):
        o, lse = _attention_fwd(q, k, v, sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.sm_scale = sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        need_dq = ctx.needs_input_grad[0]
        need_dkdv = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        dq, dk, dv = _attention_bwd(do, q, k, v, o, lse, ctx.sm_scale, need_dq, need_dkdv)
        return dq, dk, dv, None


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """PyTorch reference: non-causal SDPA. q ``[B, H, Nq, D]``, k/v ``[B, H, Nk, D]`` -> ``[B, H, Nq, D]``."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, mode: str = "auto") -> torch.Tensor:
    """Non-causal multi-head attention ``softmax(q k^T * scale) v``.

    Args:
        q: ``[B, H, Nq, D]`` queries.
        k: ``[B, H, Nk, D]`` keys (``Nk`` may differ from ``Nq``).
        v: ``[B, H, Nk, D]`` values.
        scale: softmax scale, default ``1/sqrt(D)``.
        mode: ``"auto"`` | ``"triton"`` | ``"torch"`` (see :mod:`scaling.kernels.dispatch`).

    Returns:
        ``[B, H, Nq, D]`` in the input dtype.

    The Triton kernel handles fp32/fp16/bf16 and head dims up to 256; in ``"auto"`` mode other
    inputs go to SDPA, in ``"triton"`` mode they raise ``ValueError``.
    """
    if not use_triton(q, matmul_heavy=True, mode=mode):
        return attention_reference(q, k, v, scale)
    if mode == "auto" and (q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or q.shape[-1] > 256
                           or not (q.dtype == k.dtype == v.dtype)):
        return attention_reference(q, k, v, scale)  # outside what the kernel supports: SDPA
    _check_inputs(q, k, v)
    sm_scale = float(scale) if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return TritonAttentionFunction.apply(q, k, v, sm_scale)


__all__ = ["attention", "attention_reference", "TritonAttentionFunction"]
