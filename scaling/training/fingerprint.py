"""Fingerprints of the frozen backbones an adapter was trained on, and the check that refuses others.

An adapter only means something on the exact backbones it was trained with. A fingerprint records,
for the LLM and the encoder:

* ``architecture``: the transformers class and ``model_type``;
* ``dims``: the config's sizes (hidden size, layers, heads, vocabulary, image/patch size, ...);
* ``n_params`` and ``shapes``: a hash of every parameter's name and shape;
* ``weights``: for every parameter, a SHA-256 of a strided sample of at most 4,096 values in the
  stored dtype, plus 8 of those values as floats — so a copy loaded in another dtype (bf16 vs fp32)
  is recognised by value (relative tolerance 0.8%, twice bf16's rounding; 7% against FP8 weights of
  ``model.fp8_llm``, compared dequantised) while the hash decides when the dtypes agree. (Checkpoints
  written before recorded three tensors; they are compared on those.)

:func:`compare` returns human-readable differences (empty when the backbones match). Parameters added
by the method (LoRA ``lora_*``) are left out, so fingerprints taken at training start and after a
fresh build for loading agree. Fingerprints must be taken before ZeRO-3 partitions the weights.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

DIM_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "intermediate_size", "ffn_dim", "vocab_size", "n_embd", "n_layer", "n_head", "image_size", "patch_size",
    "num_frames", "num_mel_bins", "max_length", "word_embed_proj_dim", "tie_word_embeddings",
)
SAMPLE_MAX = 4096
N_VALUES = 8


def _config_dims(config) -> dict[str, Any]:
    if config is None:
        return {}
    out = {}
    for key in DIM_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, (int, float, str, bool)):
            out[key] = value
    return out


def _tensor_print(t: torch.Tensor) -> dict[str, Any]:
    flat = t.detach().reshape(-1)
    stride = max(1, flat.numel() // SAMPLE_MAX)
    sample = flat[::stride][:SAMPLE_MAX].contiguous().cpu()
    raw = sample.view(torch.uint8) if sample.dtype != torch.bool else sample.to(torch.uint8)
    digest = hashlib.sha256(raw.numpy().tobytes()).hexdigest()[:32]
    step = max(1, sample.numel() // N_VALUES)
    values = sample[::step][:N_VALUES].float().tolist()
    return {"dtype": str(t.dtype).replace("torch.", ""), "numel": t.numel(), "sha256": digest, "values": values}


def fingerprint(module: nn.Module | None, config=None) -> dict[str, Any] | None:
    """Fingerprint of one backbone (``None`` when the method has none, e.g. the blind baseline)."""
    if module is None:
        return None
    params = [(n, p) for n, p in module.named_parameters() if "lora_" not in n]
    shapes = hashlib.sha256("\n".join(f"{n}:{tuple(p.shape)}" for n, p in params).encode()).hexdigest()[:32]
    out: dict[str, Any] = {
        "architecture": f"{type(module).__name__}" + (f" ({config.model_type})" if config is not None else ""),
        "dims": _config_dims(config),
        "n_params": sum(p.numel() for _, p in params),
        "shapes": shapes,
        "weights": None,
    }
    if params and not any(p.is_meta for _, p in params):
        from scaling.models.fp8 import dequantized

        out["weights"] = {}
        for name, p in params:
            out["weights"][name] = _tensor_print(p)
            if str(p.dtype).startswith("torch.float8"):  # model.fp8_llm: compare the values the codes stand for
                out["weights"][name]["values"] = _tensor_print(dequantized(module, name, p))["values"]
    return out


def model_fingerprints(model) -> dict[str, Any]:
    """{"llm": ..., "encoder": ...} for a :class:`~scaling.models.model.PerceptualLM`."""
    encoder = model.extractor.encoder if model.extractor is not None else None  # any loader: .model + .config
    return {
        "llm": fingerprint(model.llm, getattr(model.llm, "config", None)),
        "encoder": fingerprint(encoder.model if encoder is not None else None, getattr(encoder, "config", None)),
    }


def _weights_differ(a: dict, b: dict) -> str | None:
    if a["numel"] != b["numel"]:
        return f"{a['numel']} vs {b['numel']} elements"
    if a["dtype"] == b["dtype"]:
        return None if a["sha256"] == b["sha256"] else "different values (hash)"
    va, vb = torch.tensor(a["values"]), torch.tensor(b["values"])
    fp8 = "float8" in a["dtype"] or "float8" in b["dtype"]  # e4m3 keeps 3 mantissa bits: up to 6.25% apart
    if va.shape != vb.shape or not torch.allclose(va, vb, rtol=7e-2 if fp8 else 8e-3, atol=1e-3 if fp8 else 1e-6):
        return f"different values (stored {a['dtype']}, now {b['dtype']})"
    return None


def compare(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Differences between stored and current fingerprints, one readable line each (empty: they match)."""
    diffs = []
    for kind in ("llm", "encoder"):
        a, b = stored.get(kind), current.get(kind)
        if a is None and b is None:
            continue
        if (a is None) != (b is None):
            diffs.append(f"{kind}: trained {'without' if a is None else 'with'} one, now {'without' if b is None else 'with'} one")
            continue
        if a["architecture"] != b["architecture"]:
            diffs.append(f"{kind} architecture: trained on {a['architecture']}, now {b['architecture']}")
            continue
        dims = [f"{k} {a['dims'].get(k)} → {b['dims'].get(k)}" for k in sorted(set(a["dims"]) | set(b["dims"]))
                if a["dims"].get(k) != b["dims"].get(k)]
        if dims:
            diffs.append(f"{kind} config: " + ", ".join(dims))
        if a["shapes"] != b["shapes"] or a["n_params"] != b["n_params"]:
            diffs.append(f"{kind} parameter shapes: {a['n_params']:,} parameters trained on, {b['n_params']:,} now")
            continue
        if a.get("weights") and b.get("weights"):
            for name, wa in a["weights"].items():  # stored names (three in checkpoints of older versions)
                wb = b["weights"].get(name)
                why = "missing" if wb is None else _weights_differ(wa, wb)
                if why:
                    diffs.append(f"{kind} weights differ at {name}: {why} (same architecture, other checkpoint?)")
                    break
    return diffs
