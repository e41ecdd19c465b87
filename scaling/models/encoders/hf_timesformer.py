"""transformers TimeSformer (divided space-time attention) on video ``[batch, frames, 3, H, W]``.

Levels: ``hidden_states[1:]``; one CLS token; patch tokens patch-major, frame-minor
(index = patch * T + frame), so the grid is (h, w, T) and the resampler block (2, 2, 1).
Preprocessing: VideoMAE/TimeSformer image processor defaults (ImageNet mean/std, shortest edge + crop,
bilinear), overridden by ``preprocessor_config.json``.
"""

from __future__ import annotations

from transformers import TimesformerConfig

from scaling.common.media import BILINEAR, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from scaling.models.encoders.base import EncoderInfo, FinalNorm
from scaling.models.encoders.hf import HFEncoder, image_media, register_family


def info(cfg, **_options) -> EncoderInfo:
    side, frames = cfg.image_size // cfg.patch_size, cfg.num_frames
    return EncoderInfo("video", cfg.hidden_size, cfg.num_hidden_layers, True, 1, (side, side, frames), (2, 2, 1),
                       image_size=cfg.image_size, num_frames=frames)


ENCODER = HFEncoder(
    "timesformer", "TimesformerModel", info,
    # DePALM's TimeSformer config says norm: null because its TimeSformer (timesformermodel.py, return_hidden_state)
    # already returns self.norm(x) for every block; eP-ALM models/timesformer.py does the same
    FinalNorm(("layernorm",), True, "DePALM timesformermodel.py / eP-ALM models/timesformer.py: norm(x) per block"),
    image_media(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 1.0, BILINEAR),
)

SHAPES = {
    "timesformer-b": lambda: TimesformerConfig(image_size=224, patch_size=16, num_frames=8),
    "tiny-timesformer": lambda: TimesformerConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, num_frames=4,
    ),
}

LOADER = register_family(ENCODER, shapes=SHAPES, names={"TimeSformer": "video"})
