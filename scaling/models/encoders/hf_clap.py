"""transformers CLAP: its audio tower (HTSAT), without fusion, on CLAP's log-mel ``[batch, frames, mel]``.

A full CLAP checkpoint (``model_type: clap``, e.g. laion/clap-htsat-unfused) gives by default what DePALM's
CLAP extractor gives (``depalm/models/perceptual/audio.py`` ``CLAPExtractor``, ``config/feat_model/clap.yaml``,
laion_clap without fusion): the pooled audio embedding and the fine-grained frame embeddings (the final
feature map averaged over its frequency bins, each time step repeated ``2^merges * patch_stride`` times:
1024 for HTSAT), 1025 tokens, all through the audio projection (to 512) and L2-normalised per token; that
same tensor is every one of the 8 "levels" (``N_PROJECTED_LEVELS``), no final norm (``norm: null``).
``clap_levels="blocks"`` (``model.encoder_options``) or an audio-tower directory (``model_type:
clap_audio_model``) gives the multi-level HTSAT blocks described below instead.

HTSAT's stages differ in width, so the levels are the blocks of its last stage (forward hooks), at the
final width; tokens are its final (spec_size / patch / 2^merges)² grid of the mel "image", no special
token. Preprocessing: transformers' ``ClapFeatureExtractor`` (``audio_features="clap"``: 48 kHz, 10 s,
random crop of longer clips at training).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn
from transformers import ClapAudioConfig

from scaling.common.media import MediaSpec
from scaling.config.base import ConfigError
from scaling.models.encoders.base import EncoderInfo, FinalNorm, PerceptualEncoder
from scaling.models.encoders.hf import HFEncoder, audio_media, register_family


class ClapAudioEncoder(PerceptualEncoder):
    """CLAP's HTSAT audio tower; levels are the blocks of its last stage (see the module docstring)."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media log-mel ``[B, frames, mel]`` → ``[B, len(levels), side², d]``."""
        outputs: list[torch.Tensor] = []
        hooks = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
                 for block in self.model.audio_encoder.layers[-1].blocks]
        try:
            self.model(input_features=media.unsqueeze(1))
        finally:
            for h in hooks:
                h.remove()
        states = torch.stack([outputs[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states


_EXTRACTORS: dict[tuple, object] = {}  # transformers ClapFeatureExtractor per (mel bins, frames, rate)


def clap_features(waveform, num_mel_bins: int = 64, max_length: int = 1001, sample_rate: int = 48000,
                  rng: random.Random | None = None) -> torch.Tensor:
    """CLAP's (non-fusion) input ``[max_length, num_mel_bins]``: transformers' ``ClapFeatureExtractor``
    (``padding="repeatpad"``); a clip longer than ``(max_length - 1)`` hops is cut first, at a random
    position (``rng``, training) or centred (evaluation), so the extractor never draws from numpy's RNG."""
    from transformers import ClapFeatureExtractor

    key = (num_mel_bins, max_length, sample_rate)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = ClapFeatureExtractor(feature_size=num_mel_bins, sampling_rate=sample_rate,
                                                truncation="rand_trunc", padding="repeatpad")
    fe = _EXTRACTORS[key]
    wav = np.asarray(waveform, dtype=np.float32)
    n = (max_length - 1) * fe.hop_length
    if wav.shape[0] > n:
        start = rng.randrange(wav.shape[0] - n + 1) if rng is not None else (wav.shape[0] - n) // 2
        wav = wav[start : start + n]
    feats = fe(wav, sampling_rate=sample_rate, return_tensors="np").input_features[0, 0]
    return torch.from_numpy(np.ascontiguousarray(feats[:max_length])).float()


def frontend(waveform: np.ndarray, spec: MediaSpec, rng: random.Random | None = None) -> torch.Tensor:
    """``MediaSpec.audio_frontend`` of CLAP audio towers (random crop of long clips at training)."""
    return clap_features(waveform, spec.num_mel_bins, spec.max_length, spec.sample_rate, rng)


N_PROJECTED_LEVELS = 8  # DePALM's CLAPExtractor returns its one tensor as this many "levels" (N_FAKE_STATES)
CLAP_LEVELS = ("projected", "blocks")


class ClapProjectedEncoder(PerceptualEncoder):
    """DePALM's CLAP features over ``ClapAudioModelWithProjection`` (see the module docstring)."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: nn.Module | None = None) -> torch.Tensor:
        """media log-mel ``[B, frames, mel]`` → ``[B, len(levels), 1 + n_frames, projection_dim]`` (the same
        tensor at every level): [pooled, frame embeddings] through the audio projection, L2-normalised per token."""
        audio = self.model.audio_model
        out = audio(input_features=media.unsqueeze(1))
        fmap = out.last_hidden_state  # [B, C, freq bins, T]: HTSAT's final map, frequency groups laid along time
        cfg = audio.config
        ratio = 2 ** (len(cfg.depths) - 1) * cfg.patch_stride[1]  # laion_clap: interpolate(..., 8 * patch_stride[1])
        frames = fmap.mean(2).transpose(1, 2).repeat_interleave(ratio, dim=1)  # [B, T * ratio, C]
        tokens = torch.cat([out.pooler_output[:, None], frames], dim=1)
        tokens = nn.functional.normalize(self.model.audio_projection(tokens), dim=-1)
        return tokens[:, None].expand(-1, len(levels), -1, -1)


def _clap_levels(options: dict) -> str:
    choice = options.get("clap_levels") or "projected"
    if choice not in CLAP_LEVELS:
        raise ConfigError(f"model.encoder_options.clap_levels must be one of {list(CLAP_LEVELS)}, got {choice!r}")
    return choice


def projected_info(cfg, video_frames: int | None = None, **options) -> EncoderInfo:
    """A full CLAP checkpoint: DePALM's projected tokens (default) or the HTSAT blocks (``clap_levels=blocks``)."""
    if _clap_levels(options) == "blocks":
        return info(cfg, **options)
    info(cfg)  # the same refusals (fusion)
    n_merges = len(cfg.depths) - 1
    side = cfg.spec_size // cfg.patch_size // 2**n_merges
    n_frames = side * (cfg.spec_size // cfg.num_mel_bins) * 2**n_merges * cfg.patch_stride[1]
    return EncoderInfo("audio", cfg.projection_dim, N_PROJECTED_LEVELS, True, 1, (n_frames,), (4,),
                       num_mel_bins=cfg.num_mel_bins, max_length=1001)


def projected_wrap(model: nn.Module, info: EncoderInfo, **options) -> PerceptualEncoder:
    if _clap_levels(options) == "blocks":
        return ClapAudioEncoder(model.audio_model, info)
    return ClapProjectedEncoder(model, info)


def info(cfg, **_options) -> EncoderInfo:
    if getattr(cfg, "enable_fusion", False):
        raise ConfigError("CLAP audio with enable_fusion=true (4-channel fused input) is not supported; use a non-fusion checkpoint")
    n_merges = len(cfg.depths) - 1
    side = cfg.spec_size // cfg.patch_size // 2**n_merges
    return EncoderInfo("audio", cfg.patch_embeds_hidden_size * 2**n_merges, cfg.depths[-1], False, 0, (side, side), (2, 2),
                       num_mel_bins=cfg.num_mel_bins, max_length=1001)


def wrap(model: nn.Module, info: EncoderInfo, **_options) -> ClapAudioEncoder:
    return ClapAudioEncoder(model, info)


ENCODER = HFEncoder(
    "clap_audio_model", "ClapAudioModel", info,
    FinalNorm(("audio_encoder.norm",), False, "DePALM config/feat_model/clap.yaml: norm: null"),
    audio_media("clap", sample_rate=48000, frontend=frontend), wrap=wrap,
)

# a full CLAP checkpoint: its audio tower and audio projection (ClapAudioModelWithProjection reads their weights;
# the text tower's are left out); final norm: none, as DePALM's clap.yaml (norm: null)
PROJECTED = HFEncoder(
    "clap", "ClapAudioModelWithProjection", projected_info,
    FinalNorm(("audio_encoder.norm", "audio_model.audio_encoder.norm"), False, "DePALM config/feat_model/clap.yaml: norm: null"),
    audio_media("clap", sample_rate=48000, frontend=frontend), tower="audio_config", wrap=projected_wrap,
)

SHAPES = {
    "clap-htsat": lambda: ClapAudioConfig(enable_fusion=False),
    "tiny-clap": lambda: ClapAudioConfig(  # real input size (1001 x 64 mel, spec 256), tiny widths: 32 x 32 tokens
        spec_size=256, patch_size=4, patch_stride=(4, 4), depths=[1, 2], num_attention_heads=[2, 4], hidden_size=32,
        patch_embeds_hidden_size=16, num_mel_bins=64, window_size=8, enable_fusion=False, projection_hidden_size=32,
        projection_dim=16,
    ),
}

LOADER = register_family(ENCODER, PROJECTED, shapes=SHAPES, names={"CLAP": "audio"})
