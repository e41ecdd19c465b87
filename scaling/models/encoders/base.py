"""What every encoder loader returns and declares: :class:`EncoderInfo` (modality, width, layers, special
tokens, patch grid), :class:`PerceptualEncoder` (the frozen model behind one extraction contract) and
:class:`FinalNorm` (where its final norm lives, what ``model.extract.norm=auto`` does with it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass
class EncoderInfo:
    """What the blocks need to know about a perceptual encoder."""

    modality: str  # image | video | audio
    hidden_size: int
    n_layers: int
    has_cls: bool  # a [CLS] token at index 0
    n_special: int  # special tokens before the patch tokens (CLS, distillation, registers)
    grid: tuple[int, ...]  # patch-token grid in memory order
    block: tuple[int, ...]  # resampler block on that grid (4 tokens per block)
    image_size: int | None = None
    num_frames: int | None = None
    num_mel_bins: int | None = None
    max_length: int | None = None
    per_frame: bool = False  # an image encoder applied to each video frame ("ViT avg")
    encoder_type: str = ""  # key of its FinalNorm entry (the loader's final_norms; HF: the config's model_type)
    cls_pool: str = "token"  # tokens=cls takes the CLS token ("token") or the level's patch-token mean ("mean": MAViL, B.1)

    @property
    def n_patches(self) -> int:
        n = 1
        for g in self.grid:
            n *= g
        return n


def per_frame_info(info: EncoderInfo, video_frames: int | None) -> EncoderInfo:
    """An image encoder's info, turned into a per-frame video encoder's when ``video_frames`` is set."""
    if not video_frames or info.modality != "image":
        return info
    return dataclasses.replace(info, modality="video", grid=(video_frames, *info.grid), block=(1, 2, 2),
                               num_frames=video_frames, per_frame=True)


class PerceptualEncoder(nn.Module):
    """A frozen encoder that returns the hidden states of chosen layers.

    ``forward(media, levels)`` → ``[batch, len(levels), n_special + n_patches, d]`` where the levels
    index the encoder's layer outputs (``-1`` = last layer; the embedding output is not a level).
    For a per-frame image encoder on video ``[batch, frames, 3, H, W]``, the special tokens are
    averaged over frames and the patch tokens of all frames are concatenated (grid: frames × h × w).
    """

    def __init__(self, model: nn.Module, info: EncoderInfo, config: Any = None):
        super().__init__()
        self.model = model
        self.info = info
        # what fingerprints record as the architecture's dims (a transformers config, or a namespace
        # with model_type / hidden_size / num_hidden_layers / ... for the other libraries)
        self.config = config if config is not None else getattr(model, "config", None)

    def forward(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """``norm``: applied to every level's tokens (the encoder's final norm, ``model.extract.norm``);
        per frame, before the special tokens are averaged over frames."""
        info = self.info
        if info.per_frame:
            if media.dim() != 5:
                raise ValueError(f"video input must be [batch, frames, 3, H, W], got {tuple(media.shape)}")
            b, f = media.shape[:2]
            states = self._hidden_states(media.flatten(0, 1), levels, norm)  # [b*f, L, n, d]
            states = states.unflatten(0, (b, f))  # [b, f, L, n, d]
            special = states[:, :, :, : info.n_special].mean(dim=1)  # [b, L, s, d]
            patches = states[:, :, :, info.n_special :].permute(0, 2, 1, 3, 4).flatten(2, 3)  # [b, L, f*n, d]
            return torch.cat([special, patches], dim=2)
        return self._hidden_states(media, levels, norm)

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media → ``[batch, len(levels), n_special + n_patches, d]`` (each level through ``norm`` when given)."""
        kind = self.info.modality if not self.info.per_frame else "image"
        key = {"image": "pixel_values", "video": "pixel_values", "audio": "input_values"}[kind]
        out = self.model(**{key: media}, output_hidden_states=True)
        hidden = out.hidden_states[1:]  # drop the embedding output: levels are layer outputs
        states = torch.stack([hidden[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states


@dataclasses.dataclass(frozen=True)
class FinalNorm:
    """Where an encoder's final norm lives and whether ``extract.norm=auto`` applies it."""

    paths: tuple[str, ...]  # candidate module paths in the loaded model (nn.Module.get_submodule); first found wins
    auto: bool  # extract.norm=auto applies it (the official code's choice)
    source: str  # where that default comes from (official file / config)


DEPALM_AUTO = "DePALM depalm/models/extractors.py (feat_model.norm: auto)"
