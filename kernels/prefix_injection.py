"""Prefix injection into a frozen LLM's input embeddings, and in-place-style slot overwrite.

Two ops used by the perceptual interface:

* :func:`inject_prefix` builds the LLM inputs in one kernel launch. ``prefix`` ``[B, P, D]`` (the
  perceptual tokens followed by the prompt tokens, already concatenated) and the embeddings of the
  text ``embed_weight[input_ids]`` (``embed_weight`` ``[V, D]``, ``input_ids`` ``[B, T]``) are written
  into ``inputs_embeds`` ``[B, P + T, D]``; the same launch writes ``attention_mask`` ``[B, P + T]``
  (``concat(ones(P), text_mask)``) and ``position_ids`` ``[B, P + T]`` (``cumsum(mask) - 1`` at real
  positions, ``1`` at padded positions: the HF ``generate`` convention). Padding may be on the left
  or on the right. Backward: the gradient reaches ``prefix`` (a slice of the output gradient, no
  kernel needed); ``embed_weight`` gets a gradient only if it requires one (it never does here:
  the LLM is frozen).

* :func:`overwrite_slots` replaces rows ``start .. start + n - 1`` of hidden states ``[B, S, D]``
  with ``tokens`` ``[B, n, D]`` (out of place, one pass): the inner-layer injection where the
  previous injected set is replaced in the hidden states of layer ``i``. Backward, one pass:
  ``d_hidden`` = grad with those rows zeroed, ``d_tokens`` = the grad rows.

Dtypes: outputs take the dtype of the LLM side (``embed_weight`` / ``hidden``); ``prefix`` / ``tokens``
are cast to it in the kernel and their gradients are cast back to their own dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import to_dtype
from .dispatch import interpreter_active, next_power_of_2, use_triton


# --------------------------------------------------------------------------------------------------
# Triton kernels
# --------------------------------------------------------------------------------------------------
@triton.jit
def _inject_prefix_kernel(
    EMB, IDS, MASK, PREFIX, OUT, OUT_MASK, OUT_POS,
    s_emb_v, s_emb_d,
    s_ids_b, s_ids_t,
    s_mask_b, s_mask_t,
    s_pre_b, s_pre_p, s_pre_d,
    s_out_b, s_out_s, s_out_d,
    P, T, D,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """grid = (B, cdiv(P + T, BLOCK_R), cdiv(D, BLOCK_D)): program (b, j, k) writes the tile
    rows [j*BLOCK_R, (j+1)*BLOCK_R) x cols [k*BLOCK_D, (k+1)*BLOCK_D) of batch b; programs (b, 0, 0)
    also write the attention mask and the position ids of batch b."""
    b = tl.program_id(0)
    j = tl.program_id(1)
    k = tl.program_id(2)
    S = P + T
    rows = j * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = k * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < S
    cmask = cols < D
    is_pre = rows < P
    is_txt = rmask & (rows >= P)
    tok = tl.load(IDS + b * s_ids_b + (rows - P) * s_ids_t, mask=is_txt, other=0).to(tl.int64)
    pre = tl.load(PREFIX + b * s_pre_b + rows[:, None] * s_pre_p + cols[None, :] * s_pre_d,
                  mask=is_pre[:, None] & cmask[None, :], other=0.0)
    emb = tl.load(EMB + tok[:, None] * s_emb_v + cols[None, :] * s_emb_d,
                  mask=is_txt[:, None] & cmask[None, :], other=0.0)
    x = tl.where(is_pre[:, None], to_dtype(pre, OUT.dtype.element_ty), to_dtype(emb, OUT.dtype.element_ty))
    tl.store(OUT + b * s_out_b + rows[:, None] * s_out_s + cols[None, :] * s_out_d, x,
             mask=rmask[:, None] & cmask[None, :])

    if (j == 0) & (k == 0):
        # Prefix part of the mask / positions: all real, positions 0 .. P-1.
        offs_t = tl.arange(0, BLOCK_T)
        for p0 in range(0, P, BLOCK_T):
            pp = p0 + offs_t
            mp = pp < P
            tl.store(OUT_MASK + b * S + pp, tl.full([BLOCK_T], 1, OUT_MASK.dtype.element_ty), mask=mp)
            tl.store(OUT_POS + b * S + pp, pp.to(tl.int64), mask=mp)
        # Text part: running inclusive cumsum of the mask (starting at P), 1 at padded positions.
        carry = tl.sum(tl.zeros([BLOCK_T], dtype=tl.int64), 0) + P
        for t0 in range(0, T, BLOCK_T):
            tt = t0 + offs_t
            mt = tt < T
            mval = tl.load(MASK + b * s_mask_b + tt * s_mask_t, mask=mt, other=0)
            real = (mval != 0) & mt
            c = tl.cumsum(real.to(tl.int64), 0) + carry
            pos = tl.where(real, c - 1, 1)
            tl.store(OUT_MASK + b * S + P + tt, mval, mask=mt)
            tl.store(OUT_POS + b * S + P + tt, pos, mask=mt)
            carry = carry + tl.sum(real.to(tl.int64), 0)


@triton.jit
def _overwrite_slots_fwd_kernel(
    H, TOK, OUT,
    s_h_b, s_h_s, s_h_d,
    s_t_b, s_t_n, s_t_d,
    s_o_b, s_o_s, s_o_d,
    R, S, D, start, n,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """grid = (cdiv(B * S, BLOCK_R), cdiv(D, BLOCK_D)): one [rows, cols] tile per program."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < R
    cmask = cols < D
    b = rows // S
    s = rows % S
    in_slot = (s >= start) & (s < start + n)
    m_tok = (rmask & in_slot)[:, None] & cmask[None, :]
    m_hid = (rmask & (~in_slot))[:, None] & cmask[None, :]
    tok = tl.load(TOK + b[:, None] * s_t_b + (s - start)[:, None] * s_t_n + cols[None, :] * s_t_d, mask=m_tok, other=0.0)
    hid = tl.load(H + b[:, None] * s_h_b + s[:, None] * s_h_s + cols[None, :] * s_h_d, mask=m_hid, other=0.0)
    x = tl.where(in_slot[:, None], to_dtype(tok, OUT.dtype.element_ty), to_dtype(hid, OUT.dtype.element_ty))
    tl.store(OUT + b[:, None] * s_o_b + s[:, None] * s_o_s + cols[None, :] * s_o_d, x,
             mask=rmask[:, None] & cmask[None, :])


