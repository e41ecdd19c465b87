"""SwiGLU on the packed ``gate|up`` output of one concatenated GEMM: ``silu(x[..., :I]) * x[..., I:]``.

The fused LLaMA forward (``scaling.models.fast_llm``) computes gate and up with a single GEMM into
``[..., 2I]``. Splitting that into two tensors costs two ``contiguous`` copies forward and a ``cat``
of the two gradients backward; this kernel reads the packed rows directly and writes the gradient
packed, so the input-gradient GEMM of the concatenated weight reads it as is. Math in fp32 with the
eager rounding (``silu(gate)`` rounded to the input dtype before the product), like ``swiglu.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._triton_utils import round_to, to_dtype
from .dispatch import interpreter_active, use_triton


@triton.jit
def _fwd_kernel(X, O, I, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    g = tl.load(X + row * 2 * I + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(X + row * 2 * I + I + cols, mask=mask, other=0.0).to(tl.float32)
    a = round_to(g * tl.sigmoid(g), X.dtype.element_ty)
    tl.store(O + row * I + cols, to_dtype(a * u, O.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_kernel(DO, X, DX, I, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    do = tl.load(DO + row * I + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(X + row * 2 * I + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(X + row * 2 * I + I + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    a = round_to(g * sig, X.dtype.element_ty)
    da = round_to(do * u, X.dtype.element_ty)
    dg = da * sig * (1.0 + g * (1.0 - sig))
    tl.store(DX + row * 2 * I + cols, to_dtype(dg, DX.dtype.element_ty), mask=mask)
    tl.store(DX + row * 2 * I + I + cols, to_dtype(do * a, DX.dtype.element_ty), mask=mask)


def _block(interpret: bool) -> tuple[int, int]:
    return (256, 1) if interpret else (1024, 4)


class PackedSwiGLUFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`swiglu_packed`."""

    @staticmethod
    def forward(ctx, x):
        x = x.contiguous()
        inter = x.shape[-1] // 2
        rows = x.numel() // x.shape[-1]
        out = torch.empty(*x.shape[:-1], inter, dtype=x.dtype, device=x.device)
        BLOCK, warps = _block(interpreter_active() and not x.is_cuda)
        if rows and inter:
            _fwd_kernel[(rows, triton.cdiv(inter, BLOCK))](x, out, inter, BLOCK=BLOCK, num_warps=warps)
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        dout = dout.contiguous()
        inter = x.shape[-1] // 2
        rows = x.numel() // x.shape[-1]
        dx = torch.empty_like(x)
        BLOCK, warps = _block(interpreter_active() and not x.is_cuda)
        if rows and inter:
            _bwd_kernel[(rows, triton.cdiv(inter, BLOCK))](dout, x, dx, inter, BLOCK=BLOCK, num_warps=warps)
        return dx


def swiglu_packed_reference(x: torch.Tensor) -> torch.Tensor:
    """Eager reference: ``F.silu(x[..., :I]) * x[..., I:]`` for ``x`` ``[..., 2I]``."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def swiglu_packed(x: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """``x`` ``[..., 2I]`` (gate then up) → ``[..., I]``."""
    if x.shape[-1] % 2:
        raise ValueError(f"packed gate|up needs an even last dimension, got {tuple(x.shape)}")
    if not use_triton(x, matmul_heavy=False, mode=mode) or x.dtype == torch.float64:
        return swiglu_packed_reference(x)
    return PackedSwiGLUFunction.apply(x)


__all__ = ["swiglu_packed", "swiglu_packed_reference", "PackedSwiGLUFunction"]
