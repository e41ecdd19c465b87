"""Fused, chunked lm-head + (label-smoothed) cross-entropy on the target tokens only.

The frozen LLM's final hidden states at the positions that predict a target token are gathered
into ``hidden`` ``[N, D]`` (e.g. N = 32 captions x 24 tokens = 768, D = 4096), the lm-head weight is
``weight`` ``[V, D]`` (V = 32000), and ``labels`` ``[N]``. The plain path materialises ``[N, V]`` logits
in bf16, then an fp32 copy, then fp32 softmax/gradient tensors (several hundred MB per step);
this op never holds more than one chunk of logits:

forward (Liger-Kernel's fused linear cross-entropy design), for each chunk of ``C`` rows:
  1. ``logits_c = hidden_c @ weight.T (+ bias)``  -- cuBLAS, input dtype, into one reused buffer ``[C, V]``;
  2. a Triton kernel (one program per row) streams the row over V in blocks with an online
     log-sum-exp in fp32, computes the row's loss, and overwrites the logits **in place** with the
     *unnormalised* row gradient ``g = softmax - (1 - ls) * onehot - ls / V`` (zero for ignored rows);
  3. ``d_hidden_c = g_c @ weight`` (and ``d_weight += g_c.T @ hidden_c`` in fp32 only if
     ``weight.requires_grad``, ``d_bias += sum(g_c)`` only if ``bias.requires_grad``).
backward: the stored gradients times ``grad_output / n_valid``, multiplied in fp32 and rounded to
the input dtype once. Neither the 1/n_valid factor nor the loss scale ever passes through a 16-bit
number on its own: a GradScaler / DeepSpeed fp16 scale of 65536 is not representable in fp16 (it
would turn every gradient entry into inf), and dividing by n_valid before the scale would flush
small probabilities to zero (fp16's smallest subnormal is 6e-8). Entries of ``g`` lie in [-1, 1],
so they never overflow; with fp16 the trainable-head gradient ``g.T @ hidden`` is a sum of C rows
and is accumulated from fp32 operands.

The loss is the mean over non-ignored rows of ``lse - (1 - ls) * z_y - (ls / V) * sum_j z_j``, i.e.
exactly ``F.cross_entropy(logits.float(), labels, label_smoothing=ls, ignore_index=ignore_index)``.
If every row is ignored the loss is NaN (0 / 0), as in PyTorch; the gradients are then zero.
Labels must lie in ``[0, V)`` or equal ``ignore_index`` (not checked on the device).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._triton_utils import to_dtype
from .dispatch import interpreter_active, next_power_of_2, use_triton

# Largest block of the vocabulary one program holds in registers per step (tests lower it to
# exercise the online log-sum-exp across several blocks).
_MAX_BLOCK_V = 4096
_MAX_BLOCK_V_INTERPRET = 1024


# --------------------------------------------------------------------------------------------------
# Triton kernel
# --------------------------------------------------------------------------------------------------
@triton.jit
def _ce_loss_grad_kernel(
    LOGITS, s_logits_n,
    LABELS, LOSS,
    V, ignore_index,
    eps_over_v, one_minus_ls,
    HAS_SMOOTHING: tl.constexpr, WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):
    """One program per row of the chunk: loss[row] and, if WRITE_GRAD, logits[row] <- d loss[row] / d logits[row]."""
    row = tl.program_id(0).to(tl.int64)
    ptr = LOGITS + row * s_logits_n
    offs = tl.arange(0, BLOCK_V)
    y = tl.load(LABELS + row).to(tl.int64)

    if y == ignore_index:
        tl.store(LOSS + row, 0.0)
        if WRITE_GRAD:
            for v0 in range(0, V, BLOCK_V):
                cols = v0 + offs
                tl.store(ptr + cols, tl.zeros([BLOCK_V], dtype=LOGITS.dtype.element_ty), mask=cols < V)
        return

    # pass 1: online max / sum-exp (and the plain sum of logits for label smoothing)
    m = float("-inf")
    d = 0.0
    sum_z = 0.0
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + offs
        mask = cols < V
        z = tl.load(ptr + cols, mask=mask, other=0.0).to(tl.float32)
        z = tl.where(mask, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, 0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), 0)
        m = m_new
        if HAS_SMOOTHING:
            sum_z += tl.sum(tl.where(mask, z, 0.0), 0)
    lse = m + tl.log(d)
    z_y = tl.load(ptr + y).to(tl.float32)
    loss = lse - one_minus_ls * z_y
    if HAS_SMOOTHING:
        loss = loss - eps_over_v * sum_z
    tl.store(LOSS + row, loss)

    # pass 2: gradient of this row's loss w.r.t. its logits (not yet divided by n_valid), in place
    if WRITE_GRAD:
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + offs
            mask = cols < V
            z = tl.load(ptr + cols, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(z - lse) - eps_over_v
            g = tl.where(cols == y, g - one_minus_ls, g)
            tl.store(ptr + cols, to_dtype(g, LOGITS.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------------
# Launcher
# --------------------------------------------------------------------------------------------------
def _default_chunk_size(N: int, D: int, V: int) -> int:
    # Liger's rule (one chunk of logits ~ the size of `hidden`), at least 256 rows so the matmuls
    # stay efficient.
    inc = triton.cdiv(V, max(D, 1))
    return max(1, min(N, max(256, next_power_of_2(triton.cdiv(N, inc)))))


def _flce_forward(hidden, weight, labels, bias, label_smoothing, ignore_index, chunk_size,
                  need_dh: bool, need_dw: bool, need_db: bool):
    N, D = hidden.shape
    V = weight.shape[0]
    interpret = interpreter_active() and not hidden.is_cuda
    write_grad = need_dh or need_dw or need_db
    labels = labels.contiguous()

    valid = labels != ignore_index
    n_valid = valid.sum()
    inv_n = 1.0 / n_valid.clamp(min=1).to(torch.float32)  # device scalar: no host sync

    C = int(chunk_size) if chunk_size else _default_chunk_size(N, D, V)
    C = max(1, min(C, max(N, 1)))
    max_block = _MAX_BLOCK_V_INTERPRET if interpret else _MAX_BLOCK_V
    BLOCK_V = min(next_power_of_2(V), max_block)
    warps = 1 if interpret else (8 if BLOCK_V >= 2048 else 4)

    loss_rows = torch.empty(N, device=hidden.device, dtype=torch.float32)
    d_hidden = torch.empty_like(hidden, memory_format=torch.contiguous_format) if need_dh else None
    d_weight = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if need_dw else None
    d_bias = torch.zeros(V, device=weight.device, dtype=torch.float32) if need_db else None
    buf = torch.empty((min(C, N), V), device=hidden.device, dtype=hidden.dtype)
    wT = weight.t()
    ls = float(label_smoothing)

    for s in range(0, N, C):
        e = min(s + C, N)
        h = hidden[s:e]
        logits = buf[: e - s]
        if bias is not None:
            torch.addmm(bias.to(hidden.dtype), h, wT, out=logits)
        else:
            torch.mm(h, wT, out=logits)
        _ce_loss_grad_kernel[(e - s,)](
            logits, logits.stride(0), labels[s:e], loss_rows[s:e],
            V, ignore_index, ls / V, 1.0 - ls,
            HAS_SMOOTHING=ls > 0.0, WRITE_GRAD=write_grad, BLOCK_V=BLOCK_V, num_warps=warps,
        )
        if need_dh:
            torch.mm(logits, weight, out=d_hidden[s:e])
        if need_dw:
            if hidden.dtype == torch.float16:  # a sum of C rows of |g| <= 1 times |h| may pass 65504
                d_weight += torch.mm(logits.t().float(), h.float())
            else:
                d_weight += torch.mm(logits.t(), h).float()
        if need_db:
            d_bias += logits.float().sum(0)

    loss = loss_rows.sum() / n_valid.to(torch.float32)
    return loss, d_hidden, d_weight, d_bias, inv_n


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """Autograd wrapper: gradients are computed during the forward (not yet divided by n_valid) and
    scaled by ``grad_output / n_valid`` in fp32 in the backward."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, bias, label_smoothing, ignore_index, chunk_size):
        need_dh = ctx.needs_input_grad[0]
        need_dw = ctx.needs_input_grad[1]
        need_db = bias is not None and ctx.needs_input_grad[3]
        loss, dh, dw, db, inv_n = _flce_forward(hidden, weight, labels, bias, label_smoothing, ignore_index,
                                         chunk_size, need_dh, need_dw, need_db)
        ctx.w_dtype = weight.dtype
        ctx.b_dtype = bias.dtype if bias is not None else None
        ctx.save_for_backward(
            dh if dh is not None else torch.empty(0),
            dw if dw is not None else torch.empty(0),
            db if db is not None else torch.empty(0),
            inv_n,
        )
        ctx.has = (dh is not None, dw is not None, db is not None)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        dh, dw, db, inv_n = ctx.saved_tensors
        has_dh, has_dw, has_db = ctx.has
        g = grad_output.to(torch.float32) * inv_n  # fp32: a loss scale of 65536 is inf in fp16
        d_hidden = (dh.float() * g).to(dh.dtype) if has_dh else None
        d_weight = (dw * g).to(ctx.w_dtype) if has_dw else None
        d_bias = (db * g).to(ctx.b_dtype) if has_db else None
        return d_hidden, d_weight, None, d_bias, None, None, None


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def target_cross_entropy_reference(hidden, weight, labels, label_smoothing: float = 0.0, ignore_index: int = -100,
                                   bias=None):
    """PyTorch reference: full logits (input dtype) then ``F.cross_entropy(logits.float(), ...)``."""
    logits = F.linear(hidden, weight, bias)
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, ignore_index=ignore_index)


