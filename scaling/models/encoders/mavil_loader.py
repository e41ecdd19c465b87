"""``mavil:/path/to/checkpoint``: MAViL's audio branch (:mod:`scaling.models.mavil`).

The architecture is read off the checkpoint's shapes (width, depth, patch, frames; heads = width/64);
``mavil:base`` is MAViL-B at real shape on the meta device, without weights (parameter counting). A full
audio-visual MAViL checkpoint may be given: the audio branch's keys (``*_a``) are kept, the video
branch (``*_v``), the joint layers and the decoders are not used (logged); the audio keys must then
match exactly.

Extraction: every block's output, CLS first; with ``extract.tokens=cls`` the CLS token is replaced by
the mean of the level's patch tokens (DePALM supplement B.1, ``EncoderInfo.cls_pool="mean"``); final
norm ``fc_norm_a`` (the official default is no norm). Preprocessing: MAViL's fbank, the AudioSet
settings of the DePALM AudioCaps loader (Kaldi fbank, 25 ms Hann window, 10 ms hop, 128 mel bins,
1024 frames, ``(x + 4.2677393) / (2 · 4.5689974)``).
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from scaling.common.media import MediaSpec
from scaling.config.base import ConfigError
from scaling.models.encoders.base import EncoderInfo, FinalNorm, PerceptualEncoder
from scaling.models.encoders.checkpoint import find_weights, load_exact, read_state_dict
from scaling.models.encoders.common import dims_namespace, freeze
from scaling.models.encoders.registry import EncoderLoader, register
from scaling.models.mavil import MAViLAudioEncoder, MAViLConfig, config_from_state_dict

log = logging.getLogger(__name__)
EXAMPLE = "model.encoder=mavil:/models/mavil/audio.pth"
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
SHAPE_NAMES = ("", "base")  # mavil:base = MAViL-B at real shape, no weights (parameter counting)


def _path(ref: str) -> str | None:
    if ref in SHAPE_NAMES and not os.path.exists(ref):
        return None
    path = os.path.expanduser(ref)
    if os.path.isdir(path):
        return find_weights(path, f"model.encoder=mavil:{ref}")
    if not os.path.isfile(path):
        raise ConfigError(f"model.encoder=mavil:{ref}: {path} does not exist; give the local MAViL checkpoint, e.g. {EXAMPLE}")
    return path


def _audio_keys(sd: dict[str, torch.Tensor], ref: str) -> dict[str, torch.Tensor]:
    if "patch_embed_a.proj.weight" not in sd:
        raise ConfigError(f"model.encoder=mavil:{ref}: the checkpoint has no MAViL audio branch (no patch_embed_a.proj.weight; "
                          f"its keys start with {sorted({k.split('.')[0] for k in sd})[:8]})")
    audio = ("patch_embed_a.", "cls_token_a", "pos_embed_a", "blocks_a.", "fc_norm_a.")
    kept = {k: v for k, v in sd.items() if k.startswith(audio)}
    other = [k for k in sd if k not in kept]
    suspicious = [k for k in other if k.endswith("_a") or "_a." in k]  # audio-branch names we do not know: refuse below
    if other:
        log.info("mavil:%s: audio branch only (%d tensors of other branches not used)", ref, len(other))
    return {**kept, **{k: sd[k] for k in suspicious}}


@functools.lru_cache(maxsize=8)
def _config(ref: str) -> MAViLConfig:
    path = _path(ref)
    if path is None:
        return MAViLConfig()
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, "pt") as fh:
            sd = {k: fh.get_slice(k) for k in fh.keys()}
            shapes = {k: torch.empty(s.get_shape(), device="meta") for k, s in sd.items()}
    else:
        shapes = read_state_dict(path, f"model.encoder=mavil:{ref}")
    try:
        return config_from_state_dict(_audio_keys(shapes, ref))
    except (KeyError, ValueError) as err:
        raise ConfigError(f"model.encoder=mavil:{ref}: cannot read the architecture off the checkpoint ({err})") from None


def _info(cfg: MAViLConfig) -> EncoderInfo:
    return EncoderInfo("audio", cfg.dim, cfg.depth, True, 1, cfg.grid, (2, 2), num_mel_bins=cfg.n_mels,
                       max_length=cfg.n_frames, cls_pool="mean", encoder_type="mavil")


class MAViLEncoder(PerceptualEncoder):
    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: torch.nn.Module | None = None) -> torch.Tensor:
        """media fbank ``[B, T, F]`` → ``[B, len(levels), 1 + n_patches, d]``."""
        hidden = self.model.forward_levels(media)
        states = torch.stack([hidden[i] for i in levels], dim=1)
        return norm(states) if norm is not None else states



def describe(ref: str, video_frames: int | None = None, **_options) -> EncoderInfo:
    return _info(_config(ref))


def load(ref: str, dtype: str = "bf16", device="cpu", video_frames: int | None = None, meta: bool = False,
         **_options) -> MAViLEncoder:
    cfg = _config(ref)
    if meta:
        with torch.device("meta"):
            model = MAViLAudioEncoder(cfg)
    else:
        path = _path(ref)
        if path is None:
            raise ConfigError(f"model.encoder=mavil:{ref} names no checkpoint; weights come from a local file: {EXAMPLE}")
        model = MAViLAudioEncoder(cfg)
        sd = _audio_keys(read_state_dict(path, f"model.encoder=mavil:{ref}"), ref)
        load_exact(model, sd, f"model.encoder=mavil:{ref}", path)
    model = freeze(model, dtype, "meta" if meta else device)
    config = dims_namespace("mavil", hidden_size=cfg.dim, num_hidden_layers=cfg.depth, num_mel_bins=cfg.n_mels,
                            max_length=cfg.n_frames, patch_size=cfg.patch)
    return MAViLEncoder(model, _info(cfg), config)


def media(ref: str, info: EncoderInfo, data_cfg=None):
    return MediaSpec("audio", num_mel_bins=int(info.num_mel_bins), max_length=int(info.max_length), audio_mean=AUDIOSET_MEAN,
                     audio_std=AUDIOSET_STD, encoder_type="mavil",
                     preprocess="mavil.fbank(kaldi, hann 25 ms, hop 10 ms, (x+4.2677393)/(2*4.5689974))")


def check(ref: str) -> list[str]:
    try:
        return [] if _path(ref) else [f"model.encoder=mavil:{ref} names no checkpoint; e.g. {EXAMPLE}"]
    except ConfigError as err:
        return [str(err)]


def identity(ref: str) -> str:
    return f"mavil:{os.path.basename(os.path.normpath(ref)) if ref else ''}"


def save_tiny_mavil(path: str, seed: int = 0, n_frames: int = 64, dim: int = 64, depth: int = 3) -> str:
    """A tiny random MAViL audio encoder (128 mel bins, ``n_frames`` frames, heads = dim/64) saved as
    a safetensors state dict with MAViL's key names: load it as ``mavil:<path>``."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = MAViLAudioEncoder(MAViLConfig(n_frames=n_frames, n_mels=128, dim=dim, depth=depth, heads=max(1, dim // 64)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


FINAL_NORMS = {"mavil": FinalNorm(("fc_norm_a",), False, "DePALM config/feat_model/mavil.yaml: norm: null (auto would take fc_norm_a)")}

register("mavil", EncoderLoader(describe=describe, load=load, media=media, check=check, identity=identity, example=EXAMPLE,
                                final_norms=FINAL_NORMS, tiny=save_tiny_mavil, names={"MAViL": "audio"}))
