"""Triton prefix injection / slot overwrite vs their PyTorch references.

Both ops only move data (plus a cast and a cumsum), so forward outputs and gradients must be
*bit-identical* to the reference, in every dtype.
"""

from __future__ import annotations

import pytest
import torch

from scaling.kernels.prefix_injection import (
    inject_prefix,
    inject_prefix_reference,
    overwrite_slots,
    overwrite_slots_reference,
)

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_ids = lambda d: str(d).split(".")[-1]  # noqa: E731


def _mask(B: int, T: int, device, dtype) -> torch.Tensor:
    """Row 0 left-padded, row 1 right-padded, row 2 with a hole, others full."""
    m = torch.ones(B, T, dtype=torch.long)
    if B > 0:
        m[0, : T // 3] = 0
    if B > 1:
        m[1, T - T // 4:] = 0
    if B > 2:
        m[2, T // 2] = 0
    return m.to(device=device, dtype=dtype)


def _check_inject(B, T, P, D, V, emb_dtype, prefix_dtype, mask_dtype, device, ids_dtype=torch.long):
    W = torch.randn(V, D, device=device, dtype=emb_dtype)
    ids = torch.randint(0, V, (B, T), device=device, dtype=ids_dtype)
    m = _mask(B, T, device, mask_dtype)
    prefix = torch.randn(B, P, D, device=device, dtype=prefix_dtype, requires_grad=True)
    out = inject_prefix(W, ids, m, prefix, mode="triton")
    ref = inject_prefix_reference(W, ids, m, prefix)
    for name, a, r in zip(("inputs_embeds", "attention_mask", "position_ids"), out, ref):
        assert a.shape == r.shape and a.dtype == r.dtype, name
        assert torch.equal(a, r), f"{name} differs"
    assert out[0].dtype == emb_dtype and out[1].dtype == mask_dtype and out[2].dtype == torch.long
    if P > 0:
        g = torch.randn_like(out[0])
        (ga,) = torch.autograd.grad(out[0], prefix, g)
        (gr,) = torch.autograd.grad(ref[0], prefix, g)
        assert ga.dtype == prefix_dtype
        assert torch.equal(ga, gr)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("P", [0, 1, 37])
def test_inject_prefix_matches_reference(P, dtype, device):
    _check_inject(B=3, T=13, P=P, D=80, V=50, emb_dtype=dtype, prefix_dtype=dtype, mask_dtype=torch.long, device=device)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int32, torch.float32], ids=_ids)
def test_inject_prefix_mask_dtypes_and_prefix_cast(mask_dtype, device):
    # fp32 prefix (interface output) into a bf16 LLM: cast in the kernel, gradient cast back to fp32
    _check_inject(B=4, T=9, P=5, D=24, V=31, emb_dtype=torch.bfloat16, prefix_dtype=torch.float32,
                  mask_dtype=mask_dtype, device=device, ids_dtype=torch.int32)


def test_inject_prefix_positions_hf_convention(device):
    W = torch.randn(10, 4, device=device)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], device=device)
    m = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]], device=device)
    prefix = torch.randn(2, 2, 4, device=device)
    emb, mask, pos = inject_prefix(W, ids, m, prefix, mode="triton")
    assert mask.tolist() == [[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 0]]
    assert pos.tolist() == [[0, 1, 1, 1, 2, 3], [0, 1, 2, 3, 4, 1]]
    assert torch.equal(emb[:, :2], prefix) and torch.equal(emb[0, 2:], W[ids[0]])


def test_inject_prefix_long_sequence_cumsum_carry(device):
    # T > 1024 forces the chunked cumsum with a carried running count.
    _check_inject(B=1, T=1100, P=3, D=8, V=20, emb_dtype=torch.float32, prefix_dtype=torch.float32,
                  mask_dtype=torch.long, device=device)


def test_inject_prefix_embed_grad_when_required(device):
    W = torch.randn(30, 16, device=device, requires_grad=True)
    ids = torch.randint(0, 30, (2, 11), device=device)
    m = _mask(2, 11, device, torch.long)
    prefix = torch.randn(2, 4, 16, device=device, requires_grad=True)
    out = inject_prefix(W, ids, m, prefix, mode="triton")[0]
    ref = inject_prefix_reference(W, ids, m, prefix)[0]
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, (W, prefix), g)
    gr = torch.autograd.grad(ref, (W, prefix), g)
    torch.testing.assert_close(ga[0], gr[0], atol=1e-6, rtol=1e-6)
    assert torch.equal(ga[1], gr[1])


