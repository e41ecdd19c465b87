"""A few generated texts at each evaluation: prompts cut out of a validation batch, generated, decoded.

:func:`prompts_from_batch` turns a training-format batch (``labels``) into left-padded prompts and their
reference targets; :func:`generate_samples` runs the model's ``generate`` on them and formats
``- generated: ... | reference: ...`` lines for the log and TensorBoard.
"""

from __future__ import annotations

import torch

from scaling.training.window import MEDIA_KEYS


def pad_id(tokenizer) -> int:
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return 0


def decode(tokenizer, ids) -> str:
    if isinstance(ids, str):
        return ids
    ids = [int(i) for i in ids.tolist()]
    if tokenizer is None:
        return " ".join(map(str, ids))
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def prompts_from_batch(batch: dict, n: int, pad_id: int = 0) -> tuple[dict, list[torch.Tensor], dict]:
    """Training-format batch → (left-padded prompts, reference target ids, media) for the first ``n`` rows.

    The prompt of a row is its tokens before the first target (``labels != -100``).
    """
    ids, mask, labels = batch["input_ids"][:n], batch["attention_mask"][:n], batch["labels"][:n]
    prompts, refs = [], []
    for row in range(ids.shape[0]):
        target = (labels[row] != -100).nonzero()
        start = int(target[0]) if len(target) else int(mask[row].sum())
        keep = mask[row, :start].bool()
        prompts.append(ids[row, :start][keep])
        refs.append(labels[row][labels[row] != -100])
    width = max(1, max(len(p) for p in prompts))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, p in enumerate(prompts):
        if len(p):
            input_ids[row, width - len(p):] = p
            attention[row, width - len(p):] = 1
    media = {k: batch[k][:n] for k in (*MEDIA_KEYS, "features") if batch.get(k) is not None}
    return {"input_ids": input_ids, "attention_mask": attention}, refs, media


@torch.no_grad()
def generate_samples(model, strategy, tokenizer, batch: dict, n: int, max_new_tokens: int) -> str:
    """Generate for the first ``n`` rows of ``batch`` (training or generation format); one line per row."""
    if "labels" in batch:  # training format: cut the prompts out
        prompts, refs, media = prompts_from_batch(batch, n, pad_id=pad_id(tokenizer))
    else:  # generation format (scaling.data): left-padded prompts + reference answers
        prompts = {"input_ids": batch["input_ids"][:n], "attention_mask": batch["attention_mask"][:n]}
        refs = [" | ".join(a) for a in batch.get("answers", [[]] * n)[:n]]
        media = {k: batch[k][:n] for k in (*MEDIA_KEYS, "features") if batch.get(k) is not None}
    prompts = strategy.to_device(prompts)
    media = strategy.to_device(media)
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.llm.config, "eos_token_id", None)
    with strategy.gathered_for_generation():
        out = model.generate(
            prompts["input_ids"], prompts["attention_mask"], max_new_tokens=max_new_tokens,
            num_beams=1, eos_token_id=eos, pad_token_id=pad_id(tokenizer), **media,
        )
    lines = []
    for i in range(out.shape[0]):
        lines.append(f"- generated: {decode(tokenizer, out[i])!r} | reference: {decode(tokenizer, refs[i])!r}")
    return "\n".join(lines)
