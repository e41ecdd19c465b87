"""Fused RMSNorm vs HF ``LlamaRMSNorm`` semantics (forward, d_input, d_weight).

The kernel reproduces the eager rounding steps, so forward and d_input must agree with the eager
reference in the same dtype to within one unit in the last place of that dtype (rtol = eps), and
d_weight (a reduction over rows, summed in another order) to a few ulps.
"""

from __future__ import annotations

import pytest
import torch

from scaling.kernels.rms_norm import rms_norm, rms_norm_reference

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_ids = lambda d: str(d).split(".")[-1]  # noqa: E731
ULP = {torch.float32: 2.0 ** -23, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


def _check(shape, dtype, w_dtype, device, w_grad=True, eps=1e-6):
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    w = (1 + 0.1 * torch.randn(shape[-1], device=device)).to(w_dtype).requires_grad_(w_grad)
    y = rms_norm(x, w, eps, mode="triton")
    r = rms_norm_reference(x, w, eps)
    assert y.dtype == r.dtype and y.shape == r.shape
    ulp = ULP[r.dtype]
    torch.testing.assert_close(y, r, rtol=2 * ulp, atol=1e-6)
    g = torch.randn_like(y)
    wrt = (x, w) if w_grad else (x,)
    ga = torch.autograd.grad(y, wrt, g)
    gr = torch.autograd.grad(r, wrt, g)
    torch.testing.assert_close(ga[0], gr[0], rtol=2 * ULP[dtype], atol=4 * ULP[dtype] * gr[0].abs().max().item())
    if w_grad:
        assert ga[1].dtype == w.dtype
        err = (ga[1].double() - gr[1].double()).abs().max().item()
        assert err <= 8 * ULP[w.dtype] * gr[1].abs().max().item() + 1e-6, err


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [(3, 7, 200), (5, 64), (2, 3, 1000)], ids=str)
def test_rms_norm_matches_hf(shape, dtype, device):
    _check(shape, dtype, dtype, device)


def test_rms_norm_frozen_weight(device):
    _check((4, 9, 96), torch.bfloat16, torch.bfloat16, device, w_grad=False)


def test_rms_norm_fp32_weight_bf16_input_promotes(device):
    # HF semantics: weight (fp32) * normed.to(bf16) -> fp32 output
    _check((3, 5, 80), torch.bfloat16, torch.float32, device)


def test_rms_norm_strided_input(device):
    base = torch.randn(6, 50, device=device)
    x = base[::2].detach().requires_grad_()  # rows not adjacent
    w = torch.randn(50, device=device)
    y = rms_norm(x, w, 1e-5, mode="triton")
    torch.testing.assert_close(y, rms_norm_reference(x, w, 1e-5), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=_ids)
def test_rms_norm_real_shapes_gpu(dtype):
    _check((32, 64, 4096), dtype, dtype, "cuda", w_grad=False)
    _check((8, 64, 4096), dtype, dtype, "cuda", w_grad=True)


# --- residual_rms_norm: the residual add folded into the norm (forward) and its gradient (backward) ---

from scaling.kernels.rms_norm import residual_rms_norm, residual_rms_norm_reference  # noqa: E402


