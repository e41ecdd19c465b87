"""Batched, sharded generation for evaluation, gathered across ranks, scored with the paper metrics.

Each rank generates for its own share of the split (the data loader splits shards so that every
sample is read by exactly one rank; nothing is padded or duplicated), in batches with the KV cache.
Predictions and references are gathered on every rank (``all_gather_object``); a sample id seen on
two ranks is an error, never silently double-counted. Batched generation equals batch-size-1
generation (left padding + position ids from the mask; tested), so evaluation never has to fall
back to batch 1.

Scoring runs on rank 0 only (METEOR / SPICE start a JVM each: one per node is plenty) and the
metrics are broadcast. ``save_predictions`` is called on rank 0 *before* scoring, so a scoring
failure (no Java, METEOR out of memory) loses no generation: ``scaling score`` re-scores the file.
Samples the loader had to skip (undecodable media) are counted across ranks and reported with the
result: a score over fewer samples than the split holds is not the split's score.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any

import torch

from scaling.common.io import atomic_write, write_json
from scaling.config.base import ConfigError
from scaling.evaluation.metrics import compute_metrics

MEDIA_KEYS = ("pixel_values", "video", "audio", "features")


@dataclasses.dataclass
class EvalResult:
    task: str
    predictions: dict[str, str]
    references: dict[str, list[str]]
    metrics: dict[str, Any]
    skipped: int = 0  # samples of the split the loader could not decode (not scored)
    skipped_keys: list[str] = dataclasses.field(default_factory=list)  # some of them (the loaders keep the last 100)

    def counts(self) -> dict[str, Any]:
        """What ``metrics.json`` records besides the metrics: how many samples the score covers."""
        out: dict[str, Any] = {"n_samples": len(self.predictions), "skipped": self.skipped}
        if self.skipped:
            out["skipped_keys"] = self.skipped_keys
            if isinstance(self.metrics.get("accuracy"), (int, float)):
                # a per-sample mean: what it would be with every skipped sample answered wrongly
                n = len(self.predictions)
                out["accuracy_counting_skipped_as_wrong"] = self.metrics["accuracy"] * n / (n + self.skipped)
        return out

    def skip_warning(self) -> str | None:
        if not self.skipped:
            return None
        return (f"{self.skipped} sample(s) of the split could not be decoded and are NOT in this score "
                f"({len(self.predictions)} scored; e.g. {self.skipped_keys[:3]}): repair them "
                "(`scaling data inspect`) before reporting it")


def postprocess(text: str, stop_strings: tuple[str, ...] = ("\n",)) -> str:
    """Cut the generated text at the first stop string and strip it (leading whitespace first: a
    generation that opens with a newline is not an empty answer)."""
    text = text.lstrip()
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
                   stop_strings: tuple[str, ...] = ("\n",), media_dtype: torch.dtype | None = None,
                   max_length: int | None = None, kv_cache: str = "dynamic") -> list[str]:
    """Left-padded prompts + media of one batch → decoded, post-processed generations (special tokens
    skipped, stripped; cut at ``stop_strings``). ``max_length`` caps prompt + generated tokens like
    Hugging Face's ``max_length`` (eP-ALM's 30): at most ``max_length − prompt width`` new tokens.
    ``kv_cache``: ``dynamic`` or ``static`` (``eval.kv_cache``)."""
    device = next(model.parameters()).device
    batch = _to_device(batch, device, None)
    media = {k: batch[k] for k in MEDIA_KEYS if batch.get(k) is not None}
    if media_dtype is not None:
        media = {k: v.to(media_dtype) for k, v in media.items()}
    if max_length is not None:
        max_new_tokens = max(1, min(max_new_tokens, max_length - batch["input_ids"].shape[1]))
    out = model.generate(
        batch["input_ids"], batch.get("attention_mask"), max_new_tokens=max_new_tokens, num_beams=num_beams,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, kv_cache=kv_cache, **media,
    )
    return [postprocess(t, stop_strings) for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather(predictions: dict[str, str], references: dict[str, list[str]], skipped: tuple[int, list[str]] = (0, [])):
    """Merge every rank's predictions/references (error on an id produced by two ranks) and skip counts."""
    rank, world = _world()
    if world == 1:
        return predictions, references, skipped
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, (predictions, references, skipped))
    merged_p: dict[str, str] = {}
    merged_r: dict[str, list[str]] = {}
    n_skipped, keys = 0, []
    for r, (p, refs, (n, k)) in enumerate(parts):
        dup = set(p) & set(merged_p)
        if dup:
            raise RuntimeError(f"rank {r} evaluated {len(dup)} samples another rank also evaluated (e.g. {sorted(dup)[:3]}); "
                               "the loader must split samples across ranks without duplicates")
        merged_p.update(p)
        merged_r.update(refs)
        n_skipped += n
        keys += k
    return merged_p, merged_r, (n_skipped, keys)


def _score_on_rank0(task: str, predictions: dict, references: dict, save_predictions, metric_options) -> dict:
    """Rank 0 saves the predictions, then scores; the metrics (or the error) reach every rank."""
    rank, world = _world()
    outcome: list[Any] = [None]
    if rank == 0:
        try:
            if save_predictions is not None:
                save_predictions(predictions, references)
            outcome[0] = ("ok", compute_metrics(task, predictions, references, **metric_options))
        except Exception as err:  # noqa: BLE001 - re-raised on every rank below
            outcome[0] = ("error", err)
    if world > 1:
        torch.distributed.broadcast_object_list(outcome, src=0)
    status, value = outcome[0]
    if status == "error":
        raise value
    return value


