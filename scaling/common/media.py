"""What a frozen encoder expects as input: :class:`MediaSpec` (modality, sizes, normalisation).

The model owns its preprocessing (open_flamingo's ``create_model_and_transforms``, timm's
``resolve_data_config``): each encoder module of :mod:`scaling.models.encoders` builds the spec of its
encoder, and the data pipeline (:mod:`scaling.data`) decodes and normalises media by it, without ever
asking the model for anything else. Both sides import this module; it imports neither.
"""

from __future__ import annotations

import dataclasses

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

    @property
    def media_key(self) -> str:
        return {"image": "pixel_values", "video": "video", "audio": "audio"}[self.modality]


def default_spec(modality: str, data_cfg=None) -> MediaSpec:
    """A spec without a model (inspect, bench): 224 px CLIP-like images, AST-base audio."""
    if modality == "audio":
        return MediaSpec("audio")
    frames = data_cfg.video_frames if data_cfg is not None else 8
    return MediaSpec(modality if modality in ("image", "video") else "image", 224, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                     "shortest_edge", 1.0, BICUBIC, frames=frames)
