"""Frozen backbones: load a causal LLM through transformers' Auto classes, and any perceptual encoder
through its loader (:mod:`scaling.models.encoders`: one module per encoder family plus a registry).

A backbone is named by a local directory (what users normally pass), a hub id (only where the
machine has network), or a shape name from :mod:`scaling.models.shapes` (architecture from its
config, on ``meta`` tensors or with random weights). This module also describes each loaded model
uniformly (:class:`LLMLayout`, :class:`EncoderInfo`) so that the blocks never branch on architecture.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, PretrainedConfig

from scaling.config.base import ConfigError
from scaling.models.encoders.base import DTYPES, EncoderInfo, PerceptualEncoder, per_frame_info
from scaling.models.encoders.registry import resolve
from scaling.models.hf_config import load_config
from scaling.models.shapes import ENCODER_SHAPES, LLM_SHAPES

log = logging.getLogger(__name__)


def _load_config(name: str, kind: str, trust_remote_code: bool) -> tuple[PretrainedConfig, bool]:
    """(config, is_shape). Errors name the path and what is accepted."""
    return load_config(name, kind, LLM_SHAPES if kind == "llm" else ENCODER_SHAPES, trust_remote_code)


# --------------------------------------------------------------------------------------------- LLM


@dataclasses.dataclass
class LLMLayout:
    """Where the parts of a decoder-only LLM live, whatever its architecture."""

    base: nn.Module  # the decoder stack (LlamaModel, OPTModel, GPT2Model, ...)
    layers: nn.ModuleList
    embed_tokens: nn.Embedding
    lm_head: nn.Linear
    hidden_size: int
    n_layers: int
    attn_attr: str  # name of the self-attention submodule inside a layer
    ffn_attr: str  # name of the submodule whose output is the feed-forward output
    lora_targets: tuple[str, ...]
    embed_scale: float = 1.0  # the embedding module multiplies token embeddings by this (Gemma: sqrt(d))
    logit_scale: float = 1.0  # logits = lm_head(h) * logit_scale (Cohere)
    logit_softcap: float | None = None  # logits = cap * tanh(logits / cap) (Gemma-2's final_logit_softcapping)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` final hidden states → ``[..., V]`` logits exactly as the LLM's own head computes them."""
        out = self.lm_head(hidden)
        if self.logit_scale != 1.0:
            out = out * self.logit_scale
        if self.logit_softcap:
            out = torch.tanh(out / self.logit_softcap) * self.logit_softcap
        return out

    @property
    def plain_head(self) -> bool:
        """The logits are ``lm_head(h)`` alone (the fused target-only loss applies)."""
        return self.logit_scale == 1.0 and not self.logit_softcap


def _find_layers(base: nn.Module) -> nn.ModuleList:
    for attr in ("layers", "h", "blocks"):
        mod = getattr(base, attr, None)
        if isinstance(mod, nn.ModuleList):
            return mod
    decoder = getattr(base, "decoder", None)  # OPT
    if decoder is not None:
        return _find_layers(decoder)
    raise ConfigError(f"cannot find the decoder layers of {type(base).__name__}; supported: LLaMA, OPT, GPT-2, Qwen2, Mistral-like")


def llm_layout(llm: nn.Module) -> LLMLayout:
    """Describe a transformers causal LM (see :class:`LLMLayout`)."""
    base = getattr(llm, llm.base_model_prefix)
    layers = _find_layers(base)
    layer = layers[0]
    attn_attr = next((a for a in ("self_attn", "attn", "attention", "self_attention") if hasattr(layer, a)), None)
    ffn_attr = next((a for a in ("mlp", "fc2", "feed_forward") if hasattr(layer, a)), None)
    if attn_attr is None or ffn_attr is None:
        raise ConfigError(f"unsupported decoder layer {type(layer).__name__}: no attention/FFN submodule found")
    cfg = llm.config
    emb_width = llm.get_input_embeddings().weight.shape[-1]
    if emb_width != cfg.hidden_size:
        raise ConfigError(
            f"LLM {cfg.model_type!r} embeds tokens at width {emb_width} and runs its layers at {cfg.hidden_size} "
            f"(a projection between them, as OPT-350m's word_embed_proj_dim): injecting perceptual tokens at both "
            f"widths is not supported yet; use an LLM whose embedding width is its hidden size (OPT-125m/1.3b/2.7b/6.7b, "
            f"LLaMA, Qwen2, GPT-2, ...)"
        )
    names = {n.rsplit(".", 1)[-1] for n, _ in layer.named_modules()}
    # LoRA's default targets: q/v projections, else the fused q|k|v projection (GPT-2, Phi-3, GPT-NeoX, Falcon, BLOOM)
    lora = tuple(t for t in ("q_proj", "v_proj") if t in names) or tuple(
        t for t in ("c_attn", "qkv_proj", "query_key_value") if t in names)
    emb = llm.get_input_embeddings()
    embed_scale = getattr(emb, "scalar_embed_scale", None)
    if embed_scale is None and isinstance(getattr(emb, "embed_scale", None), (int, float, torch.Tensor)):
        embed_scale = float(emb.embed_scale)
    return LLMLayout(
        base=base,
        layers=layers,
        embed_tokens=llm.get_input_embeddings(),
        lm_head=llm.get_output_embeddings(),
        hidden_size=cfg.hidden_size,
        n_layers=len(layers),
        attn_attr=attn_attr,
        ffn_attr=ffn_attr,
        lora_targets=lora,
        embed_scale=float(embed_scale or 1.0),
        logit_scale=float(getattr(cfg, "logit_scale", None) or 1.0),
        logit_softcap=getattr(cfg, "final_logit_softcapping", None) or None,
    )


