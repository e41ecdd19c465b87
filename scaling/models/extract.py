"""Block 1, *extract*: tokens from the last ``n_levels`` layers of the frozen encoder.

``tokens="all"``: [CLS] (when the encoder has one) followed by every patch token of the level;
other special tokens (AST's distillation token, DINOv2 registers) are dropped.
``tokens="cls"``: the [CLS] token only; for an encoder without one, the mean of that level's patch
tokens (as the DePALM supplement does for MAViL, whose CLS is replaced by that mean: ``EncoderInfo.cls_pool``). ``layers`` picks any list of layers instead.
``norm`` (``auto|final|none``): every level goes through the encoder's own final norm, as the
official code does (see :mod:`scaling.models.final_norm`).
"""

from __future__ import annotations

import torch
from torch import nn

from scaling.config.base import ConfigError
from scaling.models.backbones import PerceptualEncoder
from scaling.models.final_norm import final_norm_module, resolve_norm


def select_tokens(states: torch.Tensor, tokens: str, has_cls: bool, n_special: int, cls_pool: str = "token") -> torch.Tensor:
    """states ``[B, L, n_special + n_patches, d]`` → ``[B, L, n_tok, d]`` for ``tokens`` all|cls.

    ``cls_pool="mean"`` (MAViL, the DePALM supplement B.1): tokens=cls is the patch-token mean even
    though the encoder has a CLS token."""
    patches = states[:, :, n_special:]
    if tokens == "cls":
        return states[:, :, :1] if has_cls and cls_pool == "token" else patches.mean(dim=2, keepdim=True)
    if tokens == "all":
        return torch.cat([states[:, :, :1], patches], dim=2) if has_cls else patches
    raise ConfigError(f"extract.tokens must be 'all' or 'cls', got {tokens!r}")


class FeatureExtractor(nn.Module):
    """Runs the frozen encoder; ``forward(media)`` → ``[B, n_levels, n_tok, d_feats]``."""

    def __init__(
        self, encoder: PerceptualEncoder, n_levels: int = 1, tokens: str = "all", layers: list[int] | None = None,
        norm: str = "auto",
    ):
        super().__init__()
        n_enc = encoder.info.n_layers
        if layers:
            bad = [l for l in layers if not -n_enc <= l < n_enc]
            if bad:
                raise ConfigError(f"extract.layers {bad} out of range for an encoder with {n_enc} layers")
            self.levels = list(layers)
        else:
            if not 1 <= n_levels <= n_enc:
                raise ConfigError(f"extract.n_levels={n_levels} but the encoder has {n_enc} layers; use 1..{n_enc}")
            self.levels = list(range(-n_levels, 0))
        self.tokens = tokens
        self.encoder = encoder
        self.norm_choice = norm
        # the final norm is a module of the frozen encoder: looked up at call time, not registered twice
        self.applies_norm = resolve_norm(norm, encoder.info.encoder_type)
        if self.applies_norm:
            final_norm_module(encoder.model, encoder.info.encoder_type)  # fails early if the encoder has none

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_tokens(self) -> int:
        info = self.encoder.info
        return 1 if self.tokens == "cls" else info.n_patches + int(info.has_cls)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        """media: image ``[B, 3, H, W]``, video ``[B, F, 3, H, W]``, audio ``[B, frames, mel]``."""
        info = self.encoder.info
        # The frozen encoder already runs in its half dtype: autocast would only add fp32 up-casts
        # of its LayerNorms and the casts back (measured: several ms per step at CLIP-L scale).
        with torch.autocast(media.device.type, enabled=False):
            norm = final_norm_module(self.encoder.model, info.encoder_type) if self.applies_norm else None
            states = self.encoder(media.to(self._dtype()), self.levels, norm)
        return select_tokens(states, self.tokens, info.has_cls, info.n_special, info.cls_pool)

    def _dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype
