"""Packed SwiGLU kernel against its PyTorch reference, forward and backward, odd widths, 3 dtypes."""

import pytest
import torch

from scaling.kernels.swiglu_packed import swiglu_packed, swiglu_packed_reference

TOL = {torch.float32: (1e-6, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 5, 2 * 37), (7, 2 * 300)])
def test_packed_swiglu_matches_reference(dtype, shape):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = (torch.randn(*shape, device=device) * 2).to(dtype).requires_grad_(True)
    dout = torch.randn(*shape[:-1], shape[-1] // 2, device=device).to(dtype)
    out = swiglu_packed(x, mode="triton")
    (dx,) = torch.autograd.grad(out, x, dout)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = swiglu_packed_reference(x_ref)
    (dx_ref,) = torch.autograd.grad(ref, x_ref, dout)
    atol, rtol = TOL[dtype]
    assert out.dtype == dtype and out.shape == ref.shape
    assert torch.allclose(out.float(), ref.float(), atol=atol, rtol=rtol)
    assert torch.allclose(dx.float(), dx_ref.float(), atol=atol * 4, rtol=rtol * 4)


def test_odd_width_is_rejected():
    with pytest.raises(ValueError, match="even"):
        swiglu_packed(torch.randn(2, 5), mode="torch")
