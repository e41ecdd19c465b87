"""What the frozen encoder expects as input: :class:`MediaSpec` (modality, sizes, normalisation).

Encoders of other libraries (``timm:``, ``open_clip:``, ``mavil:``) take their library's own settings
from their loader (:mod:`scaling.models.encoders`); ``MediaSpec.preprocess`` names which was used.
For transformers encoders, built from the model config without loading weights: the encoder's ``EncoderInfo`` gives the
modality, image size, frame count, mel bins and max length; ``preprocessor_config.json`` in the
encoder's directory (when present) gives the resize mode, mean/std and resampling filter. Without
one, the defaults of the transformers image processor of that model type are used:

========== ====================================== ================================ =========
type       mean / std                             resize                           resample
========== ====================================== ================================ =========
clip       OpenAI CLIP                            shortest edge = size, crop       bicubic
vit        0.5 / 0.5                              size x size                      bilinear
dinov2     ImageNet (0.485.. / 0.229..)           shortest edge = size*256/224,crop bicubic
siglip     0.5 / 0.5                              size x size                      bicubic
timesformer ImageNet (0.485.. / 0.229..)          shortest edge = size, crop       bilinear
videomae   ImageNet (0.485.. / 0.229..)           shortest edge = size, crop       bilinear
========== ====================================== ================================ =========

Audio: AST (and MAViL) take Kaldi log-mel filterbanks (``audio_features="kaldi-fbank"``); Whisper takes
its own log-mel spectrogram, computed by transformers' ``WhisperFeatureExtractor`` (``"whisper"``); CLAP takes
``ClapFeatureExtractor``'s (48 kHz, 10 s, ``"clap"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from scaling.common.media import (  # noqa: F401 - re-exported for older imports
    AST_MEAN,
    AST_STD,
    BICUBIC,
    BILINEAR,
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    SAMPLE_RATE,
    MediaSpec,
    default_spec,
)
from scaling.config.base import ConfigError

# model_type -> (mean, std, resize mode, shortest-edge / crop ratio, resample)
IMAGE_DEFAULTS: dict[str, tuple[tuple, tuple, str, float, int]] = {
    "clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "shortest_edge", 1.0, BICUBIC),
    "clip_vision_model": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "shortest_edge", 1.0, BICUBIC),
    "vit": (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, "square", 1.0, BILINEAR),
    "dinov2": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 256 / 224, BICUBIC),
    "siglip": (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, "square", 1.0, BICUBIC),
    "siglip_vision_model": (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, "square", 1.0, BICUBIC),
    "timesformer": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 1.0, BILINEAR),
    "videomae": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 1.0, BILINEAR),
}


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
    """Override image defaults with a transformers ``preprocessor_config.json``."""
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


def media_spec(model_cfg, data_cfg=None) -> MediaSpec:
    """The :class:`MediaSpec` of ``model_cfg.encoder`` (no weights loaded)."""
    from scaling.models.backbones import encoder_info, load_config_only
    from scaling.models.encoders import loader_for, split_encoder_name

    prefix, ref = split_encoder_name(model_cfg.encoder)
    if prefix is not None:  # timm / open_clip / MAViL: that library's own preprocessing
        loader = loader_for(prefix)
        return loader.media(ref, loader.describe(ref, video_frames=getattr(model_cfg, "video_frames", None)), data_cfg)
    enc_cfg = load_config_only(model_cfg.encoder, "encoder", getattr(model_cfg, "trust_remote_code", False))
    info = encoder_info(enc_cfg, getattr(model_cfg, "video_frames", None))
    model_type = enc_cfg.model_type
    if info.modality == "audio":
        spec = MediaSpec("audio", num_mel_bins=info.num_mel_bins, max_length=info.max_length, encoder_type=model_type,
                         preprocess=f"transformers:{model_type}",
                         audio_features={"whisper": "whisper", "clap_audio_model": "clap"}.get(model_type, "kaldi-fbank"),
                         sample_rate=48000 if model_type == "clap_audio_model" else SAMPLE_RATE)
    else:
        mean, std, resize, ratio, resample = IMAGE_DEFAULTS.get(model_type, IMAGE_DEFAULTS["vit"])
        frames = info.num_frames or (data_cfg.video_frames if data_cfg is not None else 8)
        spec = MediaSpec(info.modality, image_size=int(info.image_size), mean=mean, std=std, resize=resize,
                         resize_ratio=ratio, resample=resample, frames=int(frames), encoder_type=model_type,
                         preprocess=f"transformers:{model_type}")
    pre = _read_preprocessor(model_cfg.encoder)
    if pre:
        spec = spec_from_preprocessor(spec, pre)
    return spec
