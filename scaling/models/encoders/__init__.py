"""Encoder loaders: one registry entry per model library (``PREFIX:REF`` in ``model.encoder``).

``model.encoder`` is a transformers directory / hub id / shape name (no prefix, :mod:`scaling.models.backbones`)
or ``PREFIX:REF`` for another library: ``timm:NAME@/weights.safetensors`` or ``timm:/hub-layout-folder``,
``open_clip:ARCH@/checkpoint`` or ``open_clip:/hub-layout-folder``, ``mavil:/checkpoint``. Every loader
returns a :class:`~scaling.models.backbones.PerceptualEncoder` with the same extraction contract
(layer outputs of chosen levels, special tokens first, the patch grid in :class:`EncoderInfo`) and says
how its inputs are preprocessed (its library's own settings) — see :mod:`.registry`.
"""

from scaling.models.encoders.registry import ENCODER_LOADERS, EncoderLoader, loader_for, split_encoder_name

__all__ = ["ENCODER_LOADERS", "EncoderLoader", "loader_for", "split_encoder_name"]
