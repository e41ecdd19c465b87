"""The fused LLaMA-family training forward equals the Hugging Face layers (forward and input grads).

Models and tensors live on the test device (``device`` fixture: CUDA when present, where Triton compiles;
else the CPU under ``TRITON_INTERPRET=1``): Triton on a GPU machine cannot take CPU tensors."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from scaling.models import fast_llm
from scaling.models.fast_llm import accelerate_llm

CONFIGS = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "llama3-rope": (LlamaConfig, LlamaForCausalLM, {"rope_scaling": {  # Llama-3.1's scaled rotary frequencies
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),  # q/k/v biases
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None}),
}


def _model(arch, device="cpu"):
    cfg_cls, model_cls, extra = CONFIGS[arch]
    cfg = cfg_cls(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=100, max_position_embeddings=64, **extra)
    torch.manual_seed(0)
    model = model_cls(cfg).to(device).eval()
    model.requires_grad_(False)
    return model


@pytest.mark.parametrize("arch", sorted(CONFIGS))
@pytest.mark.parametrize("mode", ["torch", "triton"])
def test_fused_forward_matches_hf(arch, mode, monkeypatch, device):
    model = _model(arch, device)
    embeds = torch.randn(2, 9, 64, device=device, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.long, device=device)
    mask[1, -2:] = 0
    # use_cache=False: the training call (with a cache the fused forward hands over to the original layers)
    ref = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    (g_ref,) = torch.autograd.grad(ref[mask.bool()].square().mean(), embeds)
    report = accelerate_llm(model, mode=mode)
    assert report["fused_layers"] == 2 and not report["skipped"]
    assert all(fast_llm.is_fused(layer) for layer in model.model.layers)
    # q/k/v weights now live in one buffer: memory did not grow
    attn = model.model.layers[0].self_attn
    storage = attn.q_proj.weight.untyped_storage()
    assert attn.k_proj.weight.untyped_storage().data_ptr() == storage.data_ptr() == attn.v_proj.weight.untyped_storage().data_ptr()
    assert storage.nbytes() == sum(p.weight.numel() for p in (attn.q_proj, attn.k_proj, attn.v_proj)) * 4
    fused_calls = []
    kernels = fast_llm._kernels
    monkeypatch.setattr(fast_llm, "_kernels", lambda: fused_calls.append(1) or kernels())
    out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    assert len(fused_calls) == 2, "both layers must have run the fused forward"
    (g,) = torch.autograd.grad(out[mask.bool()].square().mean(), embeds)
    valid = mask.bool()
    assert torch.allclose(out[valid], ref[valid], atol=1e-5, rtol=1e-5)
    assert torch.allclose(g, g_ref, atol=1e-6, rtol=1e-4)


def test_cached_generation_falls_back_to_the_original_layers(device):
    model = _model("llama", device)
    ids = torch.randint(0, 100, (1, 5), device=device)
    ref = model.generate(ids, max_new_tokens=5, do_sample=False)
    accelerate_llm(model, mode="torch")
    assert torch.equal(model.generate(ids, max_new_tokens=5, do_sample=False), ref)


def test_layers_with_trained_weights_are_left_alone():
    model = _model("llama")
    model.model.layers[1].self_attn.q_proj.weight.requires_grad_(True)
    report = accelerate_llm(model, mode="torch")
    assert report["fused_layers"] == 1 and 1 in report["skipped"]
    assert accelerate_llm(_model_opt(), mode="torch")["fused_layers"] == 0


def _model_opt():
    from transformers import OPTConfig, OPTForCausalLM

    return OPTForCausalLM(OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=50,
                                    word_embed_proj_dim=32))


def _consumers(root) -> dict:
    """How many autograd edges point at each node of the graph above ``root`` (a grad_fn)."""
    count, seen, stack = {}, set(), [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for nxt, _ in node.next_functions:
            if nxt is not None:
                count[nxt] = count.get(nxt, 0) + 1
                stack.append(nxt)
    return count


def test_fused_layer_backward_runs_no_residual_accumulation(device):
    # eager: the layer input feeds the norm and the residual add, so autograd accumulates two
    # gradients into it (an extra add kernel per residual, two per layer); the fused layer's norms
    # take the residual gradient into their backward kernel: every tensor of the layer has one consumer
    model = _model("llama", device)
    layer = model.model.layers[0]
    x = torch.randn(2, 7, 64, device=device, requires_grad=True)
    pos = torch.arange(7, device=device)[None]
    pe = model.model.rotary_emb(x, pos)
    root = torch.nn.Identity()(x) * 1.0  # a node standing for the previous layer's output
    eager = layer(root, attention_mask=None, position_ids=pos, position_embeddings=pe)
    eager = eager[0] if isinstance(eager, tuple) else eager
    assert _consumers(eager.grad_fn)[root.grad_fn] >= 2  # residual add + the norm's ops
    accelerate_llm(model, mode="triton")
    fused = layer(root, attention_mask=None, position_ids=pos, position_embeddings=pe)
    fused = fused[0] if isinstance(fused, tuple) else fused
    counts = _consumers(fused.grad_fn)
    assert counts[root.grad_fn] == 1
    names = [type(n).__name__ for n in counts]
    assert names.count("ResidualRMSNormFunctionBackward") == 2
    # the head split + rotary backward writes the QKV GEMM's output gradient itself (no reshape / cat)
    assert names.count("QKVRopeFunctionBackward") == 1
    assert not [n for n in names if n.startswith(("SplitWithSizes", "Cat"))], names
    shared = [type(n).__name__ for n, c in counts.items() if c > 1 and n is not root.grad_fn]
    # only the frozen weights' views (AccumulateGrad-free nodes) may be shared; no activation is
    assert all("Accumulate" not in s and "Add" not in s for s in shared), shared
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_gqa_with_a_mask_never_reaches_sdpa_with_enable_gqa(arch, monkeypatch):
    """Flash takes no mask and the memory-efficient kernel no ``enable_gqa``: SDPA given both runs its
    math kernel. With a mask (left padding, inner injection's hidden slots) the fused layer must expand
    the key/value heads itself; without one it keeps ``enable_gqa`` (no copy of k/v)."""
    model = _model(arch)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    embeds = torch.randn(2, 9, 64)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding: a real mask reaches the layers
    ref = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    accelerate_llm(model, mode="torch")
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, *args, enable_gqa=False, **kwargs):
        calls.append((attn_mask is not None, bool(enable_gqa), q.shape[1], k.shape[1]))
        return sdpa(q, k, v, attn_mask, *args, enable_gqa=enable_gqa, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    masked = [c for c in calls if c[0]]
    assert len(masked) == 2, calls  # both layers got the padding mask
    assert not [c for c in masked if c[1]], f"SDPA got a mask and enable_gqa together: {calls}"
    assert all(hq == hk for _, _, hq, hk in masked), "k/v heads must be expanded to the query heads"
    valid = mask.bool()
    torch.testing.assert_close(out[valid], ref[valid], rtol=1e-5, atol=1e-5)
    calls.clear()
    model(inputs_embeds=embeds, use_cache=False)  # no padding: causal only, GQA inside SDPA
    assert calls and all(not m and g for m, g, _, _ in calls), calls
