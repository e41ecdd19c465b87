"""transformers AST (Audio Spectrogram Transformer) on Kaldi log-mel filterbanks ``[batch, frames, mel]``.

Levels: ``hidden_states[1:]``; two special tokens (CLS, distillation) before the (frequency, time)
patch grid. Preprocessing: Kaldi fbank (``audio_features="kaldi-fbank"``), AST's AudioSet mean/std,
16 kHz, overridden by ``preprocessor_config.json`` (mean, std, sampling_rate).
"""

from __future__ import annotations

from transformers import ASTConfig

from scaling.models.encoders.base import DEPALM_AUTO, EncoderInfo, FinalNorm
from scaling.models.encoders.hf import HFEncoder, audio_media, register_family


def info(cfg, **_options) -> EncoderInfo:
    f = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
    t = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
    return EncoderInfo("audio", cfg.hidden_size, cfg.num_hidden_layers, True, 2, (f, t), (2, 2),
                       num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length)


ENCODER = HFEncoder(
    "audio-spectrogram-transformer", "ASTModel", info,
    # DePALM's ASTExtractor reads last_hidden_state (after layernorm); eP-ALM models/ast.py: v.norm per block
    FinalNorm(("layernorm",), True, f"{DEPALM_AUTO}: layernorm"),
    audio_media("kaldi-fbank"),
)

SHAPES = {
    "ast-b": lambda: ASTConfig(num_mel_bins=128, max_length=1024),
    "tiny-ast": lambda: ASTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_mel_bins=32,
        max_length=64, patch_size=16, frequency_stride=16, time_stride=16,
    ),
}

LOADER = register_family(ENCODER, shapes=SHAPES, names={"AST": "audio"})
