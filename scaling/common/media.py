"""What a frozen encoder expects as input: :class:`MediaSpec` (modality, sizes, normalisation).

The model owns its preprocessing (open_flamingo's ``create_model_and_transforms``, timm's
``resolve_data_config``): each encoder module of :mod:`scaling.models.encoders` builds the spec of its
encoder, and the data pipeline (:mod:`scaling.data`) decodes and normalises media by it, without ever
asking the model for anything else (:class:`EncoderInputs` is all it gets). Both sides import this
module; it imports neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
AST_MEAN = -4.2677393
AST_STD = 4.5689974
SAMPLE_RATE = 16000

BILINEAR, BICUBIC = 2, 3  # PIL.Image.Resampling values
PIL_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


@dataclasses.dataclass
class MediaSpec:
    """Input format of the encoder (one modality)."""

    modality: str  # image | video | audio
    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_STANDARD_MEAN
    std: tuple[float, ...] = IMAGENET_STANDARD_STD
    resize: str = "square"  # square: resize to size x size | shortest_edge: resize + center crop
    resize_ratio: float = 1.0  # shortest edge = image_size * resize_ratio before the center crop
    resample: int = BICUBIC
    frames: int = 8
    num_mel_bins: int = 128
    max_length: int = 1024
    sample_rate: int = SAMPLE_RATE
    audio_mean: float = AST_MEAN
    audio_std: float = AST_STD
    encoder_type: str | None = None
    preprocess: str = "transformers"  # whose preprocessing this is (recorded with cached features)
    audio_features: str = "kaldi-fbank"  # kaldi-fbank (AST, MAViL) | whisper | clap (their transformers feature extractors)
    # the encoder's own audio front-end: (waveform at sample_rate, this spec, rng at training / None) ->
    # [max_length, num_mel_bins]; None: Kaldi fbank normalised by audio_mean/std (scaling.data.audio.ast_features)
    audio_frontend: Callable[..., object] | None = None

    @property
    def media_key(self) -> str:
        return {"image": "pixel_values", "video": "video", "audio": "audio"}[self.modality]


@dataclasses.dataclass(frozen=True)
class EncoderInputs:
    """What the data pipeline needs to know about the model's encoder, handed to it by the layer above
    (built from the model config by :func:`scaling.models.transforms.encoder_inputs`, no weights loaded):
    how to prepare raw media for it, and which cached features it accepts."""

    spec: MediaSpec  # its preprocessing
    identity: str  # its short name in feature-cache signatures (a directory's basename, timm:NAME@FILE, ...)
    norm: str  # model.extract.norm resolved for this encoder: final | none (recorded with cached features)


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


def default_spec(modality: str, data_cfg=None) -> MediaSpec:
    """A spec without a model (inspect, bench): 224 px CLIP-like images, AST-base audio."""
    if modality == "audio":
        return MediaSpec("audio")
    frames = data_cfg.video_frames if data_cfg is not None else 8
    return MediaSpec(modality if modality in ("image", "video") else "image", 224, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                     "shortest_edge", 1.0, BICUBIC, frames=frames)