@triton.jit
def _overwrite_slots_bwd_kernel(
    G, DH, DT,
    s_g_b, s_g_s, s_g_d,
    s_dh_b, s_dh_s, s_dh_d,
    s_dt_b, s_dt_n, s_dt_d,
    R, S, D, start, n,
    WRITE_DH: tl.constexpr, WRITE_DT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """grid = (cdiv(B * S, BLOCK_R), cdiv(D, BLOCK_D)): reads each grad element once, routes it to
    d_hidden (zero inside the slots) and/or d_tokens."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < R
    cmask = cols < D
    b = rows // S
    s = rows % S
    in_slot = (s >= start) & (s < start + n)
    m_all = rmask[:, None] & cmask[None, :]
    g = tl.load(G + b[:, None] * s_g_b + s[:, None] * s_g_s + cols[None, :] * s_g_d, mask=m_all, other=0.0)
    if WRITE_DH:
        dh = tl.where(in_slot[:, None], tl.zeros_like(to_dtype(g, DH.dtype.element_ty)), to_dtype(g, DH.dtype.element_ty))
        tl.store(DH + b[:, None] * s_dh_b + s[:, None] * s_dh_s + cols[None, :] * s_dh_d, dh, mask=m_all)
    if WRITE_DT:
        tl.store(DT + b[:, None] * s_dt_b + (s - start)[:, None] * s_dt_n + cols[None, :] * s_dt_d,
                 to_dtype(g, DT.dtype.element_ty), mask=m_all & in_slot[:, None])


# --------------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------------
def _tile(D: int, interpret: bool) -> tuple[int, int, int]:
    """(BLOCK_R rows, BLOCK_D cols, num_warps) of the copy tiles."""
    if interpret:
        return 16, min(next_power_of_2(D), 256), 1
    block_d = min(next_power_of_2(D), 1024)
    return 4, block_d, 4


def _inject_prefix_fwd(embed_weight, input_ids, text_mask, prefix):
    B, T = input_ids.shape
    P = prefix.shape[1]
    D = embed_weight.shape[1]
    S = P + T
    interpret = interpreter_active() and not embed_weight.is_cuda
    out = torch.empty((B, S, D), device=embed_weight.device, dtype=embed_weight.dtype)
    mask_src = text_mask.view(torch.uint8) if text_mask.dtype == torch.bool else text_mask
    out_mask = torch.empty((B, S), device=embed_weight.device, dtype=mask_src.dtype)
    out_pos = torch.empty((B, S), device=embed_weight.device, dtype=torch.long)
    BLOCK_R, BLOCK_D, warps = _tile(D, interpret)
    BLOCK_T = min(next_power_of_2(max(T, P, 1)), 1024)
    prefix_arg = prefix if P > 0 else out  # never dereferenced when P == 0
    s_pre = prefix.stride() if P > 0 else (0, 0, 0)
    if B > 0 and S > 0:
        _inject_prefix_kernel[(B, triton.cdiv(S, BLOCK_R), triton.cdiv(max(D, 1), BLOCK_D))](
            embed_weight, input_ids, mask_src, prefix_arg, out, out_mask, out_pos,
            *embed_weight.stride(), *input_ids.stride(), *mask_src.stride(), *s_pre, *out.stride(),
            P, T, D,
            BLOCK_R=BLOCK_R, BLOCK_D=BLOCK_D, BLOCK_T=BLOCK_T, num_warps=warps,
        )
    if text_mask.dtype == torch.bool:
        out_mask = out_mask.view(torch.bool)
    return out, out_mask, out_pos


class InjectPrefixFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`inject_prefix` (grad to ``prefix``; to ``embed_weight`` only if needed)."""

    @staticmethod
    def forward(ctx, embed_weight, input_ids, text_mask, prefix):
        out, out_mask, out_pos = _inject_prefix_fwd(embed_weight, input_ids, text_mask, prefix)
        ctx.P = prefix.shape[1]
        ctx.prefix_dtype = prefix.dtype
        ctx.embed_shape = embed_weight.shape
        ctx.embed_dtype = embed_weight.dtype
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(input_ids)
        ctx.mark_non_differentiable(out_mask, out_pos)
        return out, out_mask, out_pos

    @staticmethod
    def backward(ctx, grad_out, _grad_mask=None, _grad_pos=None):
        P = ctx.P
        d_prefix = d_weight = None
        if ctx.needs_input_grad[3]:
            d_prefix = grad_out[:, :P].to(ctx.prefix_dtype)
        if ctx.needs_input_grad[0]:
            (input_ids,) = ctx.saved_tensors
            g = grad_out[:, P:].reshape(-1, grad_out.shape[-1])
            d_weight = torch.zeros(ctx.embed_shape, device=grad_out.device, dtype=torch.float32)
            d_weight.index_add_(0, input_ids.reshape(-1), g.float())
            d_weight = d_weight.to(ctx.embed_dtype)
        return d_weight, None, None, d_prefix


def _overwrite_fwd(hidden, tokens, start):
    B, S, D = hidden.shape
    n = tokens.shape[1]
    interpret = interpreter_active() and not hidden.is_cuda
    out = torch.empty((B, S, D), device=hidden.device, dtype=hidden.dtype)
    BLOCK_R, BLOCK_D, warps = _tile(D, interpret)
    if B * S == 0 or D == 0:
        return out
    tok_arg, s_tok = (tokens, tokens.stride()) if n > 0 else (hidden, (0, 0, 0))
    _overwrite_slots_fwd_kernel[(triton.cdiv(B * S, BLOCK_R), triton.cdiv(D, BLOCK_D))](
        hidden, tok_arg, out, *hidden.stride(), *s_tok, *out.stride(),
        B * S, S, D, start, n, BLOCK_R=BLOCK_R, BLOCK_D=BLOCK_D, num_warps=warps,
    )
    return out


class OverwriteSlotsFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`overwrite_slots`."""

    @staticmethod
    def forward(ctx, hidden, tokens, start: int):
        ctx.start = start
        ctx.n = tokens.shape[1]
        ctx.hidden_dtype = hidden.dtype
        ctx.tokens_dtype = tokens.dtype
        return _overwrite_fwd(hidden, tokens, start)

    @staticmethod
    def backward(ctx, grad):
        need_dh, need_dt = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        B, S, D = grad.shape
        n, start = ctx.n, ctx.start
        dh = torch.empty((B, S, D), device=grad.device, dtype=ctx.hidden_dtype) if need_dh else None
        dt = torch.empty((B, n, D), device=grad.device, dtype=ctx.tokens_dtype) if need_dt else None
        if (need_dh or need_dt) and B * S > 0 and D > 0:
            interpret = interpreter_active() and not grad.is_cuda
            BLOCK_R, BLOCK_D, warps = _tile(D, interpret)
            dummy = dh if dh is not None else dt
            _overwrite_slots_bwd_kernel[(triton.cdiv(B * S, BLOCK_R), triton.cdiv(D, BLOCK_D))](
                grad, dh if need_dh else dummy, dt if need_dt else dummy,
                *grad.stride(),
                *(dh.stride() if need_dh else (0, 0, 0)),
                *(dt.stride() if need_dt else (0, 0, 0)),
                B * S, S, D, start, n,
                WRITE_DH=need_dh, WRITE_DT=need_dt, BLOCK_R=BLOCK_R, BLOCK_D=BLOCK_D, num_warps=warps,
            )
        return dh, dt, None


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def _position_ids_reference(mask: torch.Tensor) -> torch.Tensor:
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def inject_prefix_reference(embed_weight, input_ids, text_mask, prefix):
    """PyTorch reference of :func:`inject_prefix` (same signature minus ``mode``)."""
    B, T = input_ids.shape
    P = prefix.shape[1]
    text = torch.nn.functional.embedding(input_ids, embed_weight)
    inputs_embeds = torch.cat([prefix.to(embed_weight.dtype), text], dim=1)
    ones = torch.ones((B, P), device=text_mask.device, dtype=text_mask.dtype)
    attention_mask = torch.cat([ones, text_mask], dim=1)
    return inputs_embeds, attention_mask, _position_ids_reference(attention_mask)


def inject_prefix(
    embed_weight: torch.Tensor,
    input_ids: torch.Tensor,
    text_mask: torch.Tensor,
    prefix: torch.Tensor,
    mode: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build a frozen LLM's inputs from an injected prefix and text tokens, in one kernel.

    Args:
        embed_weight: ``[V, D]`` frozen input-embedding table of the LLM.
        input_ids: ``[B, T]`` text token ids (int32/int64).
        text_mask: ``[B, T]`` 1 = real token, 0 = padding (left or right padding); any int/bool/float dtype.
        prefix: ``[B, P, D]`` perceptual tokens followed by the prompt tokens (``P`` may be 0).
        mode: ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns:
        ``inputs_embeds`` ``[B, P+T, D]`` (dtype of ``embed_weight``) = ``concat(prefix, embed_weight[input_ids])``,
        ``attention_mask`` ``[B, P+T]`` (dtype of ``text_mask``) = ``concat(ones(P), text_mask)``,
        ``position_ids`` ``[B, P+T]`` long = ``cumsum(mask) - 1`` at real positions, 1 at padded ones.
    """
    if input_ids.dim() != 2 or text_mask.shape != input_ids.shape:
        raise ValueError(f"input_ids and text_mask must be [B, T], got {tuple(input_ids.shape)}, {tuple(text_mask.shape)}")
    if prefix.dim() != 3 or prefix.shape[0] != input_ids.shape[0] or prefix.shape[2] != embed_weight.shape[1]:
        raise ValueError(f"prefix must be [B, P, D], got {tuple(prefix.shape)} for input_ids {tuple(input_ids.shape)}, "
                         f"embed_weight {tuple(embed_weight.shape)}")
    if not use_triton(embed_weight, matmul_heavy=False, mode=mode):
        return inject_prefix_reference(embed_weight, input_ids, text_mask, prefix)
    return InjectPrefixFunction.apply(embed_weight, input_ids, text_mask, prefix)


def overwrite_slots_reference(hidden: torch.Tensor, tokens: torch.Tensor, start: int) -> torch.Tensor:
    """PyTorch reference of :func:`overwrite_slots`."""
    n = tokens.shape[1]
    return torch.cat([hidden[:, :start], tokens.to(hidden.dtype), hidden[:, start + n:]], dim=1)


def overwrite_slots(hidden: torch.Tensor, tokens: torch.Tensor, start: int, mode: str = "auto") -> torch.Tensor:
    """Return ``hidden`` ``[B, S, D]`` with rows ``start .. start+n-1`` replaced by ``tokens`` ``[B, n, D]``.

    Out of place (the input is not modified), one read and one write per element. Output dtype is
    ``hidden``'s. Backward: ``d_hidden`` = grad with the slot rows zeroed, ``d_tokens`` = grad slot rows.
    """
    if hidden.dim() != 3 or tokens.dim() != 3 or tokens.shape[0] != hidden.shape[0] or tokens.shape[2] != hidden.shape[2]:
        raise ValueError(f"hidden must be [B, S, D] and tokens [B, n, D], got {tuple(hidden.shape)}, {tuple(tokens.shape)}")
    start = int(start)
    n = tokens.shape[1]
    if start < 0 or start + n > hidden.shape[1]:
        raise ValueError(f"slots [{start}, {start + n}) do not fit in {hidden.shape[1]} positions")
    if not use_triton(hidden, matmul_heavy=False, mode=mode):
        return overwrite_slots_reference(hidden, tokens, start)
    return OverwriteSlotsFunction.apply(hidden, tokens, start)


__all__ = [
    "inject_prefix",
    "inject_prefix_reference",
    "overwrite_slots",
    "overwrite_slots_reference",
    "InjectPrefixFunction",
    "OverwriteSlotsFunction",
]
