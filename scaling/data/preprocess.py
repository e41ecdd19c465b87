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
    PIL_RESAMPLE,
    SAMPLE_RATE,
    MediaSpec,
    default_spec,
)


def media_spec(model_cfg, data_cfg=None) -> MediaSpec:
    """The :class:`MediaSpec` of ``model_cfg.encoder`` (no weights loaded), with the image preprocessing that
    ``data_cfg`` sets in its place (:func:`with_data_overrides`)."""
    return with_data_overrides(encoder_media_spec(model_cfg, data_cfg), data_cfg)


def with_data_overrides(spec: MediaSpec, data_cfg) -> MediaSpec:
    """``spec`` with ``data.image_mean`` / ``image_std`` / ``resample`` / ``image_resize`` where they are set (images and
    video frames); ``spec.preprocess`` records it, so cached features made otherwise are told apart."""
    if data_cfg is None or spec.modality == "audio":
        return spec
    changed = {}
    for key, field in (("image_mean", "mean"), ("image_std", "std")):
        value = getattr(data_cfg, key, None)
        if value is not None:
            changed[field] = tuple(float(x) for x in value)
    if getattr(data_cfg, "resample", None) is not None:
        changed["resample"] = PIL_RESAMPLE[data_cfg.resample]
    if getattr(data_cfg, "image_resize", None) is not None:
        changed["resize"] = data_cfg.image_resize
        if data_cfg.image_resize == "square":
            changed["resize_ratio"] = 1.0
    if not changed:
        return spec
    note = ",".join(f"{k}={v}" for k, v in changed.items())
    return dataclasses.replace(spec, **changed, preprocess=f"{spec.preprocess}+data({note})")


def encoder_media_spec(model_cfg, data_cfg=None) -> MediaSpec:
    """The :class:`MediaSpec` its library prescribes for ``model_cfg.encoder`` (no weights loaded)."""
    from scaling.models.encoders.registry import resolve

    loader, ref = resolve(model_cfg.encoder, getattr(model_cfg, "trust_remote_code", False))
    info = loader.describe(ref, video_frames=getattr(model_cfg, "video_frames", None),
                           trust_remote_code=getattr(model_cfg, "trust_remote_code", False))
    return loader.media(ref, info, data_cfg)
