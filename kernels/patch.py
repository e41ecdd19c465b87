"""Swap the fused Triton kernels into a loaded HF LLaMA-family model (LLaMA, Qwen2, Mistral, Qwen3).

The frozen LLM's eager step spends a lot of time in elementwise work (fp32 RMSNorm, ``silu(gate) * up``,
rotary, casts). :func:`patch_llama_family` replaces, on the given model:

* every RMSNorm module whose ``forward`` is the LLaMA one (``LlamaRMSNorm``, ``Qwen2RMSNorm``, ...;
  checked by comparing the code of ``forward``, so e.g. Gemma's ``1 + weight`` variant is left alone):
  ``module.forward`` is replaced **per instance** by :func:`scaling.kernels.rms_norm.rms_norm`;
* every MLP module with ``gate_proj`` / ``up_proj`` / ``down_proj`` whose ``act_fn`` is SiLU and whose
  ``forward`` is the LLaMA one: ``module.forward`` (per instance) uses :func:`scaling.kernels.swiglu.swiglu`;
* the module-level ``apply_rotary_pos_emb`` of each ``transformers.models.<family>.modeling_<family>``
  module the model's classes come from (when its code is the LLaMA one) is replaced by
  :func:`scaling.kernels.rope.rope`. This one is **process-wide** for that family (it is how the
  attention module looks the function up); :func:`unpatch_llama_family` restores it.

With ``mode="auto"`` each call still dispatches at run time (Triton on CUDA, the reference
elsewhere), so a patched model keeps working on CPU. Outputs equal the unpatched model's within
rounding (the kernels reproduce the eager rounding steps).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
import types
from typing import Any

import torch
from torch import nn

from .dispatch import _MODES
from .rms_norm import rms_norm
from .rope import rope
from .swiglu import swiglu

_PATCH_ATTR = "_scaling_kernels_patched"
# module name -> original apply_rotary_pos_emb
_ORIGINAL_ROPE: dict[str, Any] = {}

_LLAMA_MODELING = "transformers.models.llama.modeling_llama"


def _body_dump(fn) -> str | None:
    """AST of a function's body without its docstring/decorators (None if the source is unavailable)."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    tree = ast.parse(src)
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    args = ast.dump(node.args, annotate_fields=False, include_attributes=False)
    return args + "|" + "".join(ast.dump(b, annotate_fields=False, include_attributes=False) for b in body)


def _plain_function(fn):
    """The Python function behind ``fn``: decorators unwrapped, and, where the Hugging Face ``kernels`` package is
    installed, transformers' ``use_kernelized_func`` wrapper opened (it turns a module-level function such as
    ``apply_rotary_pos_emb`` into a small ``nn.Module`` whose ``forward`` closes over the function)."""
    fn = inspect.unwrap(fn)
    if isinstance(fn, nn.Module):
        forward = getattr(type(fn).forward, "__closure__", None) or ()
        inner = [c.cell_contents for c in forward
                 if inspect.isfunction(getattr(c, "cell_contents", None))]
        if len(inner) == 1:
            return inspect.unwrap(inner[0])
    return fn


def _llama_reference_dumps() -> dict[str, str | None]:
    mod = importlib.import_module(_LLAMA_MODELING)
    return {
        "rms_norm": _body_dump(mod.LlamaRMSNorm.forward),
        "mlp": _body_dump(mod.LlamaMLP.forward),
        "rope": _body_dump(_plain_function(mod.apply_rotary_pos_emb)),
    }


def _is_silu(act: Any) -> bool:
    if isinstance(act, nn.SiLU):
        return True
    try:
        from transformers.activations import SiLUActivation
    except Exception:  # pragma: no cover
        return False
    return isinstance(act, SiLUActivation)


def _rms_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    return rms_norm(hidden_states, self.weight, self.variance_epsilon, mode=getattr(self, _PATCH_ATTR))


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    mode = getattr(self, _PATCH_ATTR)
    return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x), mode=mode))


