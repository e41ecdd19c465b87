"""Rotary embedding on q and k in one kernel vs transformers' ``apply_rotary_pos_emb``.

The eager rounding is reproduced: forward and backward agree bit for bit in fp16/bf16 on CPU and
within 2 ulps (of the element, or of the tensor's largest value where terms cancel) everywhere.
"""

from __future__ import annotations

import pytest
import torch

from scaling.kernels.rope import rope, rope_reference

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_ids = lambda d: str(d).split(".")[-1]  # noqa: E731
ULP = {torch.float32: 2.0 ** -23, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


def _cos_sin(Bc, T, D, dtype, device, positions=None):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, D, 2, dtype=torch.float32, device=device) / D))
    pos = positions if positions is not None else torch.arange(T, device=device).expand(Bc, T)
    freqs = pos[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _check(B, Hq, Hk, T, D, dtype, device, unsqueeze_dim=1, Bc=None, cs_dtype=None):
    shape = (lambda H: (B, H, T, D)) if unsqueeze_dim == 1 else (lambda H: (B, T, H, D))
    q = torch.randn(*shape(Hq), device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(*shape(Hk), device=device, dtype=dtype, requires_grad=True)
    Bc = B if Bc is None else Bc
    positions = torch.randint(0, 4000, (Bc, T), device=device)
    cos, sin = _cos_sin(Bc, T, D, cs_dtype or dtype, device, positions)
    out = rope(q, k, cos, sin, unsqueeze_dim, mode="triton")
    ref = rope_reference(q, k, cos, sin, unsqueeze_dim)
    odt = ref[0].dtype
    for a, e in zip(out, ref):
        assert a.dtype == e.dtype and a.shape == e.shape
        # atol: 2 ulps of the largest value (an FMA-contracted fp32 sum may differ from the eager
        # rounded products by that much where the two terms cancel)
        torch.testing.assert_close(a, e, rtol=2 * ULP[odt], atol=2 * ULP[odt] * e.abs().max().item())
    gq, gk = torch.randn_like(out[0]), torch.randn_like(out[1])
    ga = torch.autograd.grad(out, (q, k), (gq, gk))
    gr = torch.autograd.grad(ref, (q, k), (gq, gk))
    for a, e in zip(ga, gr):
        assert a.dtype == dtype
        torch.testing.assert_close(a, e, rtol=2 * ULP[dtype], atol=2 * ULP[dtype] * e.abs().max().item())


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("D", [64, 80])
def test_rope_matches_hf(D, dtype, device):
    _check(B=2, Hq=4, Hk=2, T=9, D=D, dtype=dtype, device=device)  # GQA: 4 query heads, 2 kv heads


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_ids)
def test_rope_bthd_layout_and_broadcast_cos(dtype, device):
    _check(B=3, Hq=3, Hk=3, T=7, D=32, dtype=dtype, device=device, unsqueeze_dim=2, Bc=1)


def test_rope_fp32_cos_with_bf16_q_promotes(device):
    _check(B=1, Hq=2, Hk=1, T=5, D=16, dtype=torch.bfloat16, device=device, cs_dtype=torch.float32)


def test_rope_many_heads_loop(device):
    # more heads than one block holds under the interpreter (8) -> the head loop runs twice
    _check(B=1, Hq=11, Hk=3, T=3, D=16, dtype=torch.float16, device=device)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=_ids)
def test_rope_real_shapes_gpu(dtype):
    _check(B=32, Hq=32, Hk=32, T=64, D=128, dtype=dtype, device="cuda", Bc=1)
    _check(B=4, Hq=28, Hk=4, T=100, D=128, dtype=dtype, device="cuda")  # Qwen2-7B style GQA
