"""``model.fp8_llm``: the fused frozen-LLM layers run their projections as row-wise FP8 GEMMs.

Checked on CPU (``torch._scaled_mm`` has a CPU kernel): every projection becomes FP8 with the same
parameter names and shapes, memory does not grow, loss and trainable gradients stay close to bf16 but
are not identical (it really runs in FP8), training still learns, generation works, fingerprints still
recognise the backbone, and bad combinations are refused with the fix."""

import pytest
import torch

from scaling.config.base import ConfigError
from scaling.config.model import model_config
from scaling.models.builder import build_model, fuse_llm, parameter_table
from scaling.models.fp8 import Fp8Linear
from scaling.models.tiny import save_tiny_llm, tiny_media
from scaling.training.fingerprint import compare, model_fingerprints

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _build(backbones, fp8: bool, llm: str = "llama", dtype: str = "bf16", **extra):
    torch.manual_seed(0)
    cfg = model_config(method="depalm", llm=backbones[llm], encoder=backbones["vit"], frozen_dtype=dtype,
                       fused_llm="on", fp8_llm=fp8, **extra)
    model = build_model(cfg, fuse=False)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # saved tiny models have zero biases: make qwen2's q/k/v biases matter
        for mod in model.llm.modules():
            if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))
    fuse_llm(model, cfg, torch.device("cpu"))
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 90, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :3] = -100
    return ids, mask, labels


def _loss_and_grads(model, media):
    ids, mask, labels = _batch()
    model.train()
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=mask, labels=labels, **media)
    out["loss"].backward()
    grads = torch.cat([p.grad.flatten().double() for _, p in model.trainable_named_parameters()])
    return out["loss"].item(), grads


@pytest.mark.parametrize("llm", ["llama", "qwen2"])  # qwen2: biases on q/k/v
def test_every_projection_becomes_fp8_with_the_same_names_shapes_and_bytes(backbones, llm):
    dense, fp8 = _build(backbones, False, llm=llm), _build(backbones, True, llm=llm)
    for layer in fp8.layout.layers:
        mods = [layer.get_submodule(name) for name in PROJECTIONS]
        assert all(isinstance(m, Fp8Linear) and m.weight.dtype == torch.float8_e4m3fn for m in mods)
        qkv = layer._scaling_fused["qkv_fp8"]
        assert layer._scaling_fused["qkv_w"] is None  # the bf16 copy is gone
        base = qkv.weight.untyped_storage().data_ptr()
        assert all(m.weight.untyped_storage().data_ptr() == base for m in mods[:3])  # q/k/v are views
    a = {n: p.shape for n, p in dense.llm.named_parameters()}
    b = {n: p.shape for n, p in fp8.llm.named_parameters()}
    assert a == b
    assert parameter_table(dense) == parameter_table(fp8)

    def projection_bytes(model):
        total = 0
        for layer in model.layout.layers:
            mods = [layer.get_submodule(name) for name in PROJECTIONS]
            total += sum(m.weight.numel() * m.weight.element_size() for m in mods)
            f = layer._scaling_fused
            transposed = [f.get("qkv_fp8"), f.get("gate_up_fp8"), mods[3], mods[6]]
            total += sum(m.weight_t.numel() * m.weight_t.element_size() for m in transposed if isinstance(m, Fp8Linear))
        return total

    assert projection_bytes(fp8) == projection_bytes(dense)  # W and Wᵀ in FP8 = the bf16 bytes
    ids, mask, labels = _batch()
    with torch.no_grad():
        la = dense(input_ids=ids, attention_mask=mask, labels=labels, **tiny_media("vit"))["loss"]
        lb = fp8(input_ids=ids, attention_mask=mask, labels=labels, **tiny_media("vit"))["loss"]
    assert la != lb and abs(la - lb) < 0.01 * la  # close to the dense model (qwen2: with its q/k/v biases)