def _make_rope_fn(original, mode: str):
    params = list(inspect.signature(original).parameters)
    if "position_ids" in params:  # older transformers: (q, k, cos, sin, position_ids=None, unsqueeze_dim=1)
        def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
            return rope(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim, mode=mode)
    else:
        def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
            return rope(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim, mode=mode)
    apply_rotary_pos_emb.__doc__ = "scaling.kernels.rope replacement of transformers' apply_rotary_pos_emb"
    apply_rotary_pos_emb._scaling_kernels_original = original  # type: ignore[attr-defined]
    return apply_rotary_pos_emb


def patch_llama_family(model: nn.Module, mode: str = "auto", norms: bool = True, mlp: bool = True,
                       rotary: bool = True) -> dict[str, Any]:
    """Swap fused kernels into a loaded HF LLaMA/Qwen2-family model, in place.

    Args:
        model: e.g. a ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` (or its inner ``model``).
        mode: ``"auto"`` | ``"triton"`` | ``"torch"``, passed to every kernel call.
        norms, mlp, rotary: which parts to patch (RMSNorm modules, MLP activations, rotary function).

    Returns:
        A report: ``{"mode", "rms_norm": [module names], "mlp": [module names],
        "rope_modules": [python modules patched], "skipped": [(name, reason)]}``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    ref = _llama_reference_dumps()
    report: dict[str, Any] = {"mode": mode, "rms_norm": [], "mlp": [], "rope_modules": [], "skipped": []}
    body_cache: dict[Any, str | None] = {}

    def same_as(fn, key: str) -> bool:
        if fn not in body_cache:
            body_cache[fn] = _body_dump(fn)
        return body_cache[fn] is not None and body_cache[fn] == ref[key]

    modeling_modules: set[str] = set()
    for name, module in model.named_modules():
        cls = type(module)
        mod_name = cls.__module__
        if mod_name.startswith("transformers.models.") and ".modeling_" in mod_name:
            modeling_modules.add(mod_name)
        cls_name = cls.__name__
        if norms and cls_name.endswith("RMSNorm"):
            if not (hasattr(module, "weight") and hasattr(module, "variance_epsilon")):
                report["skipped"].append((name, f"{cls_name}: no weight/variance_epsilon"))
            elif not same_as(cls.forward, "rms_norm"):
                report["skipped"].append((name, f"{cls_name}: forward differs from LlamaRMSNorm"))
            else:
                setattr(module, _PATCH_ATTR, mode)
                module.forward = types.MethodType(_rms_forward, module)
                report["rms_norm"].append(name)
        elif mlp and cls_name.endswith("MLP") and all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj")):
            if not _is_silu(getattr(module, "act_fn", None)):
                report["skipped"].append((name, f"{cls_name}: activation is not SiLU"))
            elif not same_as(cls.forward, "mlp"):
                report["skipped"].append((name, f"{cls_name}: forward differs from LlamaMLP"))
            else:
                setattr(module, _PATCH_ATTR, mode)
                module.forward = types.MethodType(_mlp_forward, module)
                report["mlp"].append(name)

    if rotary:
        for mod_name in sorted(modeling_modules):
            mod = sys.modules.get(mod_name)
            fn = getattr(mod, "apply_rotary_pos_emb", None) if mod is not None else None
            if fn is None:
                continue
            original = _ORIGINAL_ROPE.get(mod_name, fn)
            if getattr(fn, "_scaling_kernels_original", None) is not None:
                original = fn._scaling_kernels_original
            if not same_as(_plain_function(original), "rope"):
                report["skipped"].append((mod_name, "apply_rotary_pos_emb differs from LLaMA's"))
                continue
            _ORIGINAL_ROPE[mod_name] = original
            mod.apply_rotary_pos_emb = _make_rope_fn(original, mode)
            report["rope_modules"].append(mod_name)
    return report


def unpatch_llama_family(model: nn.Module | None = None) -> None:
    """Undo :func:`patch_llama_family`: per-instance forwards of ``model`` and every patched rotary function."""
    if model is not None:
        for module in model.modules():
            if hasattr(module, _PATCH_ATTR):
                if "forward" in module.__dict__:
                    del module.forward
                delattr(module, _PATCH_ATTR)
    for mod_name, original in list(_ORIGINAL_ROPE.items()):
        mod = sys.modules.get(mod_name)
        if mod is not None:
            mod.apply_rotary_pos_emb = original
        del _ORIGINAL_ROPE[mod_name]


__all__ = ["patch_llama_family", "unpatch_llama_family"]
