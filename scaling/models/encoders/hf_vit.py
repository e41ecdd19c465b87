"""transformers image ViTs: CLIP's vision tower, ViT, DINOv2, SigLIP's vision tower.

Levels: ``hidden_states[1:]`` (layer outputs; the embedding output is not a level). Special tokens:
CLS (ViT, CLIP, DINOv2 + its registers); SigLIP has none. A full CLIP/SigLIP checkpoint is read through
its vision tower (``vision_config``). With ``model.video_frames`` they run per frame on video ("ViT avg").
Preprocessing: the defaults of each model type's transformers image processor (below), overridden by
the directory's ``preprocessor_config.json``.
"""

from __future__ import annotations

from transformers import CLIPVisionConfig, Dinov2Config, SiglipVisionConfig, ViTConfig

from scaling.common.media import (
    BICUBIC,
    BILINEAR,
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)
from scaling.models.encoders.base import DEPALM_AUTO, EncoderInfo, FinalNorm
from scaling.models.encoders.hf import HFEncoder, image_media, register_family


def _image_info(has_cls: bool):
    def info(cfg, **_options) -> EncoderInfo:
        side = cfg.image_size // cfg.patch_size
        n_special = 1 + getattr(cfg, "num_register_tokens", 0) if has_cls else 0
        return EncoderInfo("image", cfg.hidden_size, cfg.num_hidden_layers, has_cls, n_special, (side, side), (2, 2),
                           image_size=cfg.image_size)

    return info


_CLIP_NORM = FinalNorm(("post_layernorm", "vision_model.post_layernorm"), True, f"{DEPALM_AUTO}: post_layernorm")
# not used by the official code; its own final norm, as for CLIP
_SIGLIP_NORM = FinalNorm(("post_layernorm", "vision_model.post_layernorm"), True, "no official config; as CLIP")
_CLIP_MEDIA = image_media(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "shortest_edge", 1.0, BICUBIC)
_SIGLIP_MEDIA = image_media(IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, "square", 1.0, BICUBIC)

ENCODERS = (
    HFEncoder("clip", "CLIPVisionModel", _image_info(True), _CLIP_NORM, _CLIP_MEDIA, tower="vision_config"),
    HFEncoder("clip_vision_model", "CLIPVisionModel", _image_info(True), _CLIP_NORM, _CLIP_MEDIA),
    HFEncoder("vit", "ViTModel", _image_info(True),
              FinalNorm(("layernorm",), True, f"{DEPALM_AUTO}; eP-ALM models/vit.py normalises every hidden state"),
              image_media(IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, "square", 1.0, BILINEAR),
              build_kwargs=(("add_pooling_layer", False),)),
    HFEncoder("dinov2", "Dinov2Model", _image_info(True),
              FinalNorm(("layernorm",), True, f"{DEPALM_AUTO}: the DINOv2 hub model's norm"),
              image_media(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 256 / 224, BICUBIC)),
    HFEncoder("siglip", "SiglipVisionModel", _image_info(False), _SIGLIP_NORM, _SIGLIP_MEDIA, tower="vision_config"),
    HFEncoder("siglip_vision_model", "SiglipVisionModel", _image_info(False), _SIGLIP_NORM, _SIGLIP_MEDIA),
)

_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8)

SHAPES = {
    "clip-vit-l14": lambda: CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=768,
    ),
    "clip-vit-b16": lambda: CLIPVisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=224, patch_size=16,
    ),
    "vit-b16": lambda: ViTConfig(),
    "vit-l16": lambda: ViTConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
    "dinov2-b14": lambda: Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=518, patch_size=14),
    "dinov2-l14": lambda: Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, image_size=518, patch_size=14),
    "siglip-b16": lambda: SiglipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16),
    # tiny shapes (tests, smoke runs)
    "tiny-vit": lambda: ViTConfig(**_TINY),
    "tiny-clip": lambda: CLIPVisionConfig(**_TINY),
    "tiny-dinov2": lambda: Dinov2Config(**_TINY),
    "tiny-siglip": lambda: SiglipVisionConfig(**_TINY),
}

LOADER = register_family(*ENCODERS, shapes=SHAPES, names={"CLIP": "image", "ViT": "image", "DINOv2": "image", "SigLIP": "image"})