def target_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
    mode: str = "auto",
) -> torch.Tensor:
    """Mean label-smoothed cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels``.

    Args:
        hidden: ``[N, D]`` final hidden states at the positions predicting a target token.
        weight: ``[V, D]`` lm-head weight (gets a gradient only if it requires one).
        labels: ``[N]`` int64 targets, ``ignore_index`` rows are skipped.
        label_smoothing: as in ``F.cross_entropy``.
        ignore_index: label value to skip.
        bias: optional ``[V]`` lm-head bias.
        chunk_size: rows per chunk (default: Liger's rule, >= 256 rows).
        mode: ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns:
        0-dim fp32 loss.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden must be [N, D] and weight [V, D], got {tuple(hidden.shape)}, {tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels must be [N], got {tuple(labels.shape)} for hidden {tuple(hidden.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if not use_triton(hidden, matmul_heavy=True, mode=mode):
        return target_cross_entropy_reference(hidden, weight, labels, label_smoothing, ignore_index, bias)
    if mode == "auto" and (weight.dtype != hidden.dtype or hidden.dtype == torch.float64):
        return target_cross_entropy_reference(hidden, weight, labels, label_smoothing, ignore_index, bias)
    if weight.dtype != hidden.dtype:
        raise ValueError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must share a dtype")
    grad_wanted = torch.is_grad_enabled() and (
        hidden.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not grad_wanted:
        loss, _, _, _, _ = _flce_forward(hidden, weight, labels, bias, label_smoothing, ignore_index, chunk_size,
                                      False, False, False)
        return loss
    return FusedLinearCrossEntropyFunction.apply(hidden, weight, labels, bias, float(label_smoothing),
                                                 int(ignore_index), chunk_size)


__all__ = [
    "target_cross_entropy",
    "target_cross_entropy_reference",
    "FusedLinearCrossEntropyFunction",
]
