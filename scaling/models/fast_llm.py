"""A fused training forward for the frozen LLaMA-family LLM (LLaMA, Qwen2, Mistral).

The plain step spends more than half its time outside matrix multiplication: fp32 RMSNorm
up-casts, rotary embeddings built from ``cat``/``neg``, SiLU·up, separate q/k/v and gate/up GEMMs
(see shared PERF-NOTES). Because the LLM is frozen, its weights can be rearranged once:
:func:`accelerate_llm` concatenates q/k/v and gate/up weights into single buffers (the original
``nn.Linear`` weights become views of them, so memory does not grow) and gives each decoder layer a
forward that runs

    RMSNorm (Triton) → one QKV GEMM → rotary on q and k (one Triton kernel, whose backward writes the
    QKV GEMM's output gradient directly) → SDPA → o_proj
    → residual add + RMSNorm (one Triton kernel) → one gate|up GEMM → packed SwiGLU (Triton)
    → down_proj → residual

with input-gradient backward through the kernels' autograd Functions (frozen weights get no weight
gradients); both norms also add the gradient of their residual branch in their backward kernel
(:func:`scaling.kernels.rms_norm.residual_rms_norm`), so autograd runs no accumulation adds.
Calls with a KV cache (generation) fall back to the original forward; everything else
in the model is unchanged. ``mode="torch"`` uses the PyTorch references of the kernels (CPU tests).
With ``fp8=True`` the four projections of each fused layer run as row-wise FP8 GEMMs
(:mod:`scaling.models.fp8`).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = ("llama", "qwen2", "mistral")


def _kernels():
    from scaling.kernels.rms_norm import residual_rms_norm
    from scaling.kernels.rope import qkv_rope
    from scaling.kernels.swiglu_packed import swiglu_packed

    return residual_rms_norm, qkv_rope, swiglu_packed


def _fuse_linear_weights(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One [sum(out), in] buffer; each linear's weight (and bias) becomes a view into it."""
    weight = torch.cat([l.weight.data for l in linears], dim=0)
    bias = None
    if all(l.bias is not None for l in linears):
        bias = torch.cat([l.bias.data for l in linears], dim=0)
    offset = 0
    for l in linears:
        n = l.weight.shape[0]
        l.weight = nn.Parameter(weight[offset : offset + n], requires_grad=False)
        if bias is not None:
            l.bias = nn.Parameter(bias[offset : offset + n], requires_grad=False)
        offset += n
    return weight, bias


def _fused_forward(self, hidden_states, attention_mask=None, position_ids=None, use_cache=False,
                   position_embeddings=None, **kwargs):
    # the KV cache arrives as `cache` (transformers >= 5.x) or `past_key_values` (older): passed on as it came
    kv_cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if kv_cache is not None or use_cache or position_embeddings is None:
        return self._scaling_original_forward(
            hidden_states, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=use_cache, position_embeddings=position_embeddings, **kwargs,
        )
    residual_rms_norm, qkv_rope, swiglu = _kernels()
    f = self._scaling_fused
    mode = f["mode"]
    b, t, _ = hidden_states.shape
    hq, hk, hd = f["heads"], f["kv_heads"], f["head_dim"]
    x, n = residual_rms_norm(hidden_states, self.input_layernorm.weight, f["eps_in"], mode=mode)
    qkv = f["qkv_fp8"](n) if "qkv_fp8" in f else F.linear(n, f["qkv_w"], f["qkv_b"])
    cos, sin = position_embeddings
    q, k, v = qkv_rope(qkv, cos, sin, hq, hk, hd, mode=mode)
    mask = attention_mask
    if mask is not None and mask.dim() == 4:
        mask = mask[:, :, :, : k.shape[-2]]
    if mask is not None and hq != hk:
        # SDPA's flash kernel takes no mask and its memory-efficient kernel no enable_gqa: both together
        # fall to the math kernel (the full attention matrix). Expand the key/value heads instead, as
        # transformers does (a view-free copy of k/v only, [B, Hk, T, d] -> [B, Hq, T, d]).
        k, v = k.repeat_interleave(hq // hk, dim=1), v.repeat_interleave(hq // hk, dim=1)
    attn = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=mask is None and t > 1, enable_gqa=mask is None and hq != hk,
    )
    attn = attn.transpose(1, 2).reshape(b, t, hq * hd)
    x, n2 = residual_rms_norm(x, self.post_attention_layernorm.weight, f["eps_post"],
                              delta=self.self_attn.o_proj(attn), mode=mode)
    gate_up = f["gate_up_fp8"](n2) if "gate_up_fp8" in f else F.linear(n2, f["gate_up_w"], f["gate_up_b"])
    x = x + self.mlp.down_proj(swiglu(gate_up, mode=mode))
    return x


