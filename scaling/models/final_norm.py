"""The encoder's own final normalisation, applied to every extracted level (``model.extract.norm``).

The official DePALM extractor (``feat_model.norm: auto``) and eP-ALM's encoders pass every extracted
layer output through the encoder's final norm (CLIP ``post_layernorm``, ViT/DINOv2/AST ``layernorm``,
open_clip ``ln_post``, timm ``norm``); a few encoders are used raw (``norm: null``: EVA-CLIP, MAViL).
This is data: :data:`FINAL_NORMS` maps an encoder type (``EncoderInfo.encoder_type``) to where its
final norm lives and what ``auto`` does for it; each encoder module declares its own entries.

``model.extract.norm``: ``auto`` (the entry's official default), ``final`` (always apply the final
norm), ``none`` (raw layer outputs).
"""

from __future__ import annotations

from torch import nn

from scaling.config.base import ConfigError, suggest
from scaling.models.encoders.base import FinalNorm
from scaling.models.encoders.registry import final_norms

NORM_CHOICES = ("auto", "final", "none")


# encoder type -> its final norm (EncoderInfo.encoder_type; transformers model_type for HF encoders), as declared
# by each encoder module of scaling.models.encoders
FINAL_NORMS: dict[str, FinalNorm] = final_norms()


def resolve_norm(choice: str, encoder_type: str) -> bool:
    """Whether extraction applies the encoder's final norm for ``model.extract.norm=choice``."""
    if choice not in NORM_CHOICES:
        raise ConfigError(f"model.extract.norm must be one of {list(NORM_CHOICES)}, got {choice!r}{suggest(choice, NORM_CHOICES)}")
    if choice == "none":
        return False
    entry = FINAL_NORMS.get(encoder_type)
    if entry is None:
        raise ConfigError(
            f"model.extract.norm={choice}: no final-norm entry for encoder type {encoder_type!r} "
            f"(known: {sorted(FINAL_NORMS)}); set model.extract.norm=none or add it to the final_norms of that encoder's module (scaling.models.encoders)"
        )
    return True if choice == "final" else entry.auto


def signature_value(choice: str, encoder_type: str) -> str:
    """What cached features record: ``final`` or ``none`` (the resolved choice)."""
    return "final" if resolve_norm(choice, encoder_type) else "none"


def final_norm_module(model: nn.Module, encoder_type: str) -> nn.Module:
    """The final norm module of a loaded encoder ``model``."""
    entry = FINAL_NORMS[encoder_type]
    for path in entry.paths:
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    raise ConfigError(
        f"model.extract.norm: the {encoder_type!r} encoder {type(model).__name__} has none of {list(entry.paths)}; "
        f"set model.extract.norm=none"
    )
