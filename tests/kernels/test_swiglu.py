"""Fused ``silu(gate) * up`` vs the eager ``F.silu(gate) * up`` (forward and both gradients).

The eager rounding is reproduced, so results agree within 2 ulps of the dtype (8 in fp32, where
the sigmoid formula differs from torch's).
"""

from __future__ import annotations

import pytest
import torch

from scaling.kernels.swiglu import swiglu, swiglu_reference

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_ids = lambda d: str(d).split(".")[-1]  # noqa: E731
ULP = {torch.float32: 2.0 ** -23, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


def _check(shape, dtype, device, need=(True, True)):
    gate = (torch.randn(*shape, device=device) * 3).to(dtype).requires_grad_(need[0])
    up = torch.randn(*shape, device=device, dtype=dtype, requires_grad=need[1])
    y = swiglu(gate, up, mode="triton")
    r = swiglu_reference(gate, up)
    # fp32: sigmoid evaluated with a different formula than torch's silu -> a few ulps (8 allowed)
    r_ulps = 8 if dtype == torch.float32 else 2
    tol = dict(rtol=r_ulps * ULP[dtype], atol=r_ulps * ULP[dtype])
    assert y.dtype == dtype
    torch.testing.assert_close(y, r, **tol)
    g = torch.randn_like(y)
    wrt = [t for t in (gate, up) if t.requires_grad]
    for a, e in zip(torch.autograd.grad(y, wrt, g), torch.autograd.grad(r, wrt, g)):
        torch.testing.assert_close(a, e, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [(3, 7, 300), (5, 11008 // 16 + 1)], ids=str)
def test_swiglu_matches_eager(shape, dtype, device):
    _check(shape, dtype, device)


@pytest.mark.parametrize("need", [(True, False), (False, True)], ids=["gate-only", "up-only"])
def test_swiglu_partial_grads(need, device):
    _check((4, 33), torch.bfloat16, device, need)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=_ids)
def test_swiglu_real_shapes_gpu(dtype):
    _check((32, 64, 11008), dtype, "cuda")
