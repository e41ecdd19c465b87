"""Batching: decoded samples → the batch dict the model's forward / generate take.

Training (``train=True``): RIGHT-padded ``input_ids``/``attention_mask`` of prompt + answer + EOS and
``labels`` (-100 on the prompt and padding); the media key; ``ids`` (list[str]).

Generation (``train=False``): LEFT-padded prompts only (no answer), the media key, ``ids``,
``answers`` (list[list[str]], all references) and ``task``.

Media keys: ``pixel_values [B, 3, H, W]``, ``video [B, F, 3, H, W]``, ``audio [B, frames, mel]`` or
``features [B, L, n_tok, d]`` (float16 as cached). Non-tensor entries are lists/strings: move a batch
with :func:`to_device`, which leaves them alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from scaling.data.text import TextEncoder

MEDIA_KEYS = ("pixel_values", "video", "audio", "features")


def pad_sequences(seqs: Sequence[Sequence[int]], value: int, side: str) -> torch.Tensor:
    """Pad integer lists to a ``[B, T]`` long tensor on the ``side`` ('right' | 'left')."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        t = torch.as_tensor(list(s), dtype=torch.long)
        if side == "right":
            out[i, : len(s)] = t
        else:
            out[i, width - len(s) :] = t
    return out


def stack_media(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    keys = {s["media_key"] for s in samples if s.get("media_key")}
    if not keys:
        return {}
    if len(keys) > 1:
        raise ValueError(f"a batch mixes media kinds {sorted(keys)}; a split must hold one modality")
    (key,) = keys
    return {key: torch.stack([s["media"] for s in samples])}


def collate(samples: Sequence[dict[str, Any]], text: TextEncoder, train: bool) -> dict[str, Any]:
    """Collate decoded samples (see :class:`scaling.data.decode.SampleDecoder`) into a batch.

    Each sample holds ``id``, ``record`` (its json), ``target`` (the answer picked for training),
    ``answers``, ``task`` and ``media_key``/``media``.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    if train:
        pairs = [text.train_example(s["record"], s["target"]) for s in samples]
        ids = [p[0] for p in pairs]
        batch["input_ids"] = pad_sequences(ids, text.pad, "right")
        batch["attention_mask"] = pad_sequences([[1] * len(i) for i in ids], 0, "right")
        batch["labels"] = pad_sequences([p[1] for p in pairs], -100, "right")
    else:
        prompts = [text.generation_prompt(s["record"]) for s in samples]
        batch["input_ids"] = pad_sequences(prompts, text.pad, "left")
        batch["attention_mask"] = pad_sequences([[1] * len(p) for p in prompts], 0, "left")
        batch["answers"] = [list(s["answers"]) for s in samples]
        batch["task"] = samples[0]["task"]
    batch.update(stack_media(samples))
    batch["ids"] = [s["id"] for s in samples]
    return batch


def to_device(batch: dict[str, Any], device, non_blocking: bool = True) -> dict[str, Any]:
    """Move the tensors of a batch to ``device``; lists and strings stay as they are."""
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