def test_fp8_loss_and_gradients_are_close_to_bf16_but_not_identical(backbones):
    media = {k: v.to(torch.bfloat16) for k, v in tiny_media("vit").items()}
    loss_a, grad_a = _loss_and_grads(_build(backbones, False), media)
    loss_b, grad_b = _loss_and_grads(_build(backbones, True), media)
    assert loss_a != loss_b
    assert abs(loss_a - loss_b) / loss_a < 0.01
    cos = torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0).item()
    assert 0.98 < cos < 1.0 - 1e-9, cos


def _train(model, steps: int = 30) -> list[float]:
    media = tiny_media("vit")
    ids, mask, labels = _batch()
    opt = torch.optim.AdamW([p for _, p in model.trainable_named_parameters()], lr=1e-2)
    model.train()
    losses = []
    for step in range(steps):
        torch.manual_seed(step)  # the same dropout masks in both runs
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, **media)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_fp8_model_learns_like_the_dense_one_and_generates(backbones):
    """fp32 activations (CPU's FP8 GEMM writes any dtype; CPU bf16 matmuls are slow): same FP8 weights."""
    dense, fp8 = _build(backbones, False, dtype="fp32"), _build(backbones, True, dtype="fp32")
    assert isinstance(fp8.layout.layers[0].mlp.down_proj, Fp8Linear)
    a, b = _train(dense), _train(fp8)
    assert b[-1] < b[0] - 0.15, b  # it learns (a random tiny LLM moves slowly)
    assert abs(b[-1] - a[-1]) < 0.01 * a[-1], (a[-1], b[-1])  # as far as the dense model does
    fp8.eval()
    ids, mask, _ = _batch()
    out = fp8.generate(ids[:, :4], mask[:, :4], max_new_tokens=3, **tiny_media("vit"))
    assert out.shape == (2, 3) and (out >= 0).all()


def test_fingerprint_of_the_fp8_model_matches_the_loaded_backbone(backbones, tmp_path):
    dense, fp8 = _build(backbones, False), _build(backbones, True)
    assert compare(model_fingerprints(dense), model_fingerprints(fp8)) == []
    other = _build({**backbones, "other": save_tiny_llm(str(tmp_path / "other"), "llama", seed=1)}, True, llm="other")
    diffs = compare(model_fingerprints(dense), model_fingerprints(other))
    assert any("weights differ" in d for d in diffs), diffs


def test_bad_fp8_combinations_are_refused_with_the_fix(backbones):
    with pytest.raises(ConfigError, match="fused_llm to auto or on"):
        model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], fused_llm="off", fp8_llm=True)
    with pytest.raises(ConfigError, match="no layer of the LLM could run in FP8"):
        _build(backbones, True, llm="opt")


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs a CUDA GPU with FP8 tensor cores (compute capability >= 8.9); "
                           "the CPU tests above cover the same path with torch._scaled_mm's CPU kernel")
def test_fp8_on_the_gpu_with_triton_kernels_stays_close_to_bf16(backbones):
    def build(fp8):
        torch.manual_seed(0)
        cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="bf16",
                           kernels="triton", fused_llm="on", fp8_llm=fp8)
        return build_model(cfg, device="cuda")

    media = {k: v.to("cuda", torch.bfloat16) for k, v in tiny_media("vit").items()}
    ids, mask, labels = (t.cuda() for t in _batch())
    results = []
    for fp8 in (False, True):
        model = build(fp8).train()
        torch.manual_seed(2)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=mask, labels=labels, **media)
        out["loss"].backward()
        grads = torch.cat([p.grad.flatten().double() for _, p in model.trainable_named_parameters()])
        results.append((out["loss"].item(), grads))
        model.eval()
        assert model.generate(ids[:, :4], mask[:, :4], max_new_tokens=3, **media).shape == (2, 3)
    (la, ga), (lb, gb) = results
    assert la != lb and abs(la - lb) < 0.01 * la
    assert torch.nn.functional.cosine_similarity(ga, gb, dim=0).item() > 0.98