def test_inject_prefix_frozen_embedding_gets_no_grad(device):
    W = torch.randn(30, 16, device=device)  # frozen, as in the real model
    prefix = torch.randn(2, 4, 16, device=device, requires_grad=True)
    out = inject_prefix(W, torch.zeros(2, 3, dtype=torch.long, device=device),
                        torch.ones(2, 3, device=device, dtype=torch.long), prefix, mode="triton")[0]
    out.sum().backward()
    assert W.grad is None and torch.equal(prefix.grad, torch.ones_like(prefix))


def test_inject_prefix_shape_errors(device):
    W = torch.randn(10, 4, device=device)
    with pytest.raises(ValueError):
        inject_prefix(W, torch.zeros(2, 3, dtype=torch.long, device=device),
                      torch.ones(2, 4, device=device), torch.randn(2, 1, 4, device=device), mode="triton")
    with pytest.raises(ValueError):
        inject_prefix(W, torch.zeros(2, 3, dtype=torch.long, device=device),
                      torch.ones(2, 3, device=device), torch.randn(2, 1, 5, device=device), mode="triton")


# ---------------------------------------------------------------------------------------------- overwrite_slots
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("start,n", [(0, 5), (17, 5), (36, 5), (3, 0)])
def test_overwrite_slots_matches_reference(start, n, dtype, device):
    hidden = torch.randn(3, 41, 80, device=device, dtype=dtype, requires_grad=True)
    tokens = torch.randn(3, n, 80, device=device, dtype=dtype, requires_grad=True)
    before = hidden.detach().clone()
    out = overwrite_slots(hidden, tokens, start, mode="triton")
    ref = overwrite_slots_reference(hidden, tokens, start)
    assert torch.equal(out, ref) and out.dtype == dtype
    assert torch.equal(hidden.detach(), before), "input must not be modified"
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, (hidden, tokens), g)
    gr = torch.autograd.grad(ref, (hidden, tokens), g)
    assert torch.equal(ga[0], gr[0]) and torch.equal(ga[1], gr[1])
    assert not ga[0][:, start:start + n].any()


@pytest.mark.parametrize("which", ["hidden", "tokens"])
def test_overwrite_slots_partial_grads_and_cast(which, device):
    hidden = torch.randn(2, 19, 33, device=device, dtype=torch.bfloat16, requires_grad=which == "hidden")
    tokens = torch.randn(2, 4, 33, device=device, dtype=torch.float32, requires_grad=which == "tokens")
    out = overwrite_slots(hidden, tokens, 7, mode="triton")
    ref = overwrite_slots_reference(hidden, tokens, 7)
    assert torch.equal(out, ref) and out.dtype == torch.bfloat16
    src = hidden if which == "hidden" else tokens
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, src, g)
    (gr,) = torch.autograd.grad(ref, src, g)
    assert ga.dtype == src.dtype and torch.equal(ga, gr)


def test_overwrite_slots_strided_input_and_errors(device):
    base = torch.randn(2, 40, 12, device=device)
    hidden = base[:, ::2]  # non-contiguous [2, 20, 12]
    tokens = torch.randn(2, 3, 12, device=device)
    assert torch.equal(overwrite_slots(hidden, tokens, 5, mode="triton"), overwrite_slots_reference(hidden, tokens, 5))
    with pytest.raises(ValueError):
        overwrite_slots(hidden, tokens, 18, mode="triton")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_injection_real_shapes_gpu():
    # LLaMA-7B inputs: 32 samples, 32 perceptual + 8 prompt tokens, 24 text tokens, D = 4096, V = 32000
    _check_inject(B=32, T=24, P=40, D=4096, V=32000, emb_dtype=torch.bfloat16, prefix_dtype=torch.float32,
                  mask_dtype=torch.long, device="cuda")
    hidden = torch.randn(32, 64, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    tokens = torch.randn(32, 32, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    out = overwrite_slots(hidden, tokens, 0, mode="triton")
    ref = overwrite_slots_reference(hidden, tokens, 0)
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, (hidden, tokens), g)
    gr = torch.autograd.grad(ref, (hidden, tokens), g)
    assert all(torch.equal(a, b) for a, b in zip(ga, gr))
