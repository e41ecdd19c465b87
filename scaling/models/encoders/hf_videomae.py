"""transformers VideoMAE on video ``[batch, frames, 3, H, W]``: tubelet tokens in (time, height, width)
order, no CLS; levels ``hidden_states[1:]``. Preprocessing: VideoMAE image processor defaults (ImageNet
mean/std, shortest edge + crop, bilinear), overridden by ``preprocessor_config.json``.
"""

from __future__ import annotations

from transformers import VideoMAEConfig

from scaling.common.media import BILINEAR, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from scaling.models.encoders.base import EncoderInfo, FinalNorm
from scaling.models.encoders.hf import HFEncoder, image_media, register_family


def info(cfg, **_options) -> EncoderInfo:
    side, t = cfg.image_size // cfg.patch_size, cfg.num_frames // cfg.tubelet_size
    return EncoderInfo("video", cfg.hidden_size, cfg.num_hidden_layers, False, 0, (t, side, side), (1, 2, 2),
                       image_size=cfg.image_size, num_frames=cfg.num_frames)


ENCODER = HFEncoder(
    "videomae", "VideoMAEModel", info,
    # not used by the official code: VideoMAEModel with mean pooling (the released checkpoints) has no final norm
    # (its fc_norm belongs to the classifier)
    FinalNorm(("layernorm",), False, "no official config; VideoMAEModel (use_mean_pooling) has no final norm"),
    image_media(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 1.0, BILINEAR),
)

SHAPES = {
    "videomae-b": lambda: VideoMAEConfig(image_size=224, patch_size=16, num_frames=16, tubelet_size=2),
    "tiny-videomae": lambda: VideoMAEConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, num_frames=4, tubelet_size=2,
    ),
}

LOADER = register_family(ENCODER, shapes=SHAPES, names={"VideoMAE": "video"})
