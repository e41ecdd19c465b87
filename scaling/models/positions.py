"""Which prefix tokens get a position embedding on LLMs with *learned absolute* positions (OPT, GPT-2).

Rotary LLMs (LLaMA, Qwen2, Mistral...) have no position embedding to leave out: they count every
token of the sequence (``[prefix][text]``), as the DePALM code does for LLaMA. On an LLM with a learned
position table the official codes differ in what the table is added to:

- ``prompt`` (DePALM's code; the default): the prompt and the text are numbered from 0, prompt first;
  no perceptual token gets a position. DePALM inserts its tokens *inside* the layers, after OPT has
  added its position embeddings: the layer-0 methods (QP-L0, R-*, LiMBeR, MAPL: ``config/mod/insert_l0.yaml``
  is ``prefix_tokens_inner_layers`` aimed at layer 0) as much as the inner ones (``prefix_tokens.py``),
  while the prompt tokens (``finetuning.py`` ``LearnedPrefixTokensL0``) are part of the decoder's input.
- ``input``: every token given at the LLM's input (first-layer perceptual tokens, prompt) is numbered with
  the text; inner slots get none (what ``scaling`` did by default before the layer-0 fix).
- ``text`` (eP-ALM's ``models/opt.py``): no prefix token gets a position (the prompt is
  prepended after the position embedding, the perceptual tokens inside the layers); the text starts at 0.
- ``sequence``: every token is numbered, prefix first (what ``scaling`` did before).

``model.learned_positions`` picks one (default ``prompt``); the eP-ALM presets set ``text``. Applied through a forward hook
on the LLM's position-embedding module (:data:`POSITION_MODULES`), so the position ids handed to
Hugging Face stay the plain sequence ones.
"""

from __future__ import annotations

import torch
from torch import nn

from scaling.config.base import ConfigError

SCHEMES = ("prompt", "input", "text", "sequence")

# transformers model_type -> path of the learned position embedding inside the base model (LLMLayout.base)
POSITION_MODULES: dict[str, str] = {"opt": "decoder.embed_positions", "gpt2": "wpe"}


def position_module(base: nn.Module, model_type: str) -> nn.Module | None:
    """The learned position embedding of an LLM's base model, or None (rotary / unknown: every token counts)."""
    path = POSITION_MODULES.get(model_type)
    return base.get_submodule(path) if path else None


def unpositioned(scheme: str, n_prefix: int, slot_start: int, slot_count: int, n_first: int = 0) -> tuple[int, int]:
    """(start, count): the prefix columns that get no position embedding under ``scheme``; the prefix holds
    ``n_first`` first-layer perceptual tokens at its start, or ``slot_count`` inner slots from ``slot_start``."""
    if scheme not in SCHEMES:
        raise ConfigError(f"model.learned_positions must be one of {list(SCHEMES)}, got {scheme!r}")
    if scheme == "text":
        return 0, n_prefix
    if scheme == "prompt":
        return (0, n_first) if n_first else (slot_start, slot_count)
    if scheme == "input":
        return slot_start, slot_count
    return 0, 0


def shifted_positions(positions: torch.Tensor, q_start: int, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence position ids of a window ``[B, q]`` whose first column is sequence column ``q_start`` →
    (positions with ``count`` removed after the unpositioned columns ``start..start+count-1``,
    keep ``[1, q, 1]``: 0 on those columns)."""
    cols = torch.arange(q_start, q_start + positions.shape[1], device=positions.device)
    after = (cols >= start + count)[None]
    inside = (cols >= start) & (cols < start + count)
    out = torch.where(after, positions - count, positions).clamp(min=0)
    return out, (~inside).to(torch.float32)[None, :, None]


def learned_position_embedding(module: nn.Module, positions: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """What the position module returns for ``positions`` ``[B, q]``, zeroed where ``keep`` ``[1, q, 1]`` is 0."""
    offset = getattr(module, "offset", 0)  # OPT's table starts 2 rows in
    emb = nn.functional.embedding(positions + offset, module.weight)
    return emb * keep.to(emb.dtype)
