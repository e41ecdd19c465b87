"""MAViL's audio encoder (Huang et al., "MAViL: Masked Audio-Video Learners"): the architecture only.

A ViT over the log-mel spectrogram (AudioMAE-style): ``[B, T, F]`` fbank frames (T=1024 10 ms frames,
F=128 mel bins for MAViL-B) → non-overlapping 16×16 patches by a convolution → ``(T/16)·(F/16)``
patch tokens in time-major order (512 for MAViL-B, grid 64×8), a class token in front, learned
(stored) position embeddings, ``depth`` pre-norm transformer blocks (timm's ``Block``: LayerNorm
eps 1e-6, qkv bias, GELU MLP ×4), and the audio final norm ``fc_norm_a``.

State-dict key names (the audio branch of a MAViL checkpoint): ``patch_embed_a.proj.{weight,bias}``,
``cls_token_a``, ``pos_embed_a``, ``blocks_a.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``,
``fc_norm_a.*``. ``fc_norm_a`` is the name the DePALM code looks up for MAViL's final norm; the
other names follow the same ``_a`` (audio-branch) convention. MAViL's own code is unreleased, so
these names could not be checked against a released checkpoint.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class MAViLConfig:
    n_frames: int = 1024  # fbank frames (10 ms hop)
    n_mels: int = 128
    patch: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> tuple[int, int]:
        return self.n_frames // self.patch, self.n_mels // self.patch


class _PatchEmbed(nn.Module):
    def __init__(self, cfg: MAViLConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, F]`` → ``[B, (T/p)·(F/p), d]`` (time-major)."""
        return self.proj(x.unsqueeze(1)).flatten(2).transpose(1, 2)


class MAViLAudioEncoder(nn.Module):
    """MAViL's audio branch; :meth:`forward_levels` returns every block's output."""

    def __init__(self, cfg: MAViLConfig = MAViLConfig()):
        super().__init__()
        from functools import partial

        from timm.models.vision_transformer import Block

        self.cfg = cfg
        n = cfg.grid[0] * cfg.grid[1]
        self.patch_embed_a = _PatchEmbed(cfg)
        self.cls_token_a = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, 1 + n, cfg.dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks_a = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(cfg.depth))
        self.fc_norm_a = norm(cfg.dim)
        if not self.cls_token_a.is_meta:
            nn.init.normal_(self.cls_token_a, std=0.02)
            nn.init.normal_(self.pos_embed_a, std=0.02)

    def forward_levels(self, fbank: torch.Tensor) -> list[torch.Tensor]:
        """fbank ``[B, T, F]`` (normalised) → one ``[B, 1 + n_patches, d]`` per block (not normalised)."""
        x = self.patch_embed_a(fbank)
        cls = self.cls_token_a.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed_a
        out = []
        for block in self.blocks_a:
            x = block(x)
            out.append(x)
        return out

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """fbank ``[B, T, F]`` → the normalised last level ``[B, 1 + n_patches, d]``."""
        return self.fc_norm_a(self.forward_levels(fbank)[-1])


def config_from_state_dict(sd: dict[str, torch.Tensor], n_mels: int = 128, head_dim: int = 64) -> MAViLConfig:
    """The architecture a MAViL audio state dict holds (heads = width / 64, MAViL's head width)."""
    w = sd["patch_embed_a.proj.weight"]  # [d, 1, p, p]
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    n = int(sd["pos_embed_a"].shape[1]) - 1
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks_a."))
    hidden = int(sd["blocks_a.0.mlp.fc1.weight"].shape[0])
    return MAViLConfig(n_frames=n // (n_mels // patch) * patch, n_mels=n_mels, patch=patch, dim=dim, depth=depth,
                       heads=max(1, dim // head_dim), mlp_ratio=hidden / dim)
