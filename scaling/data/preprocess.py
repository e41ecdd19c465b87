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


def media_spec(model_cfg, data_cfg=None) -> MediaSpec:
    """The :class:`MediaSpec` of ``model_cfg.encoder`` (no weights loaded): its loader's own preprocessing."""
    from scaling.models.encoders.registry import resolve

    loader, ref = resolve(model_cfg.encoder, getattr(model_cfg, "trust_remote_code", False))
    info = loader.describe(ref, video_frames=getattr(model_cfg, "video_frames", None),
                           trust_remote_code=getattr(model_cfg, "trust_remote_code", False))
    return loader.media(ref, info, data_cfg)
