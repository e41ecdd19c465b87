"""The encoder's own final normalisation, applied to every extracted level (``model.extract.norm``).

The official DePALM extractor (``feat_model.norm: auto``) and eP-ALM's encoders pass every extracted
layer output through the encoder's final norm (CLIP ``post_layernorm``, ViT/DINOv2/AST ``layernorm``,
open_clip ``ln_post``, timm ``norm``); a few encoders are used raw (``norm: null``: EVA-CLIP, MAViL).
This is data: :data:`FINAL_NORMS` maps an encoder type (``EncoderInfo.encoder_type``) to where its
final norm lives and what ``auto`` does for it. A new encoder loader adds one entry.

``model.extract.norm``: ``auto`` (the entry's official default), ``final`` (always apply the final
norm), ``none`` (raw layer outputs).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from scaling.config.base import ConfigError, suggest

NORM_CHOICES = ("auto", "final", "none")


@dataclasses.dataclass(frozen=True)
class FinalNorm:
    """Where an encoder's final norm lives and whether ``extract.norm=auto`` applies it."""

    paths: tuple[str, ...]  # candidate module paths in the loaded model (nn.Module.get_submodule); first found wins
    auto: bool  # extract.norm=auto applies it (the official code's choice)
    source: str  # where that default comes from (official file / config)


_DEPALM_AUTO = "DePALM depalm/models/extractors.py (feat_model.norm: auto)"

# encoder type -> its final norm. Keys are EncoderInfo.encoder_type (transformers model_type for HF encoders).
FINAL_NORMS: dict[str, FinalNorm] = {
    "clip": FinalNorm(("post_layernorm", "vision_model.post_layernorm"), True, f"{_DEPALM_AUTO}: post_layernorm"),
    "clip_vision_model": FinalNorm(("post_layernorm", "vision_model.post_layernorm"), True, f"{_DEPALM_AUTO}: post_layernorm"),
    "vit": FinalNorm(("layernorm",), True, f"{_DEPALM_AUTO}; eP-ALM models/vit.py normalises every hidden state"),
    "dinov2": FinalNorm(("layernorm",), True, f"{_DEPALM_AUTO}: the DINOv2 hub model's norm"),
    # not used by the official code; its own final norm, as for CLIP
    "siglip": FinalNorm(("post_layernorm", "vision_model.post_layernorm"), True, "no official config; as CLIP"),
    "siglip_vision_model": FinalNorm(("post_layernorm", "vision_model.post_layernorm"), True, "no official config; as CLIP"),
    # DePALM's TimeSformer config says norm: null because its TimeSformer (timesformermodel.py, return_hidden_state)
    # already returns self.norm(x) for every block; eP-ALM models/timesformer.py does the same
    "timesformer": FinalNorm(("layernorm",), True, "DePALM timesformermodel.py / eP-ALM models/timesformer.py: norm(x) per block"),
    # DePALM's ASTExtractor reads last_hidden_state (after layernorm); eP-ALM models/ast.py: v.norm per block
    "audio-spectrogram-transformer": FinalNorm(("layernorm",), True, f"{_DEPALM_AUTO}: layernorm"),
    # not used by the official code: Whisper's own encoder output is layer_norm(last layer); VideoMAEModel
    # with mean pooling (the released checkpoints) has no final norm (its fc_norm belongs to the classifier)
    "whisper": FinalNorm(("layer_norm",), True, "no official config; Whisper's last_hidden_state is layer_norm(last layer)"),
    "videomae": FinalNorm(("layernorm",), False, "no official config; VideoMAEModel (use_mean_pooling) has no final norm"),
    "clap_audio_model": FinalNorm(("audio_encoder.norm",), False, "DePALM config/feat_model/clap.yaml: norm: null"),
    # encoders of other libraries (scaling.models.encoders): paths inside the loaded timm model /
    # open_clip visual tower / MAViL audio branch
    "timm": FinalNorm(("norm",), True, f"{_DEPALM_AUTO}: timm's norm (vit-*.yaml leave norm at auto)"),
    "timm-eva-clip": FinalNorm(("norm",), False, "DePALM config/feat_model/eva-clip-L.yaml: norm: null"),
    "open_clip": FinalNorm(("ln_post",), True, f"{_DEPALM_AUTO}: ln_post (clip-vit-*-laion.yaml leave norm at auto)"),
    "mavil": FinalNorm(("fc_norm_a",), False, "DePALM config/feat_model/mavil.yaml: norm: null (auto would take fc_norm_a)"),
}


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
            f"(known: {sorted(FINAL_NORMS)}); set model.extract.norm=none or add it to scaling.models.final_norm.FINAL_NORMS"
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
