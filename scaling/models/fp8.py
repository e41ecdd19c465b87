"""FP8 weights for the frozen LLM (``model.fp8_llm``): :class:`Fp8Linear` and the checks around it.

The LLM is frozen, so its projection weights can be quantised once to ``float8_e4m3fn`` with one
scale per row (``scaling.kernels.fp8_linear``). :func:`quantize_fused_layer` does that for a decoder
layer that already runs the fused forward (``scaling.models.fast_llm``): the concatenated q|k|v and
gate|up weights and o_proj / down_proj become :class:`Fp8Linear`; q/k/v and gate/up become row views
of the concatenated FP8 weight, so generation (which runs the original Hugging Face layer) uses the
same FP8 weights and memory does not grow. Parameter names and shapes stay the same (a weight is
now an fp8 parameter), so fingerprints, parameter tables and adapters keep working.

Memory: the weight is kept as ``W`` [N, K] and ``Wᵀ`` [K, N] in FP8 (the backward's GEMM needs the
transposed operand), i.e. the bytes of the bf16 weight; activations saved for backward do not grow.
"""

from __future__ import annotations

import torch
from torch import nn

from scaling.config.base import ConfigError

FP8_MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (sm_89) and Hopper (sm_90)


def check_fp8_device(device: torch.device, dtype: torch.dtype) -> None:
    """Raise when ``device`` cannot run FP8 GEMMs writing ``dtype`` (the frozen LLM's dtype).

    CPU can (``torch._scaled_mm`` has a CPU kernel, any output dtype); CUDA needs FP8 tensor cores and
    writes bf16 only with row-wise scales."""
    if device.type != "cuda":
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    cap = torch.cuda.get_device_capability(index)
    if cap < FP8_MIN_CAPABILITY:
        raise ConfigError(
            f"model.fp8_llm needs FP8 tensor cores (compute capability ≥ 8.9: H100, H200, L40, RTX 4090); "
            f"{torch.cuda.get_device_name(index)} is sm_{cap[0]}{cap[1]}: set model.fp8_llm=false"
        )
    if dtype != torch.bfloat16:
        raise ConfigError(f"model.fp8_llm on CUDA writes its GEMM outputs in bf16: set model.frozen_dtype=bf16 (is {dtype})")


def gemm_shape_problem(out_features: int, in_features: int, device: torch.device) -> str | None:
    """Why an [out, in] weight cannot use the CUDA FP8 GEMM (both sizes must be multiples of 16), or None."""
    if device.type == "cuda" and (out_features % 16 or in_features % 16):
        return f"weight [{out_features}, {in_features}]: the CUDA FP8 GEMM needs both sizes divisible by 16"
    return None


class Fp8Linear(nn.Module):
    """A frozen ``nn.Linear`` whose weight is row-wise FP8.

    ``weight`` is an e4m3 parameter [N, K] (frozen), ``weight_scale`` [N, 1] fp32; ``weight_t`` [K, N]
    e4m3 with ``weight_t_scale`` [K, 1] serves the input-gradient GEMM (None for row views, whose
    backward multiplies by the dequantised weight)."""

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, weight_t: torch.Tensor | None,
                 weight_t_scale: torch.Tensor | None, bias: torch.Tensor | None, mode: str = "auto"):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("weight_t", weight_t)
        self.register_buffer("weight_t_scale", weight_t_scale)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.mode = mode

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, mode: str = "auto") -> Fp8Linear:
        from scaling.kernels.fp8_linear import quantize_rows

        with torch.no_grad():
            w, ws = quantize_rows(weight.detach(), mode)
            wt, wts = quantize_rows(weight.detach().t().contiguous(), mode)
        return cls(w, ws, wt, wts, None if bias is None else bias.detach(), mode)

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str = "auto") -> Fp8Linear:
        return cls.from_dense(linear.weight, linear.bias, mode)

    def rows(self, start: int, end: int) -> Fp8Linear:
        """Output rows ``start:end`` as a view sharing this layer's storage (forward-speed GEMM; the
        backward uses the dequantised weight)."""
        bias = self.bias[start:end] if self.bias is not None else None
        return Fp8Linear(self.weight.data[start:end], self.weight_scale[start:end], None, None, bias, self.mode)

    def dequantized_weight(self) -> torch.Tensor:
        """The fp32 weight these FP8 values stand for."""
        return self.weight.float() * self.weight_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in_features] → [..., out_features] in x's dtype."""
        from scaling.kernels.fp8_linear import fp8_linear

        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return fp8_linear(x, self.weight, self.weight_scale, self.weight_t, self.weight_t_scale, bias, self.mode)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3 row-wise, bias={self.bias is not None}"


def quantize_fused_layer(layer: nn.Module, fused: dict, device: torch.device) -> str | None:
    """Quantise one fused decoder layer's projections in place; returns why not, or None when done."""
    if "qkv_fp8" in fused:
        return None
    attn, mlp = layer.self_attn, layer.mlp
    for w in (fused["qkv_w"], fused["gate_up_w"], attn.o_proj.weight, mlp.down_proj.weight):
        why = gemm_shape_problem(w.shape[0], w.shape[1], device)
        if why:
            return why
    mode = fused["mode"]
    qkv = Fp8Linear.from_dense(fused["qkv_w"], fused["qkv_b"], mode)
    gate_up = Fp8Linear.from_dense(fused["gate_up_w"], fused["gate_up_b"], mode)
    hd = fused["head_dim"]
    nq, nk = fused["heads"] * hd, fused["kv_heads"] * hd
    attn.q_proj, attn.k_proj, attn.v_proj = qkv.rows(0, nq), qkv.rows(nq, nq + nk), qkv.rows(nq + nk, nq + 2 * nk)
    inter = fused["inter"]
    mlp.gate_proj, mlp.up_proj = gate_up.rows(0, inter), gate_up.rows(inter, 2 * inter)
    attn.o_proj = Fp8Linear.from_linear(attn.o_proj, mode)
    mlp.down_proj = Fp8Linear.from_linear(mlp.down_proj, mode)
    fused.update(qkv_fp8=qkv, gate_up_fp8=gate_up, qkv_w=None, qkv_b=None, gate_up_w=None, gate_up_b=None)
    return None


def dequantized(module: nn.Module, name: str, param: torch.Tensor) -> torch.Tensor:
    """``param`` (named ``name`` inside ``module``) as the values it stands for: FP8 weights dequantised."""
    if not str(param.dtype).startswith("torch.float8"):
        return param
    owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
    if isinstance(owner, Fp8Linear) and name.endswith("weight"):
        return owner.dequantized_weight()
    return param.float()
