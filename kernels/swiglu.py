"""Fused SwiGLU activation ``silu(gate) * up`` (forward + backward) for LLaMA-family MLPs.

In ``LlamaMLP.forward`` (``down_proj(act_fn(gate_proj(x)) * up_proj(x))``) the activation and the
product are two eager kernels plus a saved intermediate; this op is one elementwise kernel each
way and saves only ``gate`` and ``up`` (the activation is recomputed in the backward).

Shapes: ``gate``, ``up`` ``[batch, tokens, intermediate]`` (any leading dims, same shape and dtype).
The eager rounding is reproduced: ``silu(gate)`` is rounded to the input dtype before the product,
and in the backward the gradient w.r.t. the activation is rounded before ``silu'``; math is fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._triton_utils import round_to, to_dtype
from .dispatch import interpreter_active, use_triton


@triton.jit
def _swiglu_fwd_kernel(G, U, O, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    a = round_to(g * tl.sigmoid(g), G.dtype.element_ty)
    tl.store(O + offs, to_dtype(a * u, O.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(DO, G, U, DG, DU, n, NEED_DG: tl.constexpr, NEED_DU: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    do = tl.load(DO + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    if NEED_DU:
        a = round_to(g * sig, G.dtype.element_ty)
        tl.store(DU + offs, to_dtype(do * a, DU.dtype.element_ty), mask=mask)
    if NEED_DG:
        u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
        da = round_to(do * u, G.dtype.element_ty)
        dg = da * sig * (1.0 + g * (1.0 - sig))
        tl.store(DG + offs, to_dtype(dg, DG.dtype.element_ty), mask=mask)


def _block(interpret: bool) -> tuple[int, int]:
    return (1024, 1) if interpret else (2048, 8)


class SwiGLUFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`swiglu`."""

    @staticmethod
    def forward(ctx, gate, up):
        gate_c, up_c = gate.contiguous(), up.contiguous()
        out = torch.empty_like(gate_c)
        n = gate_c.numel()
        BLOCK, warps = _block(interpreter_active() and not gate.is_cuda)
        if n > 0:
            _swiglu_fwd_kernel[(triton.cdiv(n, BLOCK),)](gate_c, up_c, out, n, BLOCK=BLOCK, num_warps=warps)
        ctx.save_for_backward(gate_c, up_c)
        return out

    @staticmethod
    def backward(ctx, dout):
        gate, up = ctx.saved_tensors
        need_dg, need_du = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dout = dout.contiguous()
        n = gate.numel()
        dg = torch.empty_like(gate) if need_dg else None
        du = torch.empty_like(up) if need_du else None
        BLOCK, warps = _block(interpreter_active() and not gate.is_cuda)
        if n > 0 and (need_dg or need_du):
            _swiglu_bwd_kernel[(triton.cdiv(n, BLOCK),)](
                dout, gate, up, dg if need_dg else dout, du if need_du else dout, n,
                NEED_DG=need_dg, NEED_DU=need_du, BLOCK=BLOCK, num_warps=warps,
            )
        return dg, du


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Eager reference: ``F.silu(gate) * up``."""
    return F.silu(gate) * up


def swiglu(gate: torch.Tensor, up: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """``silu(gate) * up``; ``gate``, ``up`` ``[..., intermediate]`` of the same shape and dtype."""
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(f"gate and up must match, got {tuple(gate.shape)} {gate.dtype} / {tuple(up.shape)} {up.dtype}")
    if not use_triton(gate, matmul_heavy=False, mode=mode) or gate.dtype == torch.float64:
        return swiglu_reference(gate, up)
    return SwiGLUFunction.apply(gate, up)


__all__ = ["swiglu", "swiglu_reference", "SwiGLUFunction"]
