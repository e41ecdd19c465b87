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


# --- qkv_rope: the head split of the fused q|k|v projection + rotary, with a copy-free backward ---

from scaling.kernels.rope import qkv_rope, qkv_rope_reference  # noqa: E402


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("heads", [(4, 4), (6, 2), (3, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("Bc", [1, None], ids=["cos-broadcast", "cos-per-sample"])
def test_qkv_rope_matches_split_and_rope(heads, dtype, Bc, device):
    hq, hk = heads
    B, T, D = 2, 7, 48
    qkv = torch.randn(B, T, (hq + 2 * hk) * D, device=device, dtype=dtype, requires_grad=True)
    Bc = B if Bc is None else Bc
    cos, sin = _cos_sin(Bc, T, D, dtype, device, torch.randint(0, 4000, (Bc, T), device=device))
    out = qkv_rope(qkv, cos, sin, hq, hk, D, mode="triton")
    ref = qkv_rope_reference(qkv, cos, sin, hq, hk, D)
    for a, e in zip(out, ref):
        assert a.shape == e.shape and a.dtype == e.dtype
        torch.testing.assert_close(a, e, rtol=2 * ULP[dtype], atol=2 * ULP[dtype] * e.abs().max().item())
    assert out[2].data_ptr() == qkv.data_ptr() + (hq + hk) * D * qkv.element_size()  # v: a view, no copy
    grads = [torch.randn_like(e) for e in ref]
    (ga,) = torch.autograd.grad(out, qkv, grads)
    (gr,) = torch.autograd.grad(ref, qkv, grads)
    assert ga.dtype == dtype and ga.is_contiguous()
    torch.testing.assert_close(ga, gr, rtol=2 * ULP[dtype], atol=2 * ULP[dtype] * gr.abs().max().item())


def test_qkv_rope_backward_is_one_node(device):
    # the eager split → view → transpose → rotary chain has a backward node per step (each transpose
    # back needs a reshape copy, the split's backward a cat); here one Function writes qkv's gradient
    hq, hk, D = 4, 2, 32
    qkv = torch.randn(2, 5, (hq + 2 * hk) * D, device=device, requires_grad=True)
    cos, sin = _cos_sin(1, 5, D, torch.float32, device)
    q, k, v = qkv_rope(qkv, cos, sin, hq, hk, D, mode="triton")
    for t in (q, k, v):
        assert type(t.grad_fn).__name__ == "QKVRopeFunctionBackward"
        assert t.grad_fn.next_functions[0][0].variable is qkv  # straight to qkv's gradient
    # attention's gradients arrive in [B, T, H, D] storage (the layout q and k are returned in)
    assert q.transpose(1, 2).is_contiguous() and k.transpose(1, 2).is_contiguous()


def test_qkv_rope_rejects_a_wrong_width(device):
    qkv = torch.randn(2, 5, 100, device=device)
    cos, sin = _cos_sin(1, 5, 32, torch.float32, device)
    with pytest.raises(ValueError, match=r"qkv must be \[B, T, \(hq \+ 2\*hk\)\*hd\]"):
        qkv_rope(qkv, cos, sin, 4, 2, 32, mode="triton")
