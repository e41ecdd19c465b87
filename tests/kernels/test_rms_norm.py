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
