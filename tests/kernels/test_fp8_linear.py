"""FP8 linear: the row-wise e4m3 quantisation kernel against its reference, and the FP8 GEMM's forward
and input-gradient backward against the same arithmetic emulated in fp32, at odd row counts, in each
activation dtype. On CPU the kernel runs under the Triton interpreter and ``torch._scaled_mm`` on its
CPU kernel; on a GPU of compute capability >= 8.9 both run for real."""

import pytest
import torch

from scaling.kernels.fp8_linear import (
    FP8,
    FP8_MAX,
    fp8_linear,
    fp8_linear_reference,
    quantize_rows,
    quantize_rows_reference,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LINEAR_DTYPES = DTYPES if DEVICE == "cpu" else [torch.bfloat16]  # CUDA's row-wise FP8 GEMM writes bf16 only
FP8_GEMM = DEVICE == "cpu" or torch.cuda.get_device_capability() >= (8, 9)
needs_fp8_gemm = pytest.mark.skipif(not FP8_GEMM, reason="this GPU has no FP8 (compute capability < 8.9): no FP8 GEMM, "
                                    "and Triton's e4m3 type, so quantize_rows runs its PyTorch reference there")


@needs_fp8_gemm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 37), (3, 300), (1, 1), (4, 5000)])
def test_quantize_rows_matches_reference(dtype, shape):
    x = (torch.randn(*shape, device=DEVICE) * 3).to(dtype)
    x[0, 0] = 0.0
    if shape[1] > 2:
        x[-1, 1] = 1e-8  # subnormal in e4m3 after scaling
    q, s = quantize_rows(x, mode="triton")
    qr, sr = quantize_rows_reference(x)
    assert q.dtype == FP8 and q.shape == x.shape and s.shape == (shape[0], 1) and s.dtype == torch.float32
    torch.testing.assert_close(s, sr, rtol=0, atol=0)
    assert torch.equal(q.view(torch.uint8), qr.view(torch.uint8))  # same codes, ties rounded to even


@needs_fp8_gemm
def test_quantize_rows_handles_strided_rows_and_zero_rows():
    x = torch.randn(6, 64, device=DEVICE, dtype=torch.bfloat16)
    x[2] = 0.0
    view = x[:, 8:40]  # row stride 64, not contiguous
    q, s = quantize_rows(view, mode="triton")
    qr, sr = quantize_rows_reference(view.contiguous())
    assert torch.equal(q.view(torch.uint8), qr.view(torch.uint8)) and torch.equal(s, sr)
    assert torch.all(q[2].float() == 0) and torch.isfinite(s).all()


@needs_fp8_gemm
def test_quantization_error_is_within_e4m3_precision():
    x = torch.randn(64, 256, device=DEVICE) * torch.logspace(-3, 2, 64, device=DEVICE)[:, None]
    q, s = quantize_rows(x, mode="triton")
    deq = q.float() * s
    top = q.float().abs().amax(-1)
    assert ((top >= FP8_MAX / 2) & (top <= FP8_MAX)).all()  # each row's largest value lands in the top binade
    assert torch.equal(torch.log2(s), torch.log2(s).round())  # power-of-two scales
    normal = x.abs() >= s * 2**-6  # e4m3 normals: relative error <= 2^-4
    rel = ((deq - x).abs() / x.abs().clamp(min=1e-30))[normal]
    assert rel.max() <= 2**-4 + 1e-6
    assert ((deq - x).abs()[~normal] <= s.expand_as(x)[~normal] * 2**-10 + 1e-12).all()


def test_quantize_rows_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        quantize_rows(torch.randn(2, 3, 4), mode="torch")


def _weights(n, k, dtype):
    w = (torch.randn(n, k, device=DEVICE) * k**-0.5).to(dtype)
    wq, ws = quantize_rows_reference(w)
    wtq, wts = quantize_rows_reference(w.t().contiguous())
    return w, wq, ws, wtq, wts


TOL = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


@needs_fp8_gemm
@pytest.mark.parametrize("dtype", LINEAR_DTYPES)
@pytest.mark.parametrize("rows", [1, 37])
@pytest.mark.parametrize("with_transpose", [True, False])
def test_fp8_linear_forward_and_backward_match_emulation(dtype, rows, with_transpose):
    n, k = 80, 48
    w, wq, ws, wtq, wts = _weights(n, k, dtype)
    if not with_transpose:
        wtq = wts = None
    bias = torch.randn(n, device=DEVICE).to(dtype)
    x = torch.randn(3, rows, k, device=DEVICE).to(dtype).requires_grad_(True)
    gy = torch.randn(3, rows, n, device=DEVICE).to(dtype)
    y = fp8_linear(x, wq, ws, wtq, wts, bias, mode="triton")
    (gx,) = torch.autograd.grad(y, x, gy)
    xr = x.detach().clone().requires_grad_(True)
    yr = fp8_linear_reference(xr, wq, ws, wtq, wts, bias)
    (gxr,) = torch.autograd.grad(yr, xr, gy)
    atol, rtol = TOL[dtype]
    assert y.shape == (3, rows, n) and y.dtype == dtype and gx.dtype == dtype
    torch.testing.assert_close(y, yr, atol=atol, rtol=rtol)
    torch.testing.assert_close(gx, gxr, atol=atol, rtol=rtol)


@needs_fp8_gemm
def test_fp8_linear_is_close_to_but_not_the_dense_linear():
    """It really runs in FP8 (the result differs from bf16) and stays within FP8's error budget."""
    dtype = torch.bfloat16
    n, k = 256, 512
    w, wq, ws, wtq, wts = _weights(n, k, dtype)
    x = torch.randn(64, k, device=DEVICE, dtype=torch.float32).to(dtype).requires_grad_(True)
    gy = torch.randn(64, n, device=DEVICE).to(dtype)
    y = fp8_linear(x, wq, ws, wtq, wts, mode="auto")
    (gx,) = torch.autograd.grad(y, x, gy)
    dense = x.detach().float() @ w.float().t()
    dense_gx = gy.float() @ w.float()
    for got, ref in ((y, dense), (gx, dense_gx)):
        rel = ((got.float() - ref).norm() / ref.norm()).item()
        assert 1e-3 < rel < 0.06, rel


@needs_fp8_gemm
def test_fp8_linear_saves_no_activation_for_backward():
    w, wq, ws, wtq, wts = _weights(32, 64, torch.bfloat16)
    x = torch.randn(5, 64, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    y = fp8_linear(x, wq, ws, wtq, wts, mode="triton")
    node = y.grad_fn
    while "Fp8LinearFunction" not in type(node).__name__:  # past the reshape
        node = node.next_functions[0][0]
    saved = node.saved_tensors
    assert len(saved) == 4
    assert all(t.data_ptr() != x.data_ptr() for t in saved if t is not None)
    assert {t.dtype for t in saved if t is not None} <= {FP8, torch.float32}
