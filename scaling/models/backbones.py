"""Frozen backbones: load a causal LLM and a perceptual encoder through transformers' Auto classes.

A backbone is named by a local directory (what users normally pass), a hub id (only where the
machine has network), or a shape name from :mod:`scaling.models.shapes` (architecture from its
config, on ``meta`` tensors or with random weights). This module also describes each loaded model
uniformly (:class:`LLMLayout`, :class:`EncoderInfo`) so that the blocks never branch on architecture.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig

from scaling.config.base import ConfigError
from scaling.models.shapes import ENCODER_SHAPES, LLM_SHAPES, shape_config

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# encoder model_type -> (transformers class name, modality)
ENCODER_TYPES: dict[str, tuple[str, str]] = {
    "clip": ("CLIPVisionModel", "image"),
    "clip_vision_model": ("CLIPVisionModel", "image"),
    "vit": ("ViTModel", "image"),
    "dinov2": ("Dinov2Model", "image"),
    "siglip": ("SiglipVisionModel", "image"),
    "siglip_vision_model": ("SiglipVisionModel", "image"),
    "timesformer": ("TimesformerModel", "video"),
    "audio-spectrogram-transformer": ("ASTModel", "audio"),
    "videomae": ("VideoMAEModel", "video"),
    "whisper": ("WhisperModel", "audio"),  # its encoder only (the decoder is dropped after loading)
    "clap_audio_model": ("ClapAudioModel", "audio"),  # CLAP's audio tower (HTSAT), without fusion
}


def _load_config(name: str, kind: str, trust_remote_code: bool) -> tuple[PretrainedConfig, bool]:
    """(config, is_shape). Errors name the path and what is accepted."""
    cfg = shape_config(name, kind)
    if cfg is not None:
        return cfg, True
    shapes = sorted(LLM_SHAPES if kind == "llm" else ENCODER_SHAPES)
    path = os.path.expanduser(name)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") >= 2
    if looks_local and not os.path.isdir(path):
        raise ConfigError(
            f"{kind} path {name!r} does not exist. Pass a local Hugging Face model directory "
            f"(with config.json and weights), a hub id on a machine with network, or a shape name: {shapes}"
        )
    try:
        cfg = AutoConfig.from_pretrained(os.path.expanduser(name), trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds here
        raise ConfigError(
            f"cannot load the {kind} config from {name!r} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Pass a local Hugging Face model directory, a hub id (needs network), or a shape name: {shapes}"
        ) from None
    return cfg, False


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


@dataclasses.dataclass
class EncoderInfo:
    """What the blocks need to know about a perceptual encoder."""

    modality: str  # image | video | audio
    hidden_size: int
    n_layers: int
    has_cls: bool  # a [CLS] token at index 0
    n_special: int  # special tokens before the patch tokens (CLS, distillation, registers)
    grid: tuple[int, ...]  # patch-token grid in memory order
    block: tuple[int, ...]  # resampler block on that grid (4 tokens per block)
    image_size: int | None = None
    num_frames: int | None = None
    num_mel_bins: int | None = None
    max_length: int | None = None
    per_frame: bool = False  # an image encoder applied to each video frame ("ViT avg")
    encoder_type: str = ""  # registry key of scaling.models.final_norm.FINAL_NORMS (HF: the config's model_type)
    cls_pool: str = "token"  # tokens=cls takes the CLS token ("token") or the level's patch-token mean ("mean": MAViL, B.1)

    @property
    def n_patches(self) -> int:
        n = 1
        for g in self.grid:
            n *= g
        return n


def encoder_info(cfg: PretrainedConfig, video_frames: int | None = None) -> EncoderInfo:
    """Describe an encoder from its config. ``video_frames`` turns an image encoder into a per-frame one."""
    model_type = cfg.model_type
    if model_type not in ENCODER_TYPES:
        raise ConfigError(f"unsupported encoder type {model_type!r}; supported: {sorted(ENCODER_TYPES)}")
    if model_type == "clip":  # a full CLIP checkpoint: use its vision tower
        cfg = cfg.vision_config
    if model_type == "siglip":
        cfg = cfg.vision_config
    _, modality = ENCODER_TYPES[model_type]
    d, n_layers = cfg.hidden_size, cfg.num_hidden_layers
    if model_type == "whisper":  # conv stem with stride 2: max_source_positions tokens from 2x as many mel frames
        n = cfg.max_source_positions
        return EncoderInfo("audio", d, cfg.encoder_layers, False, 0, (n,), (4,), num_mel_bins=cfg.num_mel_bins,
                           max_length=2 * n, encoder_type=model_type)
    if model_type == "clap_audio_model":  # HTSAT: levels are the blocks of its last stage (the final width)
        if getattr(cfg, "enable_fusion", False):
            raise ConfigError("CLAP audio with enable_fusion=true (4-channel fused input) is not supported; use a non-fusion checkpoint")
        n_merges = len(cfg.depths) - 1
        side = cfg.spec_size // cfg.patch_size // 2**n_merges
        return EncoderInfo("audio", cfg.patch_embeds_hidden_size * 2**n_merges, cfg.depths[-1], False, 0, (side, side), (2, 2),
                           num_mel_bins=cfg.num_mel_bins, max_length=1001, encoder_type=model_type)
    if model_type == "videomae":  # tubelets: tokens in (time, height, width) order, no CLS
        side, t = cfg.image_size // cfg.patch_size, cfg.num_frames // cfg.tubelet_size
        return EncoderInfo("video", d, n_layers, False, 0, (t, side, side), (1, 2, 2), image_size=cfg.image_size,
                           num_frames=cfg.num_frames, encoder_type=model_type)
    if modality == "audio":
        f = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
        t = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
        return EncoderInfo("audio", d, n_layers, True, 2, (f, t), (2, 2), num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length,
                           encoder_type=model_type)
    side = cfg.image_size // cfg.patch_size
    if modality == "video":
        # TimeSformer orders patch tokens patch-major, frame-minor: index = patch * T + frame
        frames = cfg.num_frames
        return EncoderInfo("video", d, n_layers, True, 1, (side, side, frames), (2, 2, 1), image_size=cfg.image_size, num_frames=frames,
                           encoder_type=model_type)
    has_cls = model_type not in ("siglip", "siglip_vision_model")
    n_special = 1 + getattr(cfg, "num_register_tokens", 0) if has_cls else 0
    info = EncoderInfo("image", d, n_layers, has_cls, n_special, (side, side), (2, 2), image_size=cfg.image_size,
                       encoder_type=model_type)
    return per_frame_info(info, video_frames)


def per_frame_info(info: EncoderInfo, video_frames: int | None) -> EncoderInfo:
    """An image encoder's info, turned into a per-frame video encoder's when ``video_frames`` is set."""
    if not video_frames or info.modality != "image":
        return info
    return dataclasses.replace(info, modality="video", grid=(video_frames, *info.grid), block=(1, 2, 2),
                               num_frames=video_frames, per_frame=True)


class PerceptualEncoder(nn.Module):
    """A frozen encoder that returns the hidden states of chosen layers.

    ``forward(media, levels)`` → ``[batch, len(levels), n_special + n_patches, d]`` where the levels
    index the encoder's layer outputs (``-1`` = last layer; the embedding output is not a level).
    For a per-frame image encoder on video ``[batch, frames, 3, H, W]``, the special tokens are
    averaged over frames and the patch tokens of all frames are concatenated (grid: frames × h × w).
    """

    def __init__(self, model: nn.Module, info: EncoderInfo, config: Any = None):
        super().__init__()
        self.model = model
        self.info = info
        # what fingerprints record as the architecture's dims (a transformers config, or a namespace
        # with model_type / hidden_size / num_hidden_layers / ... for the other libraries)
        self.config = config if config is not None else getattr(model, "config", None)

    def forward(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """``norm``: applied to every level's tokens (the encoder's final norm, ``model.extract.norm``);
        per frame, before the special tokens are averaged over frames."""
        info = self.info
        if info.per_frame:
            if media.dim() != 5:
                raise ValueError(f"video input must be [batch, frames, 3, H, W], got {tuple(media.shape)}")
            b, f = media.shape[:2]
            states = self._hidden_states(media.flatten(0, 1), levels, norm)  # [b*f, L, n, d]
            states = states.unflatten(0, (b, f))  # [b, f, L, n, d]
            special = states[:, :, :, : info.n_special].mean(dim=1)  # [b, L, s, d]
            patches = states[:, :, :, info.n_special :].permute(0, 2, 1, 3, 4).flatten(2, 3)  # [b, L, f*n, d]
            return torch.cat([special, patches], dim=2)
        return self._hidden_states(media, levels, norm)

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media → ``[batch, len(levels), n_special + n_patches, d]`` (each level through ``norm`` when given)."""
        kind = self.info.modality if not self.info.per_frame else "image"
        key = {"image": "pixel_values", "video": "pixel_values", "audio": "input_values"}[kind]
        out = self.model(**{key: media}, output_hidden_states=True)
        hidden = out.hidden_states[1:]  # drop the embedding output: levels are layer outputs
        states = torch.stack([hidden[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states


class WhisperAudioEncoder(PerceptualEncoder):
    """Whisper's encoder. Its last ``hidden_states`` entry already went through the final ``layer_norm``,
    so the levels are taken from its layers' outputs (forward hooks) to keep "levels are raw layer outputs"."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media log-mel ``[B, frames, mel]`` → ``[B, len(levels), frames / 2, d]``."""
        outputs: list[torch.Tensor] = []
        hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
                 for layer in self.model.layers]
        try:
            self.model(input_features=media.transpose(1, 2))
        finally:
            for h in hooks:
                h.remove()
        states = torch.stack([outputs[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states


class ClapAudioEncoder(PerceptualEncoder):
    """CLAP's HTSAT audio tower. Its stages differ in width, so the levels are the blocks of the last
    stage (forward hooks); tokens are its final (spec_size / patch / 2^merges)² grid of the mel "image"."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media log-mel ``[B, frames, mel]`` → ``[B, len(levels), side², d]``."""
        outputs: list[torch.Tensor] = []
        hooks = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
                 for block in self.model.audio_encoder.layers[-1].blocks]
        try:
            self.model(input_features=media.unsqueeze(1))
        finally:
            for h in hooks:
                h.remove()
        states = torch.stack([outputs[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states


def load_encoder(
    name: str,
    dtype: str = "bf16",
    device: str | torch.device = "cpu",
    video_frames: int | None = None,
    trust_remote_code: bool = False,
    meta: bool = False,
    attn_implementation: str = "sdpa",
) -> PerceptualEncoder:
    """Load a frozen perceptual encoder: a transformers one (CLIP vision, ViT, DINOv2, SigLIP vision,
    TimeSformer, VideoMAE, AST, Whisper's encoder, CLAP's audio tower) or ``PREFIX:REF`` of another library (:mod:`scaling.models.encoders`)."""
    import transformers

    from scaling.models.encoders import loader_for, split_encoder_name

    prefix, ref = split_encoder_name(name)
    if prefix is not None:
        return loader_for(prefix).load(ref, dtype=dtype, device=device, video_frames=video_frames, meta=meta)

    cfg, is_shape = _load_config(name, "encoder", trust_remote_code)
    info = encoder_info(cfg, video_frames)
    cls = getattr(transformers, ENCODER_TYPES[cfg.model_type][0])
    torch_dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {}
    if cfg.model_type in ("vit",):
        kwargs["add_pooling_layer"] = False
    if is_shape or meta:
        ctx = torch.device("meta") if meta else torch.device(device)
        if cfg.model_type in ("clip", "siglip"):
            cfg = cfg.vision_config
        try:
            cfg._attn_implementation = attn_implementation
        except Exception:  # noqa: BLE001
            pass
        with ctx:
            try:
                model = cls._from_config(cfg, dtype=torch_dtype, **kwargs)
            except ValueError as err:  # no SDPA in this architecture (CLAP's HTSAT): its eager attention
                if "scaled_dot_product_attention" not in str(err):
                    raise
                cfg._attn_implementation = "eager"
                model = cls._from_config(cfg, dtype=torch_dtype, **kwargs)
    else:
        model = cls.from_pretrained(os.path.expanduser(name), dtype=torch_dtype, trust_remote_code=trust_remote_code, **kwargs)
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    if cfg.model_type == "clap_audio_model":
        return ClapAudioEncoder(model, info)
    if cfg.model_type == "whisper":
        config = model.config
        model = model.get_encoder()  # the decoder is not used
        return WhisperAudioEncoder(model, info, config)
    return PerceptualEncoder(model, info)


def describe_encoder(name: str, video_frames: int | None = None, trust_remote_code: bool = False) -> EncoderInfo:
    """The :class:`EncoderInfo` of ``model.encoder`` (any loader), without loading weights."""
    from scaling.models.encoders import loader_for, split_encoder_name

    prefix, ref = split_encoder_name(name)
    if prefix is not None:
        return loader_for(prefix).describe(ref, video_frames=video_frames)
    return encoder_info(load_config_only(name, "encoder", trust_remote_code), video_frames)


def load_config_only(name: str, kind: str, trust_remote_code: bool = False) -> PretrainedConfig:
    """The transformers config of a backbone (path, hub id or shape name), without weights."""
    return _load_config(name, kind, trust_remote_code)[0]


__all__ = [
    "AutoModel",
    "DTYPES",
    "ENCODER_TYPES",
    "EncoderInfo",
    "LLMLayout",
    "PerceptualEncoder",
    "describe_encoder",
    "encoder_info",
    "llm_layout",
    "load_config_only",
    "load_encoder",
    "load_llm",
]