def _with_attention_fallback(name: str, cfg: PretrainedConfig, attn_implementation: str, load) -> nn.Module:
    """``load(attn_implementation)``; an architecture without SDPA (BLOOM, GPT-J on some versions, ...)
    falls back to eager attention with a one-line note instead of failing."""
    try:
        return load(attn_implementation)
    except ValueError as err:
        unsupported = "does not support an attention implementation" in str(err)
        if not (unsupported and attn_implementation == "sdpa"):
            raise ConfigError(f"{name!r} ({cfg.model_type}) is not a causal LM supported by transformers: {err}") from None
    log.warning("LLM %s (%s) has no SDPA attention in transformers: using eager attention (slower, same results)",
                name, cfg.model_type)
    try:
        return load("eager")
    except ValueError as err:
        raise ConfigError(f"{name!r} ({cfg.model_type}) is not a causal LM supported by transformers: {err}") from None


def load_llm(
    name: str,
    dtype: str = "bf16",
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    meta: bool = False,
) -> nn.Module:
    """Load a decoder-only causal LM, frozen, in ``dtype``. Shape names give random weights (or meta)."""
    cfg, is_shape = _load_config(name, "llm", trust_remote_code)
    if getattr(cfg, "is_encoder_decoder", False):
        raise ConfigError(f"LLM {name!r} is an encoder-decoder model ({cfg.model_type}); scaling needs a decoder-only causal LM")
    torch_dtype = DTYPES[dtype]
    if is_shape or meta:
        cfg._attn_implementation = attn_implementation
        ctx = torch.device("meta") if meta else torch.device(device)
        with ctx:
            model = _with_attention_fallback(
                name, cfg, attn_implementation,
                lambda impl: AutoModelForCausalLM.from_config(
                    cfg, dtype=torch_dtype, attn_implementation=impl, trust_remote_code=trust_remote_code),
            )
    else:
        model = _with_attention_fallback(
            name, cfg, attn_implementation,
            lambda impl: AutoModelForCausalLM.from_pretrained(
                os.path.expanduser(name), dtype=torch_dtype, attn_implementation=impl, trust_remote_code=trust_remote_code),
        )
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------------------- encoder
# Every encoder is an EncoderLoader of scaling.models.encoders (one module per family + the registry);
# these are the façades the rest of the package calls.


def encoder_info(cfg: PretrainedConfig, video_frames: int | None = None) -> EncoderInfo:
    """Describe a transformers encoder from its config. ``video_frames`` turns an image encoder into a per-frame one."""
    from scaling.models.encoders.hf import info_from_config
    from scaling.models.encoders.registry import loader_for

    loader_for(cfg.model_type)  # imports its family module (an unknown model_type is a ConfigError naming the supported)
    return info_from_config(cfg, video_frames)


def load_encoder(
    name: str,
    dtype: str = "bf16",
    device: str | torch.device = "cpu",
    video_frames: int | None = None,
    trust_remote_code: bool = False,
    meta: bool = False,
    attn_implementation: str = "sdpa",
    **options,
) -> PerceptualEncoder:
    """Load a frozen perceptual encoder: a transformers one (CLIP vision, ViT, DINOv2, SigLIP vision,
    TimeSformer, VideoMAE, AST, Whisper's encoder, CLAP's audio tower) or ``PREFIX:REF`` of another library
    (:mod:`scaling.models.encoders`). ``options``: family-specific settings, passed to its loader."""
    loader, ref = resolve(name, trust_remote_code)
    return loader.load(ref, dtype=dtype, device=device, video_frames=video_frames, meta=meta,
                       trust_remote_code=trust_remote_code, attn_implementation=attn_implementation, **options)


def describe_encoder(name: str, video_frames: int | None = None, trust_remote_code: bool = False, **options) -> EncoderInfo:
    """The :class:`EncoderInfo` of ``model.encoder`` (any loader), without loading weights."""
    loader, ref = resolve(name, trust_remote_code)
    return loader.describe(ref, video_frames=video_frames, trust_remote_code=trust_remote_code, **options)


def load_config_only(name: str, kind: str, trust_remote_code: bool = False) -> PretrainedConfig:
    """The transformers config of a backbone (path, hub id or shape name), without weights."""
    return _load_config(name, kind, trust_remote_code)[0]


__all__ = [
    "AutoModel",
    "DTYPES",
    "EncoderInfo",
    "LLMLayout",
    "PerceptualEncoder",
    "describe_encoder",
    "encoder_info",
    "llm_layout",
    "load_config_only",
    "load_encoder",
    "load_llm",
    "per_frame_info",
]