def _residual_case(shape, dtype, device, has_delta, w_grad):
    torch.manual_seed(0)
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    d = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True) if has_delta else None
    w = (1 + 0.1 * torch.randn(shape[-1], device=device)).to(dtype).requires_grad_(w_grad)
    return x, d, w


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("has_delta", [True, False], ids=["add+norm", "norm+residual"])
@pytest.mark.parametrize("shape", [(3, 7, 200), (2, 3, 1000)], ids=str)
def test_residual_rms_norm_matches_eager(shape, dtype, has_delta, device):
    x, d, w = _residual_case(shape, dtype, device, has_delta, w_grad=True)
    s, y = residual_rms_norm(x, w, 1e-6, delta=d, mode="triton")
    sr, yr = residual_rms_norm_reference(x, w, 1e-6, d)
    assert s.grad_fn is not None and type(s.grad_fn).__name__.startswith("ResidualRMSNorm")
    torch.testing.assert_close(s, sr, rtol=0, atol=0)  # the eager add, rounded once in the same dtype
    torch.testing.assert_close(y, yr, rtol=2 * ULP[dtype], atol=1e-6)
    gs, gy = torch.randn_like(s), torch.randn_like(y)
    wrt = [x, w] + ([d] if has_delta else [])
    got = torch.autograd.grad((s * gs).float().sum() + (y * gy).float().sum(), wrt)
    # truth in float64 (the eager bf16 code rounds twice: the norm's gradient, then the accumulation)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    d64 = d.detach().double().requires_grad_() if has_delta else None
    s64, y64 = residual_rms_norm_reference(x64, w64, 1e-6, d64)
    # the kernel's forward rounds the normalised value like eager; compare grads on the same graph in fp64
    true = torch.autograd.grad((s64 * gs.double()).sum() + (y64 * gy.double()).sum(), [x64, w64] + ([d64] if has_delta else []))
    eager = torch.autograd.grad((sr * gs).float().sum() + (yr * gy).float().sum(), wrt)
    scale = true[0].abs().max().item()
    err_fused = (got[0].double() - true[0]).abs().max().item()
    err_eager = (eager[0].double() - true[0]).abs().max().item()
    assert err_fused <= err_eager + 2 * ULP[dtype] * scale + 1e-6, (err_fused, err_eager)
    torch.testing.assert_close(got[0], eager[0], rtol=2 * ULP[dtype], atol=4 * ULP[dtype] * scale)
    if has_delta:  # an add's backward: the same gradient for both summands
        assert torch.equal(got[2], got[0])
    err_w = (got[1].double() - eager[1].double()).abs().max().item()
    assert err_w <= 8 * ULP[dtype] * eager[1].abs().max().item() + 1e-6, err_w


def test_residual_rms_norm_one_output_used(device):
    # only the normalised output feeds the loss (ds is None), or only the stream (dy is None)
    x, d, w = _residual_case((4, 5, 96), torch.float32, device, True, w_grad=False)
    s, y = residual_rms_norm(x, w, 1e-6, delta=d, mode="triton")
    sr, yr = residual_rms_norm_reference(x, w, 1e-6, d)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g, retain_graph=True)[0],
                               torch.autograd.grad(yr, x, g, retain_graph=True)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(s, d, g)[0], g)


def test_residual_rms_norm_delta_shape_and_dtype(device):
    x = torch.randn(2, 3, 64, device=device)
    w = torch.ones(64, device=device)
    with pytest.raises(ValueError, match="delta must have x's shape"):
        residual_rms_norm(x, w, delta=torch.randn(2, 1, 64, device=device), mode="triton")
    # fp32 stream + bf16 sub-layer output (autocast): eager promotion, fp32 result
    d = torch.randn(2, 3, 64, device=device, dtype=torch.bfloat16)
    s, y = residual_rms_norm(x, w, delta=d, mode="triton")
    assert s.dtype == torch.float32
    torch.testing.assert_close(s, x + d.float(), rtol=0, atol=0)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=_ids)
def test_residual_rms_norm_real_shapes_gpu(dtype):
    for has_delta in (True, False):
        x, d, w = _residual_case((32, 57, 4096), dtype, "cuda", has_delta, w_grad=False)
        s, y = residual_rms_norm(x, w, 1e-6, delta=d, mode="triton")
        sr, yr = residual_rms_norm_reference(x, w, 1e-6, d)
        torch.testing.assert_close(s, sr, rtol=0, atol=0)
        torch.testing.assert_close(y, yr, rtol=2 * ULP[dtype], atol=1e-6)
        g = torch.randn_like(y)
        a = torch.autograd.grad((s.float().sum() + (y * g).float().sum()), x)[0]
        b = torch.autograd.grad((sr.float().sum() + (yr * g).float().sum()), x)[0]
        torch.testing.assert_close(a, b, rtol=2 * ULP[dtype], atol=4 * ULP[dtype] * b.abs().max().item())
