"""Fused RMSNorm (forward + backward) with HF ``LlamaRMSNorm`` / ``Qwen2RMSNorm`` semantics.

``y = weight * (x.float() * rsqrt(mean(x.float()^2, -1) + eps)).to(x.dtype)``

The eager module runs ~6 kernels and materialises fp32 copies of ``x`` (``[batch, tokens, dim]``,
dim 4096 for a 7B LLaMA); this op reads ``x`` once and writes ``y`` once, computing in fp32 registers.
The intermediate rounding of the eager module is reproduced (the normalised value is rounded to the
input dtype before the weight multiply, and the product rounded to the output dtype), so the result
matches the module to the last bit up to the fp32 reduction order / rsqrt implementation.

Output dtype = ``torch.promote_types(weight.dtype, x.dtype)`` (as in the module).
Backward: ``dx`` always (fp32 math, one pass, saved per-row ``rstd``); ``dweight`` only if the weight
requires grad (per-program fp32 partial sums, reduced in PyTorch). Shapes: ``x`` ``[..., D]``, weight ``[D]``.

:func:`residual_rms_norm` is the same kernel pair with the decoder layer's residual stream folded in:
forward ``s = x + delta; y = RMSNorm(s)`` in one pass (saves the add's launch and a re-read of ``s``),
backward ``dx = ds + RMSNorm'(dy)`` in one pass (saves the accumulation add autograd would run where
``s`` feeds both the norm and the residual branch): per LLaMA decoder layer, three memory-bound
kernels fewer (one forward, two backward).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import round_to, to_dtype
from .dispatch import interpreter_active, next_power_of_2, num_programs_hint, use_triton


@triton.jit
def _rms_norm_fwd_kernel(
    X, DELTA, S, W, Y, RSTD,
    s_x, s_delta, s_s, s_y,
    D, eps,
    HAS_DELTA: tl.constexpr, BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    x = tl.load(X + row * s_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_DELTA:  # residual add first, rounded as the eager add in x's dtype: s = x + delta
        delta = tl.load(DELTA + row * s_delta + cols, mask=mask, other=0.0).to(tl.float32)
        x = round_to(x + delta, X.dtype.element_ty)
        tl.store(S + row * s_s + cols, to_dtype(x, S.dtype.element_ty), mask=mask)
    var = tl.sum(x * x, 0) / D
    rstd = tl.rsqrt(var + eps)
    n = round_to(x * rstd, X.dtype.element_ty)          # `.to(input_dtype)`
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * s_y + cols, to_dtype(w * n, Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    DY, X, W, RSTD, DRES, DX, DW,
    s_dy, s_x, s_dres, s_dx,
    M, D, rows_per_program,
    HAS_DRES: tl.constexpr, COMPUTE_DW: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for row in range(row_start, row_end):
        dy = tl.load(DY + row * s_dy + cols, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(X + row * s_x + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        n = x * rstd
        # grad w.r.t. the rounded normalised value (dtype of x), then through the fp32 normalisation
        gn = round_to(dy * w, X.dtype.element_ty)
        dx = rstd * (gn - n * (tl.sum(gn * n, 0) / D))
        if HAS_DRES:  # the gradient reaching the residual branch, accumulated here instead of by autograd
            dx += tl.load(DRES + row * s_dres + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row * s_dx + cols, to_dtype(dx, DX.dtype.element_ty), mask=mask)
        if COMPUTE_DW:
            # dy has the output dtype (promote(weight, x)): the eager product is rounded to it
            dw += round_to(dy * round_to(n, X.dtype.element_ty), DY.dtype.element_ty)
    if COMPUTE_DW:
        tl.store(DW + pid * BLOCK_D + cols, dw, mask=mask)


def _launch_cfg(D: int, interpret: bool) -> tuple[int, int]:
    BLOCK_D = next_power_of_2(D)
    if BLOCK_D > 65536:
        raise ValueError(f"rms_norm: hidden size {D} too large for one block")
    if interpret:
        return BLOCK_D, 1
    warps = 4 if BLOCK_D <= 1024 else (8 if BLOCK_D <= 4096 else 16)
    return BLOCK_D, warps


def _as_rows(t: torch.Tensor, D: int) -> torch.Tensor:
    t2 = t.reshape(-1, D)
    if t2.stride(-1) != 1:
        t2 = t2.contiguous()
    return t2


def _forward(x2: torch.Tensor, weight: torch.Tensor, eps: float, delta2: torch.Tensor | None = None):
    """Rows ``x2`` [M, D] (+ ``delta2``) → (s [M, D] or None, y [M, D], rstd [M])."""
    M, D = x2.shape
    out_dtype = torch.promote_types(weight.dtype, x2.dtype)
    y = torch.empty((M, D), device=x2.device, dtype=out_dtype)
    s = torch.empty_like(x2) if delta2 is not None else None
    rstd = torch.empty(M, device=x2.device, dtype=torch.float32)
    interpret = interpreter_active() and not x2.is_cuda
    BLOCK_D, warps = _launch_cfg(D, interpret)
    if M > 0:
        d, o = (delta2, s) if delta2 is not None else (x2, y)  # unused pointers when HAS_DELTA is off
        _rms_norm_fwd_kernel[(M,)](x2, d, o, weight, y, rstd, x2.stride(0), d.stride(0), o.stride(0), y.stride(0),
                                   D, float(eps), HAS_DELTA=delta2 is not None, BLOCK_D=BLOCK_D, num_warps=warps)
    return s, y, rstd


def _backward(dy2: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor,
              compute_dw: bool, dres2: torch.Tensor | None = None):
    """dx [M, D] (+ ``dres2`` when given) and dweight (or None) from rows ``dy2`` [M, D]."""
    M, D = x2.shape
    interpret = interpreter_active() and not x2.is_cuda
    BLOCK_D, warps = _launch_cfg(D, interpret)
    dx = torch.empty((M, D), device=x2.device, dtype=x2.dtype)
    n_prog = max(1, min(M, num_programs_hint(x2, cpu_default=4) * (1 if interpret else 4)))
    rows_per_program = triton.cdiv(M, n_prog) if M > 0 else 1
    n_prog = triton.cdiv(M, rows_per_program) if M > 0 else 0
    dw_partial = torch.empty((max(n_prog, 1), BLOCK_D), device=x2.device, dtype=torch.float32) if compute_dw else dx
    dres = dres2 if dres2 is not None else dx  # unused pointer when HAS_DRES is off
    if M > 0:
        _rms_norm_bwd_kernel[(n_prog,)](
            dy2, x2, weight, rstd, dres, dx, dw_partial,
            dy2.stride(0), x2.stride(0), dres.stride(0), dx.stride(0),
            M, D, rows_per_program,
            HAS_DRES=dres2 is not None, COMPUTE_DW=compute_dw, BLOCK_D=BLOCK_D, num_warps=warps,
        )
    dw = None
    if compute_dw:
        dw = (dw_partial[:n_prog, :D].sum(0) if M > 0 else torch.zeros(D, device=x2.device)).to(weight.dtype)
    return dx, dw


class RMSNormFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`rms_norm`."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        D = x.shape[-1]
        x2 = _as_rows(x, D)
        _, y, rstd = _forward(x2, weight, eps)
        ctx.save_for_backward(x2, weight, rstd)
        ctx.x_shape = x.shape
        ctx.out_dtype = y.dtype
        return y.view(*x.shape[:-1], D)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        dy2 = _as_rows(dy.to(ctx.out_dtype), x2.shape[1])
        dx, dw = _backward(dy2, x2, weight, rstd, ctx.needs_input_grad[1])
        return dx.view(ctx.x_shape), dw, None


class ResidualRMSNormFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`residual_rms_norm`: ``(x, delta | None, weight, eps) → (s, y)``.

    Backward takes the gradients of both outputs and returns ``ds + RMSNorm'(dy)`` for ``x`` (and the
    same tensor for ``delta``, as an add's backward does) from one kernel."""

    @staticmethod
    def forward(ctx, x, delta, weight, eps: float):
        D = x.shape[-1]
        x2 = _as_rows(x, D)
        s2, y, rstd = _forward(x2, weight, eps, None if delta is None else _as_rows(delta, D))
        s2 = x2 if s2 is None else s2
        ctx.save_for_backward(s2, weight, rstd)
        ctx.x_shape = x.shape
        ctx.out_dtype = y.dtype
        ctx.has_delta = delta is not None
        s = s2.view(x.shape) if delta is not None else x.view_as(x)
        return s, y.view(*x.shape[:-1], D)

    @staticmethod
    def backward(ctx, ds, dy):
        # (autograd materialises the gradient of an unused output as zeros: ds and dy are never None)
        s2, weight, rstd = ctx.saved_tensors
        D = s2.shape[1]
        dx, dw = _backward(_as_rows(dy.to(ctx.out_dtype), D), s2, weight, rstd, ctx.needs_input_grad[2],
                           _as_rows(ds.to(s2.dtype), D))
        dx = dx.view(ctx.x_shape)
        return dx, (dx if ctx.has_delta else None), dw, None


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """HF ``LlamaRMSNorm.forward`` verbatim."""
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def residual_rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                                delta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The eager decoder-layer code: ``s = x + delta`` (or ``x``), ``y = LlamaRMSNorm(s)``."""
    s = x if delta is None else x + delta
    return s, rms_norm_reference(s, weight, eps)


def _check_weight(x: torch.Tensor, weight: torch.Tensor) -> None:
    if weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"weight must be [D] = [{x.shape[-1]}], got {tuple(weight.shape)}")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, mode: str = "auto") -> torch.Tensor:
    """RMSNorm of ``x`` ``[..., D]`` (e.g. ``[batch, tokens, dim]``) with weight ``[D]``; LlamaRMSNorm semantics."""
    _check_weight(x, weight)
    if not use_triton(x, matmul_heavy=False, mode=mode) or x.dtype == torch.float64:
        return rms_norm_reference(x, weight, eps)
    return RMSNormFunction.apply(x, weight, eps)


def residual_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, delta: torch.Tensor | None = None,
                      mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream and its RMSNorm, the pattern of every pre-norm decoder layer.

    ``x`` ``[..., D]``, ``delta`` (optional, same shape and dtype: a sub-layer's output) → ``s = x + delta``
    (``x`` without delta) and ``y = RMSNorm(s)``, both ``[..., D]``. Forward: one kernel reads ``x`` and
    ``delta`` and writes ``s`` and ``y`` (the eager code: an add, then the norm reading ``s`` again).
    Backward: the gradient reaching ``s`` through the residual branch is added to the norm's input
    gradient in the same kernel (eager autograd: the norm backward, then a separate accumulation add).
    A ``delta`` of another dtype (an fp32 stream with bf16 sub-layer outputs under autocast) takes the
    eager path, with its type promotion."""
    _check_weight(x, weight)
    if delta is not None and delta.shape != x.shape:
        raise ValueError(f"delta must have x's shape {tuple(x.shape)}, got {tuple(delta.shape)}")
    if (not use_triton(x, matmul_heavy=False, mode=mode) or x.dtype == torch.float64
            or (delta is not None and delta.dtype != x.dtype)):
        return residual_rms_norm_reference(x, weight, eps, delta)
    return ResidualRMSNormFunction.apply(x, delta, weight, eps)


__all__ = ["rms_norm", "rms_norm_reference", "RMSNormFunction", "residual_rms_norm", "residual_rms_norm_reference",
           "ResidualRMSNormFunction"]
