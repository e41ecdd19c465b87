"""FP8 linear for frozen weights: row-wise e4m3 quantisation (Triton) + ``torch._scaled_mm``.

The frozen LLM never trains its weights, so they can be quantised once. Forward and the
input-gradient backward then both run on the FP8 tensor cores (Hopper / Ada, compute capability ≥ 8.9;
on CPU ``torch._scaled_mm`` runs too, which the tests use):

    forward    y  = x  @ Wᵀ :  x  quantised per row (this kernel) × W  quantised per output row (once)
    backward   gx = gy @ W  :  gy quantised per row (this kernel) × Wᵀ quantised per input column (once)

Both operands are ``float8_e4m3fn`` with one fp32 scale per row (the "row-wise" recipe: no delayed
amax history, no per-tensor outlier problem), and the product is written in the activations' dtype.
The weight is stored twice, ``W`` [N, K] and ``Wᵀ`` [K, N] (``_scaled_mm`` wants its second operand
column-major), so an FP8 layer takes the same memory as its bf16 weight; no activation is saved for
backward (there is no weight gradient).

The kernel: one program per row, two passes over the row (amax, then scale-and-cast). The scale is
the power of two ``s = 2^e``, the smallest with ``amax ≤ 448 · s``, and the stored value is ``x / s``
rounded to nearest even. A power of two costs no precision (e4m3 is a floating-point format: scaling
only moves the exponent) and makes ``x / s`` exact, so the kernel, the PyTorch reference and the GPU
agree bit for bit (with ``s = amax / 448`` an fp32 rounding of the product decides ties differently).
Under the Triton CPU interpreter the fp32 → e4m3 cast rounds ties away from zero, so the
interpreter build rounds explicitly (:func:`_round_e4m3`) to match the GPU and PyTorch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import INTERPRET
from .dispatch import device_capability, interpreter_active, use_triton

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
AMAX_EPS = 1e-12


@triton.jit
def _round_e4m3(y):
    """fp32 ``y`` (|y| ≤ 448) rounded to the e4m3 grid, to nearest even; exact in fp32."""
    bits = tl.abs(y).to(tl.uint32, bitcast=True)
    exp = ((bits >> 23) & 0xFF).to(tl.int32) - 127
    exp = tl.maximum(exp, -6)  # below 2^-6: the subnormal grid, spacing 2^-9
    spacing = tl.exp2((exp - 3).to(tl.float32))
    r = y / spacing  # exact: spacing is a power of two
    magic = 12582912.0  # 1.5 · 2^23: adding and subtracting it rounds |r| < 2^22 to nearest even
    r = (r + magic) - magic
    return r * spacing


@triton.jit
def _quant_rows_kernel(X, Q, S, N, stride_x, stride_q, FP8_MAX: tl.constexpr, EPS: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    amax = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, N, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + row * stride_x + cols, mask=cols < N, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(x))
    m = tl.maximum(tl.max(amax, axis=0), EPS)
    # power-of-two scale 2^e, the smallest with m <= 448 · 2^e (448 = 1.75 · 2^8), built from m's bits
    bits = m.to(tl.int32, bitcast=True)
    e = ((bits >> 23) & 0xFF) - 127 - 8 + ((bits & 0x7FFFFF) > 0x600000).to(tl.int32)
    inv = ((127 - e) << 23).to(tl.float32, bitcast=True)
    for start in range(0, N, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < N
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        y = tl.minimum(tl.maximum(x * inv, -FP8_MAX), FP8_MAX)
        if INTERPRET:
            y = _round_e4m3(y)
        tl.store(Q + row * stride_q + cols, y.to(Q.dtype.element_ty), mask=mask)
    tl.store(S + row, ((127 + e) << 23).to(tl.float32, bitcast=True))


def quantize_rows_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [M, K] → (e4m3 [M, K], fp32 scales [M, 1]) with ``x ≈ q.float() * scale``."""
    xf = x.float()
    amax = xf.abs().amax(dim=-1, keepdim=True).clamp(min=AMAX_EPS)
    mant, exp = torch.frexp(amax)  # amax = mant · 2^exp, mant in [0.5, 1)
    e = exp - 9 + (mant > 0.875).to(exp.dtype)  # smallest e with amax <= 448 · 2^e
    scale = torch.ldexp(torch.ones_like(amax), e)
    q = (xf * torch.ldexp(torch.ones_like(amax), -e)).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


