"""The registry of encoder loaders: one module per encoder family, one :class:`EncoderLoader` each.

``model.encoder`` is either ``PREFIX:REF`` (another library: :data:`PREFIXES`) or a transformers
directory / hub id / shape name, whose config's ``model_type`` picks the module (:data:`MODEL_TYPES`).
Adding an encoder = its module (which calls :func:`register`) + one line here.

A loader turns ``REF`` (the part after the prefix; for transformers encoders the whole name) into:

* ``describe(ref, video_frames, **options)`` → :class:`~scaling.models.encoders.base.EncoderInfo` without
  weights (modality, width, layers, special tokens, patch grid);
* ``load(ref, dtype, device, video_frames, meta, **options)`` → a frozen
  :class:`~scaling.models.encoders.base.PerceptualEncoder` (``meta=True``: real shapes on the meta device,
  no weights read);
* ``media(ref, info, data_cfg)`` → the :class:`~scaling.common.media.MediaSpec` its library prescribes
  (``MediaSpec.preprocess`` names it; cached features record it);
* ``check(ref)`` → problems found before training (missing files), empty when fine;
* ``identity(ref)`` → a short name for feature-cache signatures;

and declares its ``final_norms`` (``EncoderInfo.encoder_type`` → :class:`~scaling.models.encoders.base.FinalNorm`),
its ``shapes`` (shape names → transformers config factories: meta counting, tiny tests), its tiny test
builder (``tiny(out_dir, arch, seed, **overrides)`` for the ``tiny-<arch>`` shapes of ``tiny_archs``) and
the ``names`` it is known by, with their modality (error messages, docs).
``options`` are ``trust_remote_code``, ``attn_implementation`` (the transformers loaders use them) and any
family-specific setting a module reads (``load_encoder(..., **options)`` passes them on).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from scaling.config.base import ConfigError

# model.encoder=PREFIX:REF -> the module of that library's loader (imported on first use)
PREFIXES = {
    "timm": "scaling.models.encoders.timm_loader",
    "open_clip": "scaling.models.encoders.open_clip_loader",
    "mavil": "scaling.models.encoders.mavil_loader",
}
# transformers config model_type (model.encoder=DIR / hub id / shape name) -> the module of its family
MODEL_TYPES = {
    "clip": "scaling.models.encoders.hf_vit",
    "clip_vision_model": "scaling.models.encoders.hf_vit",
    "vit": "scaling.models.encoders.hf_vit",
    "dinov2": "scaling.models.encoders.hf_vit",
    "siglip": "scaling.models.encoders.hf_vit",
    "siglip_vision_model": "scaling.models.encoders.hf_vit",
    "timesformer": "scaling.models.encoders.hf_timesformer",
    "audio-spectrogram-transformer": "scaling.models.encoders.hf_ast",
    "videomae": "scaling.models.encoders.hf_videomae",
    "whisper": "scaling.models.encoders.hf_whisper",  # its encoder only (the decoder is dropped after loading)
    "clap_audio_model": "scaling.models.encoders.hf_clap",  # CLAP's audio tower (HTSAT), without fusion
    "clap": "scaling.models.encoders.hf_clap",  # a full CLAP checkpoint: DePALM's projected tokens (or the blocks)
}


@dataclasses.dataclass(frozen=True)
class EncoderLoader:
    describe: Callable[..., Any]
    load: Callable[..., Any]
    media: Callable[..., Any]
    check: Callable[[str], list[str]]
    identity: Callable[[str], str]
    example: str
    final_norms: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    shapes: Mapping[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)
    tiny: Callable[..., str] | None = None
    tiny_archs: tuple[str, ...] = ()
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)  # display name -> modality (messages, docs)
    distribution: str | None = None  # the pip distribution whose version keys cached parameter counts (timm, ...)


ENCODER_LOADERS: dict[str, EncoderLoader] = {}  # prefix or model_type -> its loader (filled on import)


def register(key: str, loader: EncoderLoader) -> None:
    """Called by a loader module for its prefix or for each transformers ``model_type`` it reads."""
    ENCODER_LOADERS[key] = loader


def split_encoder_name(name: str) -> tuple[str | None, str]:
    """``"timm:NAME@PATH"`` → ``("timm", "NAME@PATH")``; names without a registered prefix → ``(None, name)``."""
    prefix, sep, ref = name.partition(":")
    if sep and prefix in PREFIXES:
        return prefix, ref
    return None, name


def loader_for(key: str) -> EncoderLoader:
    """The loader of a prefix (``timm``) or of a transformers ``model_type`` (``clip``)."""
    if key not in ENCODER_LOADERS:
        module = PREFIXES.get(key) or MODEL_TYPES.get(key)
        if module is None:
            raise ConfigError(f"unsupported encoder type {key!r}; supported: {sorted(MODEL_TYPES)} "
                              f"(transformers) and the prefixes {sorted(PREFIXES)}")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"model.encoder={key}:...: cannot import the {key} library ({err}); "
                              f"install it (pip install timm open_clip_torch)") from None
    return ENCODER_LOADERS[key]


def all_loaders() -> list[EncoderLoader]:
    """Every registered loader once, in the order of :data:`MODEL_TYPES` then :data:`PREFIXES`."""
    seen: dict[int, EncoderLoader] = {}
    for key in [*MODEL_TYPES, *PREFIXES]:
        loader = loader_for(key)
        seen.setdefault(id(loader), loader)
    return list(seen.values())


def encoder_shapes() -> dict[str, Callable[[], Any]]:
    """Every loader's shape names (``model.encoder=clip-vit-l14``, ``tiny-vit``, ...)."""
    return {name: factory for loader in all_loaders() for name, factory in loader.shapes.items()}


def final_norms() -> dict[str, Any]:
    """Every loader's final-norm entries (``EncoderInfo.encoder_type`` → ``FinalNorm``)."""
    return {key: entry for loader in all_loaders() for key, entry in loader.final_norms.items()}


def encoders_by_modality() -> dict[str, list[str]]:
    """The display names of every registered encoder, per modality (``image``/``video``/``audio``)."""
    out: dict[str, list[str]] = {}
    for loader in all_loaders():
        for display, modality in loader.names.items():
            out.setdefault(modality, []).append(display)
    return out


def resolve(name: str, trust_remote_code: bool = False) -> tuple[EncoderLoader, str]:
    """The loader of ``model.encoder=name`` and the ``REF`` it takes (reads a transformers config only)."""
    prefix, ref = split_encoder_name(name)
    if prefix is not None:
        return loader_for(prefix), ref
    from scaling.models.hf_config import load_config

    cfg, _ = load_config(name, "encoder", encoder_shapes(), trust_remote_code)
    if cfg.model_type not in MODEL_TYPES:
        raise ConfigError(f"unsupported encoder type {cfg.model_type!r}; supported: {sorted(MODEL_TYPES)}")
    return loader_for(cfg.model_type), name
