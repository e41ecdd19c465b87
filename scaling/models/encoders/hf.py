"""What the transformers encoder families share: config, build, load, preprocessing, tiny test models.

A family module (``hf_vit``, ``hf_timesformer``, ``hf_ast``, ``hf_clap``, ``hf_whisper``, ``hf_videomae``)
describes each ``model_type`` it reads as an :class:`HFEncoder` (transformers class, ``EncoderInfo``
from the config, final norm, default preprocessing, the wrapper that extracts levels) and registers them
with :func:`register_family`, together with its shape names. ``model.encoder`` is then a local Hugging
Face directory (what users normally pass), a hub id (only where the machine has network), or one of
those shape names (architecture from its config, on ``meta`` tensors or with random weights).

Preprocessing: the family's defaults (those of the transformers image processor / feature extractor of
that model type), overridden by ``preprocessor_config.json`` in the encoder's directory when present.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

from scaling.common.media import SAMPLE_RATE, MediaSpec
from scaling.config.base import ConfigError
from scaling.models.encoders.base import DTYPES, EncoderInfo, FinalNorm, PerceptualEncoder, per_frame_info
from scaling.models.encoders.registry import EncoderLoader, encoder_shapes, register
from scaling.models.hf_config import load_config

EXAMPLE = "model.encoder=/models/clip-vit-large-patch14 (a local Hugging Face directory) or a shape name"


def plain(model: nn.Module, info: EncoderInfo, **_options) -> PerceptualEncoder:
    """The default wrapper: levels are ``hidden_states[1:]`` of the model's own forward."""
    return PerceptualEncoder(model, info)


@dataclasses.dataclass(frozen=True)
class HFEncoder:
    """One transformers encoder ``model_type``: what the shared loader needs to know about it."""

    model_type: str
    class_name: str  # the transformers class built from the config (e.g. CLIPVisionModel)
    # (tower config, video_frames=..., **options) -> its EncoderInfo (encoder_type is set by the shared code)
    info: Callable[..., EncoderInfo]
    final_norm: FinalNorm
    media: Callable[[EncoderInfo, Any], MediaSpec]  # (info, data config or None) -> the default MediaSpec
    tower: str | None = None  # the sub-config of a full checkpoint's config that is built (CLIP/SigLIP: vision_config)
    # (loaded transformers model, info, video_frames=..., **options) -> the encoder that extracts its levels
    wrap: Callable[..., PerceptualEncoder] = plain
    build_kwargs: tuple[tuple[str, Any], ...] = ()  # passed to the class's from_pretrained / _from_config

    def tower_config(self, cfg: PretrainedConfig) -> PretrainedConfig:
        return getattr(cfg, self.tower) if self.tower and cfg.model_type == self.model_type else cfg


HF_ENCODERS: dict[str, HFEncoder] = {}  # model_type -> its HFEncoder (filled by the family modules)


def image_media(mean: tuple, std: tuple, resize: str, ratio: float, resample: int) -> Callable[[EncoderInfo, Any], MediaSpec]:
    """The default spec of an image/video encoder: mean/std, resize mode (``square`` | ``shortest_edge``
    then center crop), shortest edge / crop ratio, PIL resample filter (its transformers image processor's)."""

    def media(info: EncoderInfo, data_cfg=None) -> MediaSpec:
        frames = info.num_frames or (data_cfg.video_frames if data_cfg is not None else 8)
        return MediaSpec(info.modality, image_size=int(info.image_size), mean=mean, std=std, resize=resize,
                         resize_ratio=ratio, resample=resample, frames=int(frames), encoder_type=info.encoder_type,
                         preprocess=f"transformers:{info.encoder_type}")

    return media


def audio_media(audio_features: str = "kaldi-fbank", sample_rate: int = SAMPLE_RATE,
                frontend: Callable[..., torch.Tensor] | None = None) -> Callable[[EncoderInfo, Any], MediaSpec]:
    """The default spec of an audio encoder: its front-end (named by ``MediaSpec.audio_features``; ``frontend``
    computes it, None: Kaldi fbank) and sample rate."""

    def media(info: EncoderInfo, data_cfg=None) -> MediaSpec:
        return MediaSpec("audio", num_mel_bins=info.num_mel_bins, max_length=info.max_length, encoder_type=info.encoder_type,
                         preprocess=f"transformers:{info.encoder_type}", audio_features=audio_features, sample_rate=sample_rate,
                         audio_frontend=frontend)

    return media


def _config(name: str, trust_remote_code: bool) -> tuple[PretrainedConfig, bool]:
    return load_config(name, "encoder", encoder_shapes(), trust_remote_code)


def _entry(cfg: PretrainedConfig) -> HFEncoder:
    entry = HF_ENCODERS.get(cfg.model_type)
    if entry is None:
        from scaling.models.encoders.registry import MODEL_TYPES

        raise ConfigError(f"unsupported encoder type {cfg.model_type!r}; supported: {sorted(MODEL_TYPES)}")
    return entry