def evaluate(model, tokenizer, batches: Iterable[dict], task: str, max_new_tokens: int = 20, num_beams: int = 1,
             stop_strings: tuple[str, ...] = ("\n",), progress: bool = True, limit: int | None = None,
             media_dtype: torch.dtype | None = None, save_predictions=None, max_length: int | None = None,
             partial=None, kv_cache: str = "dynamic", **metric_options) -> EvalResult:
    """Generate for every batch of this rank, gather across ranks, score on rank 0 (metrics on every rank).

    ``save_predictions(predictions, references)`` (optional) runs on rank 0 before scoring. ``partial`` (a
    :class:`scaling.evaluation.partial.PartialPredictions`) keeps each batch's predictions as they are made and
    hands back those an interrupted try already made (not generated again). A sample id seen twice keeps its
    first prediction; once every prediction is saved, :class:`DuplicateIds` names them."""
    rank, _ = _world()
    was_training = model.training
    model.eval()
    predictions: dict[str, str] = {}
    references: dict[str, list[str]] = {}
    duplicates: list[str] = []
    iterator = batches
    if progress and rank == 0:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc=f"evaluating ({task})", unit="batch", dynamic_ncols=True)
    for batch in iterator:
        if not len(batch["ids"]):  # every sample of this batch was skipped (counted by the loader)
            continue
        ids = [str(i) for i in batch["ids"]]
        done = partial.done if partial is not None else {}
        todo = [k for k, i in enumerate(ids) if i not in done]
        texts = [done[i][0] if i in done else "" for i in ids]
        if todo:
            sub = batch if len(todo) == len(ids) else select(batch, todo)
            made = generate_batch(model, tokenizer, sub, max_new_tokens, num_beams, stop_strings, media_dtype, max_length,
                                  kv_cache)
            for k, text in zip(todo, made):
                texts[k] = text
            if partial is not None:
                partial.add([(ids[k], texts[k], list(batch["answers"][k])) for k in todo])
        for i, text, refs in zip(ids, texts, batch["answers"]):
            if i in predictions:
                duplicates.append(i)
                continue
            predictions[i] = text
            references[i] = list(refs)
        if limit is not None and len(predictions) >= limit:
            break
    if was_training:
        model.train()
    skipped = (int(getattr(batches, "skipped", 0) or 0), list(getattr(batches, "skipped_keys", []) or []))
    predictions, references, (n_skipped, skipped_keys) = gather(predictions, references, skipped)
    if not predictions:
        raise ConfigError("the evaluation split is empty: no sample was read (check the shard pattern and --split)"
                          + (f"; {n_skipped} sample(s) could not be decoded, e.g. {skipped_keys[:3]}" if n_skipped else ""))
    duplicates = gather_list(duplicates)
    if duplicates:
        if save_predictions is not None and rank == 0:
            save_predictions(predictions, references)
        raise DuplicateIds(duplicates)
    metrics = _score_on_rank0(task, predictions, references, save_predictions, metric_options)
    return EvalResult(task, predictions, references, metrics, n_skipped, skipped_keys)


class DuplicateIds(ConfigError):
    """Sample ids that appear more than once in an evaluation split (raised after the predictions are saved)."""

    def __init__(self, ids: list[str]):
        self.ids = sorted(set(ids))
        super().__init__(
            f"{len(self.ids)} sample id(s) appear more than once in the evaluation split (e.g. {self.ids[:5]}): a "
            f"score needs one prediction per id. Every prediction is saved (the first of each repeated id); give each "
            f"sample its own id (re-convert the data; `scaling data inspect` shows the ids) and evaluate again")


def gather_list(items: list) -> list:
    """Every rank's ``items`` concatenated (on every rank)."""
    rank, world = _world()
    if world == 1:
        return items
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def select(batch: dict, rows: list[int]) -> dict:
    """The ``rows`` of a collated batch (tensors and per-sample lists indexed on their first dimension)."""
    n = len(batch["ids"])
    index = torch.tensor(rows, dtype=torch.long)
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            out[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, (list, tuple)) and len(value) == n:
            out[key] = [value[r] for r in rows]
        else:
            out[key] = value
    return out


def write_predictions(predictions: dict[str, str], references: dict[str, list[str]], out_dir: str) -> str:
    """``out_dir/predictions.jsonl``: one ``{"id", "prediction", "references"}`` per line (atomic)."""
    os.makedirs(out_dir, exist_ok=True)
    pred_path = os.path.join(out_dir, "predictions.jsonl")
    with atomic_write(pred_path) as fh:
        for i in sorted(predictions):
            fh.write(json.dumps({"id": i, "prediction": predictions[i], "references": references.get(i, [])}) + "\n")
    return pred_path


def write_metrics(result: EvalResult, out_dir: str, extra: dict | None = None) -> str:
    """``out_dir/metrics.json``: task, sample counts (scored, skipped), metrics and ``extra`` (atomic)."""
    os.makedirs(out_dir, exist_ok=True)
    metrics_path = os.path.join(out_dir, "metrics.json")
    payload = {"task": result.task, **result.counts(), "metrics": result.metrics, **(extra or {})}
    write_json(metrics_path, payload, indent=2)
    return metrics_path


def write_results(result: EvalResult, out_dir: str, extra: dict | None = None) -> tuple[str, str]:
    """``predictions.jsonl`` (id, prediction, references) and ``metrics.json`` in ``out_dir``."""
    return write_predictions(result.predictions, result.references, out_dir), write_metrics(result, out_dir, extra)
