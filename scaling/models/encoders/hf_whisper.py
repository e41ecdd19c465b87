"""transformers Whisper: its encoder only (the decoder is dropped after loading) on Whisper's log-mel
spectrogram ``[batch, frames, mel]``.

The conv stem has stride 2: ``max_source_positions`` tokens from twice as many mel frames, no special
token. Whisper's last ``hidden_states`` entry already went through the final ``layer_norm``, so the levels
are taken from its layers' outputs (forward hooks): levels stay raw layer outputs. Preprocessing:
transformers' ``WhisperFeatureExtractor`` (``audio_features="whisper"``, 16 kHz).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig

from scaling.common.media import SAMPLE_RATE, MediaSpec
from scaling.models.encoders.base import EncoderInfo, FinalNorm, PerceptualEncoder
from scaling.models.encoders.hf import HFEncoder, audio_media, register_family


class WhisperAudioEncoder(PerceptualEncoder):
    """Whisper's encoder; levels from its layers' outputs (see the module docstring)."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media log-mel ``[B, frames, mel]`` → ``[B, len(levels), frames / 2, d]``."""
        outputs: list[torch.Tensor] = []
        hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
                 for layer in self.model.layers]
        try:
            self.model(input_features=media.transpose(1, 2))
        finally:
            for h in hooks:
                h.remove()
        states = torch.stack([outputs[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states


_EXTRACTORS: dict[tuple, object] = {}  # transformers WhisperFeatureExtractor per (mel bins, frames, rate)


def whisper_features(waveform, num_mel_bins: int = 80, max_length: int = 3000, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Whisper's input ``[max_length, num_mel_bins]`` (frames first, as AST's): transformers'
    ``WhisperFeatureExtractor`` (25 ms/10 ms STFT, Slaney mel, log10, clamp to max − 8, (x + 4) / 4),
    padded/truncated to ``max_length / 100`` seconds."""
    from transformers import WhisperFeatureExtractor

    key = (num_mel_bins, max_length, sample_rate)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=sample_rate,
                                                   chunk_length=max(1, max_length // 100))
    fe = _EXTRACTORS[key]
    feats = fe(np.asarray(waveform, dtype=np.float32), sampling_rate=sample_rate, return_tensors="np").input_features[0]
    return torch.from_numpy(np.ascontiguousarray(feats.T[:max_length])).float()


def frontend(waveform: np.ndarray, spec: MediaSpec, rng: random.Random | None = None) -> torch.Tensor:
    """``MediaSpec.audio_frontend`` of Whisper encoders (no randomness)."""
    return whisper_features(waveform, spec.num_mel_bins, spec.max_length, spec.sample_rate)


def info(cfg, **_options) -> EncoderInfo:
    n = cfg.max_source_positions
    return EncoderInfo("audio", cfg.hidden_size, cfg.encoder_layers, False, 0, (n,), (4,), num_mel_bins=cfg.num_mel_bins,
                       max_length=2 * n)


def wrap(model: nn.Module, info: EncoderInfo, **_options) -> WhisperAudioEncoder:
    return WhisperAudioEncoder(model.get_encoder(), info, model.config)  # the decoder is not used


ENCODER = HFEncoder(
    "whisper", "WhisperModel", info,
    # not used by the official code: Whisper's own encoder output is layer_norm(last layer)
    FinalNorm(("layer_norm",), True, "no official config; Whisper's last_hidden_state is layer_norm(last layer)"),
    audio_media("whisper", frontend=frontend), wrap=wrap,
)

SHAPES = {
    "whisper-base": lambda: WhisperConfig(d_model=512, encoder_layers=6, encoder_attention_heads=8, decoder_layers=6,
                                          decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80),
    "tiny-whisper": lambda: WhisperConfig(  # 1 s chunks: 100 mel frames -> 50 tokens
        d_model=32, encoder_layers=3, encoder_attention_heads=4, decoder_layers=1, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=50, max_target_positions=16,
        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    ),
}

LOADER = register_family(ENCODER, shapes=SHAPES, names={"Whisper": "audio"})
