"""The model owns its preprocessing (open_flamingo's ``create_model_and_transforms``): from the model
config, what the data pipeline needs to feed its encoder, as :class:`~scaling.common.media.EncoderInputs`
(the :class:`~scaling.common.media.MediaSpec` its loader prescribes, its feature-cache identity, its
resolved extraction norm), and the frozen feature extractor together with them.

The layer above (training, evaluation, the CLI, the demo) calls these and hands the result to
:mod:`scaling.data`, which never imports this package.
"""

from __future__ import annotations

import torch

from scaling.common.media import EncoderInputs, MediaSpec, with_data_overrides
from scaling.config.base import ConfigError
from scaling.models.encoders.registry import resolve
from scaling.models.final_norm import signature_value


def encoder_inputs(model_cfg, data_cfg=None) -> EncoderInputs:
    """The :class:`EncoderInputs` of ``model_cfg.encoder`` (its config only, no weights); the spec is
    :func:`media_spec`'s (the encoder's own, with the image preprocessing ``data_cfg`` sets in its place)."""
    trust = getattr(model_cfg, "trust_remote_code", False)
    loader, ref = resolve(model_cfg.encoder, trust)
    info = loader.describe(ref, video_frames=getattr(model_cfg, "video_frames", None), trust_remote_code=trust,
                           **getattr(model_cfg, "encoder_options", {}))
    choice = model_cfg.extract.norm
    norm = "none" if choice == "none" else signature_value(choice, info.encoder_type)
    spec = with_data_overrides(loader.media(ref, info, data_cfg), data_cfg)
    return EncoderInputs(spec=spec, identity=loader.identity(ref), norm=norm)


def encoder_media_spec(model_cfg, data_cfg=None) -> MediaSpec:
    """The :class:`MediaSpec` its loader prescribes for ``model_cfg.encoder`` (no weights loaded)."""
    trust = getattr(model_cfg, "trust_remote_code", False)
    loader, ref = resolve(model_cfg.encoder, trust)
    info = loader.describe(ref, video_frames=getattr(model_cfg, "video_frames", None), trust_remote_code=trust,
                           **getattr(model_cfg, "encoder_options", {}))
    return loader.media(ref, info, data_cfg)


def media_spec(model_cfg, data_cfg=None) -> MediaSpec:
    """The :class:`MediaSpec` of ``model_cfg.encoder`` (no weights loaded), with the image preprocessing that
    ``data_cfg`` sets in its place (``data.image_mean`` / ``image_std`` / ``resample`` / ``image_resize``:
    :func:`scaling.common.media.with_data_overrides`)."""
    return with_data_overrides(encoder_media_spec(model_cfg, data_cfg), data_cfg)


def perceives(model_cfg) -> bool:
    """Whether the model reads media at all (the blind baseline, ``inject: none``, reads text only)."""
    return (model_cfg.inject or {}).get("name") != "none"


def build_extractor(model_cfg, device: str | torch.device = "cpu", data_cfg=None):
    """The model's frozen ``FeatureExtractor`` (the same calls as :func:`scaling.models.builder.build_model`)
    and the :class:`EncoderInputs` of its encoder: ``(extractor, inputs)``."""
    from scaling.models.backbones import load_encoder
    from scaling.models.extract import FeatureExtractor

    if model_cfg.finetune.bias_tuning in ("encoder", "both"):
        raise ConfigError("model.finetune.bias_tuning trains the encoder, so its features change during training and "
                          "cannot be cached; train from media (data.use_features=false)")
    encoder = load_encoder(model_cfg.encoder, model_cfg.frozen_dtype, device, model_cfg.video_frames,
                           model_cfg.trust_remote_code, attn_implementation=model_cfg.attn_implementation,
                           **getattr(model_cfg, "encoder_options", {}))
    extractor = FeatureExtractor(encoder, model_cfg.extract.n_levels, model_cfg.extract.tokens, model_cfg.extract.layers,
                                 model_cfg.extract.norm).eval()
    return extractor, encoder_inputs(model_cfg, data_cfg)
