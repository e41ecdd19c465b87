"""Small Triton helpers shared by the op files of ``scaling.kernels``.

Why this exists: the Triton CPU interpreter (``TRITON_INTERPRET=1``, triton 3.x) has two bf16
defects that would make CPU tests either fail or need tolerances too loose to catch bugs:

* ``x.to(tl.bfloat16)`` from fp32 *truncates* (round toward zero) instead of rounding to nearest
  even as the GPU (and PyTorch) do;
* ``tl.dot`` on bf16 operands multiplies the raw uint16 bit patterns (bf16 is stored as uint16).

:func:`to_dtype` performs the fp32 -> bf16 conversion with explicit round-to-nearest-even bit
arithmetic when (and only when) the kernels are built for the interpreter, and a plain ``.to`` on
GPU. :func:`dot` widens the (already rounded) operands to fp32 under the interpreter, which is the
product a tensor-core dot with fp32 accumulation computes, up to summation order. Kernels also load
bf16 values and immediately widen them to fp32 before any arithmetic (the interpreter would
otherwise compute on the bit patterns).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Fixed when this module is imported, i.e. when the kernels that use it are decorated.
INTERPRET: tl.constexpr = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def _f32_to_bf16_rne(x):
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    bits = bits + (((bits >> 16) & 1) + 0x7FFF)
    return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def to_dtype(x, DTYPE: tl.constexpr):
    """``x.to(DTYPE)`` with round-to-nearest-even for fp32 -> bf16 also under the interpreter."""
    if INTERPRET:
        if DTYPE == tl.bfloat16:
            if x.dtype == tl.bfloat16:
                return x
            else:
                return _f32_to_bf16_rne(x)
        else:
            return x.to(DTYPE)
    else:
        return x.to(DTYPE)


@triton.jit
def round_to(x, DTYPE: tl.constexpr):
    """fp32 ``x`` rounded to ``DTYPE`` and widened back to fp32 (mimics an eager op in ``DTYPE``)."""
    return to_dtype(x, DTYPE).to(tl.float32)


@triton.jit
def dot(a, b, INPUT_PRECISION: tl.constexpr):
    """``tl.dot(a, b)`` with fp32 accumulation (operands widened to fp32 under the interpreter)."""
    if INTERPRET:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=INPUT_PRECISION)
