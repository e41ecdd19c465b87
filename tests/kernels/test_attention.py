"""Triton flash attention vs ``F.scaled_dot_product_attention`` (forward and dq/dk/dv).

Errors are measured against an fp64 evaluation of the reference on the same (rounded) inputs, as
``max|err| / max|ref|``; the bounds are a few times the rounding error of the dtype, so a wrong
mask, scale, online-softmax rescale or gradient term fails them by orders of magnitude.
"""

from __future__ import annotations

import math

import pytest
import torch

from scaling.kernels.attention import attention, attention_reference

HAS_CUDA = torch.cuda.is_available()
# the kernel tests run on the GPU when there is one; V100 (sm_70) has no bf16
NO_BF16 = pytest.mark.skipif(HAS_CUDA and not torch.cuda.is_bf16_supported(), reason="this GPU has no bf16 (e.g. V100)")
BF16 = pytest.param(torch.bfloat16, marks=NO_BF16)
DTYPES = [torch.float32, torch.float16, BF16]
# max|err| / max|ref| bounds (observed under the interpreter: fp32 ~3e-7, fp16 ~3e-4, bf16 ~2e-3)
REL_TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def _check(B, H, NQ, NK, D, dtype, device, scale=None, layout="bhnd", grads=(True, True, True)):

    def make(n):
        if layout == "bhnd":
            return torch.randn(B, H, n, D, device=device, dtype=dtype)
        # [B, N, H, D] storage viewed as [B, H, N, D] (what a projection + view + transpose gives)
        return torch.randn(B, n, H, D, device=device, dtype=dtype).transpose(1, 2)

    q, k, v = make(NQ), make(NK), make(NK)
    for t, g in zip((q, k, v), grads):
        t.requires_grad_(g)
    out = attention(q, k, v, scale=scale, mode="triton")
    assert out.shape == (B, H, NQ, D) and out.dtype == dtype
    do = torch.randn_like(out)
    wrt = [t for t in (q, k, v) if t.requires_grad]
    grads_tr = torch.autograd.grad(out, wrt, do)

    q64, k64, v64 = (t.detach().double().requires_grad_(t.requires_grad) for t in (q, k, v))
    ref = attention_reference(q64, k64, v64, scale=scale)
    wrt64 = [t for t in (q64, k64, v64) if t.requires_grad]
    grads_ref = torch.autograd.grad(ref, wrt64, do.double())

    tol = REL_TOL[dtype]
    assert _rel_err(out, ref) < tol, f"forward rel err {_rel_err(out, ref):.2e}"
    for name, a, e in zip("qkv", grads_tr, grads_ref):
        assert a.shape == e.shape and a.dtype == dtype
        err = _rel_err(a, e)
        assert err < tol, f"d{name} rel err {err:.2e} >= {tol}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize(
    "B,H,NQ,NK,D",
    [
        (1, 2, 33, 257, 80),   # Nq != Nk, non-power-of-two head dim and token counts
        (2, 1, 41, 41, 64),    # self-attention, tail blocks in both directions
        (1, 1, 32, 289, 128),  # the QPMapper's last layer: 32 queries over 257 + 32 tokens
    ],
)
def test_attention_matches_sdpa(B, H, NQ, NK, D, dtype, device):
    _check(B, H, NQ, NK, D, dtype, device)


def test_attention_strided_layout_and_custom_scale(device):
    _check(2, 2, 19, 37, 48, torch.float32, device, scale=0.3, layout="bnhd")


def test_attention_only_some_inputs_need_grad(device):
    _check(1, 2, 17, 29, 32, torch.float16, device, grads=(True, False, False))
    _check(1, 2, 17, 29, 32, torch.float16, device, grads=(False, True, True))


def test_attention_default_scale_and_modes(device):
    q = torch.randn(1, 2, 9, 16, device=device)
    k = torch.randn(1, 2, 11, 16, device=device)
    v = torch.randn(1, 2, 11, 16, device=device)
    ref = attention(q, k, v, mode="torch")
    tr = attention(q, k, v, mode="triton")
    explicit = attention(q, k, v, scale=1 / math.sqrt(16), mode="triton")
    torch.testing.assert_close(tr, ref, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(tr, explicit, atol=0, rtol=0)
    with pytest.raises(ValueError):
        attention(q, k, v, mode="bogus")


def test_attention_large_logits_are_stable(device):
    # Scores of order 1e3: a softmax without max-subtraction would overflow.
    q = torch.randn(1, 1, 20, 16, device=device) * 30
    k = torch.randn(1, 1, 70, 16, device=device) * 30
    v = torch.randn(1, 1, 70, 16, device=device)
    out = attention(q, k, v, mode="triton")
    ref = attention_reference(q.double(), k.double(), v.double())
    assert torch.isfinite(out).all()
    assert _rel_err(out, ref) < 1e-4  # fp32 rounding of scores ~1e3 dominates


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [BF16, torch.float16, torch.float32], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("NQ", [289, 32])
def test_attention_real_shapes_gpu(NQ, dtype):
    # QPMapper: B=32, H=8, 257 + 32 tokens, head dim 128; last layer computes only 32 query rows.
    _check(32, 8, NQ, 289, 128, dtype, "cuda", layout="bnhd")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@NO_BF16
@pytest.mark.parametrize("D", [64, 80, 96])
def test_attention_other_head_dims_gpu(D):
    _check(4, 4, 300, 517, D, torch.bfloat16, "cuda")