def info_from_config(cfg: PretrainedConfig, video_frames: int | None = None, **options) -> EncoderInfo:
    """Describe an encoder from its config. ``video_frames`` turns an image encoder into a per-frame one;
    ``options`` reach the family's ``info`` (and ``wrap`` at load time) for family-specific settings."""
    entry = _entry(cfg)
    info = dataclasses.replace(entry.info(entry.tower_config(cfg), video_frames=video_frames, **options),
                               encoder_type=cfg.model_type)
    return per_frame_info(info, video_frames)


def describe(ref: str, video_frames: int | None = None, trust_remote_code: bool = False, **options) -> EncoderInfo:
    return info_from_config(_config(ref, trust_remote_code)[0], video_frames, **options)


def load(ref: str, dtype: str = "bf16", device: str | torch.device = "cpu", video_frames: int | None = None,
         meta: bool = False, trust_remote_code: bool = False, attn_implementation: str = "sdpa", **options) -> PerceptualEncoder:
    """A frozen transformers encoder: random weights for shape names / ``meta``, else ``from_pretrained``."""
    import transformers

    cfg, is_shape = _config(ref, trust_remote_code)
    entry = _entry(cfg)
    info = info_from_config(cfg, video_frames, **options)
    cls = getattr(transformers, entry.class_name)
    torch_dtype = DTYPES[dtype]
    kwargs = dict(entry.build_kwargs)
    if is_shape or meta:
        ctx = torch.device("meta") if meta else torch.device(device)
        cfg = entry.tower_config(cfg)
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
        model = cls.from_pretrained(os.path.expanduser(ref), dtype=torch_dtype, trust_remote_code=trust_remote_code, **kwargs)
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return entry.wrap(model, info, video_frames=video_frames, **options)


def _read_preprocessor(encoder: str) -> dict[str, Any] | None:
    path = os.path.join(os.path.expanduser(encoder), "preprocessor_config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}; fix or delete it (defaults per encoder type are used without it)") from None


def spec_from_preprocessor(spec: MediaSpec, pre: dict[str, Any]) -> MediaSpec:
    """Override the defaults with a transformers ``preprocessor_config.json``."""
    out = dataclasses.replace(spec)
    if spec.modality == "audio":
        out.audio_mean = float(pre.get("mean", spec.audio_mean))
        out.audio_std = float(pre.get("std", spec.audio_std))
        out.sample_rate = int(pre.get("sampling_rate", spec.sample_rate))
        return out
    if pre.get("image_mean") is not None:
        out.mean = tuple(float(x) for x in pre["image_mean"])
    if pre.get("image_std") is not None:
        out.std = tuple(float(x) for x in pre["image_std"])
    if pre.get("resample") is not None:
        out.resample = int(pre["resample"])
    size = pre.get("size")
    crop = pre.get("crop_size")
    do_crop = pre.get("do_center_crop", crop is not None)
    if isinstance(size, dict) and "shortest_edge" in size:
        out.resize = "shortest_edge"
        crop_side = (crop.get("height") if isinstance(crop, dict) else crop) if do_crop and crop else size["shortest_edge"]
        out.resize_ratio = float(size["shortest_edge"]) / float(crop_side or size["shortest_edge"])
    elif isinstance(size, (dict, int)):
        out.resize = "shortest_edge" if do_crop and crop else "square"
        if out.resize == "shortest_edge":
            side = size.get("height") if isinstance(size, dict) else size
            crop_side = crop.get("height") if isinstance(crop, dict) else crop
            out.resize_ratio = float(side) / float(crop_side)
    return out


def media(ref: str, info: EncoderInfo, data_cfg=None) -> MediaSpec:
    """The family's default spec for this model type, then the directory's ``preprocessor_config.json``."""
    spec = HF_ENCODERS[info.encoder_type].media(info, data_cfg)
    pre = _read_preprocessor(ref)
    return spec_from_preprocessor(spec, pre) if pre else spec


def check(ref: str) -> list[str]:
    return []  # paths are checked by scaling.training.validate.check_backbone (as for the LLM)


def identity(ref: str) -> str:
    return os.path.basename(os.path.normpath(os.path.expanduser(ref)))


def save_tiny(out_dir: str, arch: str = "vit", seed: int = 0, **config_overrides) -> str:
    """Write the tiny random encoder of shape ``tiny-<arch>`` (``save_pretrained``) to ``out_dir``."""
    import transformers

    cfg = encoder_shapes()[f"tiny-{arch}"]()
    for key, value in config_overrides.items():
        setattr(cfg, key, value)
    entry = _entry(cfg)
    torch.manual_seed(seed)
    model = getattr(transformers, entry.class_name)._from_config(entry.tower_config(cfg), **dict(entry.build_kwargs))
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir


def register_family(*encoders: HFEncoder, shapes: dict[str, Callable[[], PretrainedConfig]],
                    names: dict[str, str]) -> EncoderLoader:
    """Register a family's model types (one :class:`EncoderLoader` for all of them) and return it."""
    loader = EncoderLoader(
        describe=describe, load=load, media=media, check=check, identity=identity, example=EXAMPLE,
        final_norms={e.model_type: e.final_norm for e in encoders}, shapes=shapes, tiny=save_tiny,
        tiny_archs=tuple(name[len("tiny-"):] for name in shapes if name.startswith("tiny-")), names=names,
    )
    for entry in encoders:
        HF_ENCODERS[entry.model_type] = entry
        register(entry.model_type, loader)
    return loader
