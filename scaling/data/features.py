"""``scaling data cache-features``: run the frozen encoder once over the shards, store its features.

The encoder and extraction are the model's (``model.encoder``, ``model.extract``, ``model.video_frames``,
``model.frozen_dtype``): the caller passes the ``FeatureExtractor`` that
``scaling.models.transforms.build_extractor`` builds (the same as ``build_model(cfg.model).extractor``,
without loading the LLM) and the encoder's :class:`~scaling.common.media.EncoderInputs` (its preprocessing,
identity and resolved norm). Each output sample keeps the source json and adds ``<key>.npy``: float16
``[K, levels, tokens, dim]``; the split's index records :func:`feature_signature`, which
:func:`check_features_meta` compares with the model config when the features are used.

Views: a training split gets ``--views K`` views; with K > 1 every view is an independent random
augmentation (crop/flip/RandAugment, SpecAugment for audio, random frame positions for video), and
training picks one at random each time it uses the sample; with K = 1 the single view is the clean
(evaluation) preprocessing. Validation/test splits always get one clean view. Cached features are
invalid when the encoder trains (``finetune.bias_tuning`` encoder/both): that is refused.

Several processes (e.g. one per GPU) can share the work: ``--parts N --part i`` converts the input
shards ``i, i+N, ...``; the index is written when the last part finishes.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from scaling.common.io import write_json
from scaling.common.media import EncoderInputs
from scaling.config.base import ConfigError
from scaling.data.decode import SampleDecoder, SampleError
from scaling.data.plan import derive_seed
from scaling.data.shards import ShardRef, ShardSetWriter, read_positions, resolve_split, update_index

log = logging.getLogger(__name__)


def feature_signature(model_cfg, encoder: EncoderInputs) -> dict[str, Any]:
    """What cached features depend on (recorded by :func:`cache_features`, compared at load time by
    :func:`check_features_meta`): the encoder (``encoder.identity``), the extraction (``model.extract``,
    ``model.video_frames``) and the resolved ``model.extract.norm`` (``final``/``none``: ``encoder.norm``,
    so ``auto`` matches the explicit choice it stands for)."""
    ex = model_cfg.extract
    return {
        "encoder": encoder.identity,
        "n_levels": ex.n_levels, "tokens": ex.tokens, "layers": list(ex.layers) if ex.layers else None,
        "video_frames": model_cfg.video_frames, "norm": encoder.norm,
        # family-specific settings change the features too (CLAP: projected tokens or HTSAT blocks)
        **({"encoder_options": dict(model_cfg.encoder_options)} if getattr(model_cfg, "encoder_options", None) else {}),
    }


def check_features_meta(meta: dict[str, Any], model_cfg, encoder: EncoderInputs) -> None:
    """Refuse cached features made with another encoder / extraction than the model config's."""
    feats = meta.get("features")
    if not feats:
        raise ConfigError("data.use_features=true but these shards hold no cached features; create them with "
                          "`scaling data cache-features --config CFG --out DIR` and set data.features=DIR")
    want = feature_signature(model_cfg, encoder)
    # caches written before model.extract.norm existed hold raw layer outputs
    have = {k: feats.get(k, "none" if k == "norm" else None) for k in want}
    diff = [f"{k}: cached {have[k]!r}, config {want[k]!r}" for k in want if have[k] != want[k]]
    if diff:
        fix = "re-run `scaling data cache-features` with this config"
        if have["norm"] != want["norm"]:
            fix += f", or set model.extract.norm={have['norm']} to use these features as they are"
        raise ConfigError("the cached features do not match the model config (" + "; ".join(diff) + f"); {fix}")


class _ShardSamples(IterableDataset):
    """Decoded views of every sample of some shards (shards split across dataloader workers)."""

    def __init__(self, shards: list[ShardRef], decoder: SampleDecoder, views: int, seed: int):
        self.shards, self.decoder, self.views, self.seed = shards, decoder, views, seed

    def __iter__(self):
        info = get_worker_info()
        wid, n = (info.id, info.num_workers) if info else (0, 1)
        for si in range(wid, len(self.shards), n):
            shard = self.shards[si]
            for pos, raw, key in read_positions(shard.url, list(range(shard.num_samples))):
                if raw is None:
                    yield {"error": key}
                    continue
                try:
                    views = [self.decoder(raw, random.Random(derive_seed("cache", self.seed, shard.name, pos, v)))
                             for v in range(self.views)]
                except SampleError as err:  # the decoder turns any problem of a sample into a SampleError
                    yield {"error": f"{shard.url}:{raw.get('__key__')} ({err.reason})"}
                    continue
                yield {"key": raw["__key__"].rsplit("/", 1)[-1], "json": raw["json"], "media": torch.stack([v["media"] for v in views]),
                       "id": views[0]["id"]}


def _merge_parts(out_dir: str, split: str, parts: int) -> str | None:
    files = sorted(glob.glob(os.path.join(out_dir, f".{split}-part*-of-{parts}.json")))
    if len(files) < parts:
        return None
    try:
        entries = []
        for f in files:
            with open(f) as fh:
                entries.append(json.load(fh))
    except FileNotFoundError:  # another part is merging right now
        return None
    entry = dict(entries[0]["entry"])
    entry["shards"] = [s for e in entries for s in e["entry"]["shards"]]
    entry["num_samples"] = sum(e["entry"]["num_samples"] for e in entries)
    entry["skipped"] = sum(e["entry"].get("skipped", 0) for e in entries)
    samples: dict[str, Any] = {}
    for e in entries:
        samples.update(e["samples"])
    path = update_index(out_dir, split, entry, samples)
    for f in files:
        os.remove(f)
    return path


