"""Batched, sharded generation for evaluation, gathered across ranks, scored with the paper metrics.

Each rank generates for its own share of the split (the data loader splits shards so that every
sample is read by exactly one rank; nothing is padded or duplicated), in batches with the KV cache.
Predictions and references are gathered on every rank (``all_gather_object``); a sample id seen on
two ranks is an error, never silently double-counted. Batched generation equals batch-size-1
generation (left padding + position ids from the mask; tested), so evaluation never has to fall
back to batch 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

import torch

from scaling.config.base import ConfigError
from scaling.evaluation.metrics import compute_metrics

MEDIA_KEYS = ("pixel_values", "video", "audio", "features")


@dataclasses.dataclass
class EvalResult:
    task: str
    predictions: dict[str, str]
    references: dict[str, list[str]]
    metrics: dict[str, Any]


def postprocess(text: str, stop_strings: tuple[str, ...] = ("\n",)) -> str:
    """Cut the generated text at the first stop string and strip it."""
    for stop in stop_strings:
        if stop and stop in text:
            text = text.split(stop, 1)[0]
    return text.strip()


def _to_device(batch: dict, device: torch.device, dtype: torch.dtype | None) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device)
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
        out[k] = v
    return out


@torch.no_grad()
def generate_batch(model, tokenizer, batch: dict, max_new_tokens: int = 20, num_beams: int = 1,
                   stop_strings: tuple[str, ...] = ("\n",), media_dtype: torch.dtype | None = None) -> list[str]:
    """Left-padded prompts + media of one batch → decoded, post-processed generations."""
    device = next(model.parameters()).device
    batch = _to_device(batch, device, None)
    media = {k: batch[k] for k in MEDIA_KEYS if batch.get(k) is not None}
    if media_dtype is not None:
        media = {k: v.to(media_dtype) for k, v in media.items()}
    out = model.generate(
        batch["input_ids"], batch.get("attention_mask"), max_new_tokens=max_new_tokens, num_beams=num_beams,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **media,
    )
    return [postprocess(t, stop_strings) for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather(predictions: dict[str, str], references: dict[str, list[str]]) -> tuple[dict, dict]:
    """Merge every rank's predictions/references; error on an id produced by two ranks."""
    rank, world = _world()
    if world == 1:
        return predictions, references
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, (predictions, references))
    merged_p: dict[str, str] = {}
    merged_r: dict[str, list[str]] = {}
    for r, (p, refs) in enumerate(parts):
        dup = set(p) & set(merged_p)
        if dup:
            raise RuntimeError(f"rank {r} evaluated {len(dup)} samples another rank also evaluated (e.g. {sorted(dup)[:3]}); "
                               "the loader must split samples across ranks without duplicates")
        merged_p.update(p)
        merged_r.update(refs)
    return merged_p, merged_r


def evaluate(model, tokenizer, batches: Iterable[dict], task: str, max_new_tokens: int = 20, num_beams: int = 1,
             stop_strings: tuple[str, ...] = ("\n",), progress: bool = True, limit: int | None = None,
             media_dtype: torch.dtype | None = None, **metric_options) -> EvalResult:
    """Generate for every batch of this rank, gather across ranks, compute the task's metrics."""
    rank, _ = _world()
    was_training = model.training
    model.eval()
    predictions: dict[str, str] = {}
    references: dict[str, list[str]] = {}
    iterator = batches
    if progress and rank == 0:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc=f"evaluating ({task})", unit="batch", dynamic_ncols=True)
    for batch in iterator:
        ids = [str(i) for i in batch["ids"]]
        texts = generate_batch(model, tokenizer, batch, max_new_tokens, num_beams, stop_strings, media_dtype)
        for i, text, refs in zip(ids, texts, batch["answers"]):
            if i in predictions:
                raise RuntimeError(f"sample {i!r} appears twice in this rank's evaluation data")
            predictions[i] = text
            references[i] = list(refs)
        if limit is not None and len(predictions) >= limit:
            break
    if was_training:
        model.train()
    predictions, references = gather(predictions, references)
    if not predictions:
        raise ConfigError("the evaluation split is empty: no sample was read (check the shard pattern and --split)")
    metrics = compute_metrics(task, predictions, references, **metric_options)
    return EvalResult(task, predictions, references, metrics)


def write_results(result: EvalResult, out_dir: str, extra: dict | None = None) -> tuple[str, str]:
    """``predictions.jsonl`` (id, prediction, references) and ``metrics.json`` in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    pred_path = os.path.join(out_dir, "predictions.jsonl")
    tmp = pred_path + ".tmp"
    with open(tmp, "w") as fh:
        for i in sorted(result.predictions):
            fh.write(json.dumps({"id": i, "prediction": result.predictions[i], "references": result.references.get(i, [])}) + "\n")
    os.replace(tmp, pred_path)
    metrics_path = os.path.join(out_dir, "metrics.json")
    payload = {"task": result.task, "n_samples": len(result.predictions), "metrics": result.metrics, **(extra or {})}
    with open(metrics_path + ".tmp", "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(metrics_path + ".tmp", metrics_path)
    return pred_path, metrics_path
