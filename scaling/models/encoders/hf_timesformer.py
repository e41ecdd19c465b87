"""transformers TimeSformer (divided space-time attention) on video ``[batch, frames, 3, H, W]``.

Levels: ``hidden_states[1:]``; one CLS token; patch tokens patch-major, frame-minor
(index = patch * T + frame), so the grid is (h, w, T) and the resampler block (2, 2, 1).
Preprocessing: VideoMAE/TimeSformer image processor defaults (ImageNet mean/std, shortest edge + crop,
bilinear), overridden by ``preprocessor_config.json``.

Frames: the checkpoint's ``num_frames`` (8 for the K400 8x32 one), or ``model.video_frames``: then the
time embeddings are resized to that many with *nearest* interpolation, as DePALM's TimeSformer
(``depalm/models/perceptual/timesformermodel.py``: ``F.interpolate(time_embed, size=T, mode='nearest')``
whenever the two differ; ``config/dataset/msrvtt.yaml`` reads 16 frames), and the grid gets that many time steps.
"""

from __future__ import annotations

from torch import nn
from transformers import TimesformerConfig

from scaling.common.media import BILINEAR, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from scaling.models.encoders.base import EncoderInfo, FinalNorm, PerceptualEncoder
from scaling.models.encoders.hf import HFEncoder, image_media, plain, register_family


def info(cfg, video_frames: int | None = None, **_options) -> EncoderInfo:
    """``video_frames`` (``model.video_frames``): the frames it reads instead of the checkpoint's; grid (h, w, frames)."""
    side, frames = cfg.image_size // cfg.patch_size, video_frames or cfg.num_frames
    return EncoderInfo("video", cfg.hidden_size, cfg.num_hidden_layers, True, 1, (side, side, frames), (2, 2, 1),
                       image_size=cfg.image_size, num_frames=frames)


def set_frames(model: nn.Module, frames: int) -> None:
    """Make a loaded TimeSformer read ``frames`` frames: its time embeddings ``[1, T, d]`` resized to
    ``[1, frames, d]`` by nearest interpolation (DePALM's timesformermodel.py), and the layers' frame count."""
    emb = model.embeddings.time_embeddings
    if emb.shape[1] != frames:
        resized = nn.functional.interpolate(emb.detach().transpose(1, 2), size=frames, mode="nearest").transpose(1, 2)
        model.embeddings.time_embeddings = nn.Parameter(resized.contiguous(), requires_grad=False)
    model.config.num_frames = frames  # the divided space-time layers reshape with it


def wrap(model: nn.Module, info: EncoderInfo, video_frames: int | None = None, **options) -> PerceptualEncoder:
    if video_frames:
        set_frames(model, video_frames)
    return plain(model, info, **options)


ENCODER = HFEncoder(
    "timesformer", "TimesformerModel", info,
    # DePALM's TimeSformer config says norm: null because its TimeSformer (timesformermodel.py, return_hidden_state)
    # already returns self.norm(x) for every block; eP-ALM models/timesformer.py does the same
    FinalNorm(("layernorm",), True, "DePALM timesformermodel.py / eP-ALM models/timesformer.py: norm(x) per block"),
    image_media(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "shortest_edge", 1.0, BILINEAR),
    wrap=wrap,
)

SHAPES = {
    "timesformer-b": lambda: TimesformerConfig(image_size=224, patch_size=16, num_frames=8),
    "tiny-timesformer": lambda: TimesformerConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, num_frames=4,
    ),
}

LOADER = register_family(ENCODER, shapes=SHAPES, names={"TimeSformer": "video"})