@torch.no_grad()
def cache_features(cfg, out_dir: str, extractor, encoder: EncoderInputs, splits: list[str] | None = None, views: int = 1,
                   batch_size: int | None = None, parts: int = 1, part: int = 0, samples_per_shard: int | None = None,
                   num_workers: int | None = None, progress: bool = True, echo=print) -> dict[str, Any]:
    """Cache the features of ``splits`` (default: every split set in ``cfg.data``) into ``out_dir``.

    ``extractor``: the model's frozen ``FeatureExtractor`` (media ``[B, ...]`` on its device → ``[B, levels,
    tokens, dim]``) and ``encoder`` its :class:`EncoderInputs`, both from
    ``scaling.models.transforms.build_extractor(cfg.model, device, cfg.data)``."""
    from tqdm import tqdm

    if views < 1:
        raise ConfigError("--views must be >= 1")
    if not 0 <= part < parts:
        raise ConfigError(f"--part {part} is not in [0, --parts {parts})")
    splits = splits or [s for s in ("train", "val", "test") if getattr(cfg.data, s)]
    if not splits:
        raise ConfigError("no split to cache: set data.train / data.val / data.test in the config (or pass --split)")
    device = next(extractor.parameters()).device
    spec = encoder.spec
    os.makedirs(out_dir, exist_ok=True)
    batch_size = batch_size or cfg.eval.batch_size
    workers = cfg.data.num_workers if num_workers is None else num_workers
    summary = {}
    for split in splits:
        source = getattr(cfg.data, split, None)
        if not source:
            raise ConfigError(f"data.{split} is not set: nothing to cache for split {split!r}")
        src = resolve_split(source, split, cfg.data.index, what=f"data.{split}", allow_pipe=cfg.data.allow_pipe)
        if src.meta.get("modality") and src.meta["modality"] != spec.modality:
            raise ConfigError(f"data.{split} holds {src.meta['modality']} but model.encoder reads {spec.modality}")
        is_train = split == "train"
        k = views if is_train else 1
        if not is_train and views > 1:
            echo(f"{split}: evaluation splits get one clean view (--views {views} applies to train)")
        augment = is_train and k > 1
        decoder = SampleDecoder(spec, augment, src.meta.get("task", cfg.data.task), cfg.data)
        mine = src.shards[part::parts]
        n_in = sum(s.num_samples for s in mine)
        pattern = os.path.join(out_dir, f"{split}-%06d.tar" if parts == 1 else f"{split}-p{part:03d}-%06d.tar")
        writer = ShardSetWriter(pattern, out_dir, samples_per_shard or max(s.num_samples for s in src.shards) or 1)
        dataset = _ShardSamples(mine, decoder, k, cfg.train.seed)
        loader = DataLoader(dataset, batch_size=None, num_workers=min(workers, len(mine)))
        skipped: list[str] = []
        shape = None
        pending: list[dict] = []
        bar = tqdm(total=n_in, desc=f"features {split}", unit="sample", disable=not progress)

        def flush():
            nonlocal shape
            if not pending:
                return
            media = torch.cat([p["media"] for p in pending])  # [B*k, ...]
            feats = extractor(media.to(device)).to(torch.float16).cpu()  # [B*k, L, n, d]
            feats = feats.view(len(pending), k, *feats.shape[1:]).numpy()
            shape = list(feats.shape[2:])
            for p, f in zip(pending, feats):
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(f), allow_pickle=False)
                writer.write(p["key"], json.loads(p["json"]), {"npy": buf.getvalue()})
            pending.clear()

        try:
            for item in loader:
                bar.update(1)
                if "error" in item:
                    skipped.append(item["error"])
                    continue
                pending.append(item)
                if len(pending) >= batch_size:
                    flush()
            flush()
            entries = writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        if skipped:
            echo(f"{split}: {len(skipped)} samples could not be decoded and are left out (e.g. {skipped[:3]})")
        n = sum(e.num_samples for e in entries)
        if n == 0 and parts == 1:
            raise ConfigError(f"{split}: no sample could be encoded; nothing was written")
        meta = {key: value for key, value in src.meta.items() if key not in ("shards", "samples_file", "created", "features")}
        entry = {**meta, "num_samples": n, "skipped": len(skipped), "shards": [e.__dict__ for e in entries],
                 "features": {**feature_signature(cfg.model, encoder), "shape": shape, "views": k, "augmented": augment,
                              "dtype": "float16", "key": "npy", "source": source,
                              "preprocess": spec.preprocess}}
        if parts == 1:
            path = update_index(out_dir, split, entry, writer.samples)
        else:
            part_file = os.path.join(out_dir, f".{split}-part{part:03d}-of-{parts}.json")
            write_json(part_file, {"entry": entry, "samples": writer.samples})
            path = _merge_parts(out_dir, split, parts) or f"(waiting for the other parts) {part_file}"
        echo(f"{split}: {n} samples x {k} view(s), features {shape} float16 → {path}")
        summary[split] = {"num_samples": n, "skipped": len(skipped), "views": k, "shape": shape, "index": path}
    return summary