def _eligible(layer: nn.Module) -> str | None:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if attn is None or mlp is None:
        return "no self_attn/mlp"
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        mod = getattr(attn, name, None)
        if type(mod) is not nn.Linear or mod.weight.requires_grad:
            return f"{name} is not a frozen nn.Linear (LoRA or bias tuning on it)"
    for name in ("gate_proj", "up_proj", "down_proj"):
        mod = getattr(mlp, name, None)
        if type(mod) is not nn.Linear or mod.weight.requires_grad:
            return f"{name} is not a frozen nn.Linear"
    act = getattr(mlp, "act_fn", None)
    if act is None or type(act).__name__ not in ("SiLU", "SiLUActivation"):
        return f"activation {type(act).__name__} is not SiLU"
    for name, mod in (("self_attn", attn), ("mlp", mlp)):
        if mod._forward_hooks or mod._forward_pre_hooks:
            return f"{name} has forward hooks (adapters): the fused forward would bypass them"
    for name in ("input_layernorm", "post_attention_layernorm"):
        if getattr(layer, name).weight.requires_grad:
            return f"{name} is trained (bias/norm tuning)"
    if getattr(attn, "sliding_window", None):
        return "sliding-window attention"
    return None


def is_fused(layer: nn.Module) -> bool:
    """Whether ``layer`` runs the fused forward (installed by :func:`accelerate_llm`)."""
    return hasattr(layer, "_scaling_fused")


def accelerate_llm(llm: nn.Module, mode: str = "auto", fp8: bool = False) -> dict:
    """Install the fused forward on every eligible decoder layer; returns a report dict.

    ``fp8``: also quantise the fused layers' projection weights to row-wise FP8
    (:mod:`scaling.models.fp8`); the report's ``fp8_layers`` counts them, ``fp8_skipped`` says why not."""
    model_type = getattr(llm.config, "model_type", "?")
    if model_type not in SUPPORTED:
        return {"fused_layers": 0, "reason": f"model type {model_type!r} not in {SUPPORTED}"}
    layers = getattr(llm, llm.base_model_prefix).layers
    cfg = llm.config
    fused, skipped = 0, {}
    for i, layer in enumerate(layers):
        if hasattr(layer, "_scaling_fused"):
            layer._scaling_fused["mode"] = mode
            fused += 1
            continue
        why = _eligible(layer)
        if why:
            skipped[i] = why
            continue
        attn, mlp = layer.self_attn, layer.mlp
        qkv_w, qkv_b = _fuse_linear_weights([attn.q_proj, attn.k_proj, attn.v_proj])
        gu_w, gu_b = _fuse_linear_weights([mlp.gate_proj, mlp.up_proj])
        head_dim = getattr(attn, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
        layer._scaling_fused = {
            "mode": mode, "qkv_w": qkv_w, "qkv_b": qkv_b, "gate_up_w": gu_w, "gate_up_b": gu_b,
            "heads": attn.q_proj.weight.shape[0] // head_dim, "kv_heads": attn.k_proj.weight.shape[0] // head_dim,
            "head_dim": head_dim, "inter": mlp.gate_proj.weight.shape[0],
            "eps_in": layer.input_layernorm.variance_epsilon, "eps_post": layer.post_attention_layernorm.variance_epsilon,
        }
        layer._scaling_original_forward = layer.forward
        layer.forward = types.MethodType(_fused_forward, layer)
        fused += 1
    report = {"fused_layers": fused, "skipped": skipped, "mode": mode}
    if fp8:
        report.update(_quantize_layers(llm, layers))
    return report


def _quantize_layers(llm: nn.Module, layers) -> dict:
    from scaling.models.fp8 import check_fp8_device, quantize_fused_layer

    emb = llm.get_input_embeddings().weight
    check_fp8_device(emb.device, emb.dtype)
    done, why_not = 0, {}
    for i, layer in enumerate(layers):
        fused = getattr(layer, "_scaling_fused", None)
        if fused is None:
            why_not[i] = "not fused"
            continue
        why = quantize_fused_layer(layer, fused, emb.device)
        if why:
            why_not[i] = why
        else:
            done += 1
    return {"fp8_layers": done, "fp8_skipped": why_not}