def quantize_rows(x: torch.Tensor, mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise e4m3 quantisation of a 2-D ``x`` [M, K]: (q [M, K], scale [M, 1] fp32)."""
    if x.dim() != 2:
        raise ValueError(f"quantize_rows takes a 2-D tensor, got shape {tuple(x.shape)}")
    if not use_triton(x, matmul_heavy=False, mode=mode) or x.dtype == torch.float64:
        return quantize_rows_reference(x)
    if x.is_cuda and device_capability(x) < (8, 9):  # Triton has no e4m3 below sm_89; PyTorch's cast does
        return quantize_rows_reference(x)
    return _quantize_rows_triton(x)


def _quantize_rows_triton(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The launcher: block size and warps from the row length (a loop over blocks for long rows)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    m, k = x.shape
    q = torch.empty(m, k, dtype=FP8, device=x.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=x.device)
    if m and k:
        interp = interpreter_active() and not x.is_cuda
        block = min(triton.next_power_of_2(k), 256 if interp else 4096)
        warps = 1 if interp else (4 if block <= 1024 else 8)
        _quant_rows_kernel[(m,)](x, q, scale, k, x.stride(0), q.stride(0), FP8_MAX=FP8_MAX, EPS=AMAX_EPS,
                                 BLOCK=block, num_warps=warps)
    return q, scale


def scaled_matmul(aq: torch.Tensor, a_scale: torch.Tensor, bq: torch.Tensor, b_scale: torch.Tensor,
                  out_dtype: torch.dtype, fast_accum: bool = False) -> torch.Tensor:
    """``(aq·a_scale) @ (bq·b_scale)ᵀ`` for row-quantised ``aq`` [M, K] and ``bq`` [N, K] → [M, N].

    CUDA's row-wise FP8 GEMM writes bf16 only: other dtypes are cast from it there. ``fast_accum``
    skips Hopper's periodic promotion of the partial sums to fp32 (faster, slightly less exact): the
    forward uses it, the gradient GEMM does not (the recipe of torchao's float8 training)."""
    gemm_dtype = torch.bfloat16 if aq.is_cuda else out_dtype
    out = torch._scaled_mm(aq, bq.t(), scale_a=a_scale, scale_b=b_scale.t(), out_dtype=gemm_dtype,
                           use_fast_accum=fast_accum)
    return out if out.dtype == out_dtype else out.to(out_dtype)


class Fp8LinearFunction(torch.autograd.Function):
    """``x @ Wᵀ`` with a frozen FP8 ``W``; returns the gradient of ``x`` only.

    ``w_t`` (Wᵀ quantised per input column) may be None: the backward then multiplies by the
    dequantised ``W`` (slower; used by slices of a fused weight, which only serve generation)."""

    @staticmethod
    def forward(ctx, x, w, w_scale, w_t, w_t_scale, mode):
        xq, xs = quantize_rows(x, mode)
        ctx.save_for_backward(w, w_scale, w_t, w_t_scale)
        ctx.mode = mode
        return scaled_matmul(xq, xs, w, w_scale, x.dtype, fast_accum=True)

    @staticmethod
    def backward(ctx, gy):
        w, w_scale, w_t, w_t_scale = ctx.saved_tensors
        gy = gy.contiguous()
        if w_t is None:
            gx = gy @ (w.float() * w_scale).to(gy.dtype)
        else:
            gq, gs = quantize_rows(gy, ctx.mode)
            gx = scaled_matmul(gq, gs, w_t, w_t_scale, gy.dtype)
        return gx, None, None, None, None, None


def fp8_linear(x: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, w_t: torch.Tensor | None = None,
               w_t_scale: torch.Tensor | None = None, bias: torch.Tensor | None = None, mode: str = "auto") -> torch.Tensor:
    """``x`` [..., K] → [..., N] with row-quantised ``w`` [N, K] (+ ``w_t`` [K, N] for a fast backward)."""
    lead = x.shape[:-1]
    y = Fp8LinearFunction.apply(x.reshape(-1, x.shape[-1]), w, w_scale, w_t, w_t_scale, mode)
    y = y.reshape(*lead, w.shape[0])
    return y + bias if bias is not None else y


def fp8_linear_reference(x: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, w_t: torch.Tensor | None = None,
                         w_t_scale: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same arithmetic in fp32 on dequantised operands (what the FP8 GEMM computes, up to summation
    order): ``deq(q(x)) @ deq(W)ᵀ`` forward and ``deq(q(gy)) @ deq(Wᵀ)ᵀ`` backward."""
    return _EmulatedFp8Linear.apply(x, w, w_scale, w_t, w_t_scale) + (bias if bias is not None else 0)


class _EmulatedFp8Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, w_scale, w_t, w_t_scale):
        x2 = x.reshape(-1, x.shape[-1])
        xq, xs = quantize_rows_reference(x2)
        ctx.save_for_backward(w, w_scale, w_t, w_t_scale)
        ctx.lead = x.shape[:-1]
        y = (xq.float() * xs) @ (w.float() * w_scale).t()
        return y.to(x.dtype).reshape(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, gy):
        w, w_scale, w_t, w_t_scale = ctx.saved_tensors
        g2 = gy.reshape(-1, gy.shape[-1])
        if w_t is None:
            gx = g2.float() @ (w.float() * w_scale)
        else:
            gq, gs = quantize_rows_reference(g2)
            gx = (gq.float() * gs) @ (w_t.float() * w_t_scale).t()
        return gx.to(gy.dtype).reshape(*ctx.lead, w.shape[1]), None, None, None, None


__all__ = ["FP8", "FP8_MAX", "quantize_rows", "quantize_rows_reference", "scaled_matmul", "fp8_linear",
           "fp8_linear_reference", "Fp8LinearFunction"]
