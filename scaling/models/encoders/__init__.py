"""Encoder loaders: one module per encoder family, one :class:`EncoderLoader` each, found through
:mod:`.registry`.

``model.encoder`` is a transformers directory / hub id / shape name (its config's ``model_type`` picks
the family module: ``hf_vit``, ``hf_timesformer``, ``hf_ast``, ``hf_clap``, ``hf_whisper``, ``hf_videomae``,
sharing :mod:`.hf`) or ``PREFIX:REF`` for another library: ``timm:NAME@/weights.safetensors`` or
``timm:/hub-layout-folder``, ``open_clip:ARCH@/checkpoint`` or ``open_clip:/hub-layout-folder``,
``mavil:/checkpoint``. Every loader returns a :class:`~scaling.models.encoders.base.PerceptualEncoder`
with the same extraction contract (layer outputs of chosen levels, special tokens first, the patch grid in
:class:`~scaling.models.encoders.base.EncoderInfo`) and says how its inputs are preprocessed
(:class:`~scaling.common.media.MediaSpec`), what its final norm is, which shape names and tiny test model
it has — see :mod:`.registry`.
"""

from scaling.models.encoders.registry import ENCODER_LOADERS, EncoderLoader, loader_for, split_encoder_name

__all__ = ["ENCODER_LOADERS", "EncoderLoader", "loader_for", "split_encoder_name"]
