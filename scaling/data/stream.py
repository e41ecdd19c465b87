"""Streaming loader: shards → decoded, augmented, collated batches for one rank.

``build_loader(cfg, tokenizer, split, rank, world_size, train, epoch)`` returns a :class:`StreamLoader`:
iterate it for one epoch of batches of ``cfg.train.micro_batch`` (training) or ``cfg.eval.batch_size``
(evaluation) samples. Shards are read from local disk, a shared filesystem or any URL webdataset's
``gopen`` opens (``pipe:``, ``http(s)://``, ...).

Guarantees (see :mod:`scaling.data.plan` for how):

* training: no sample twice in an epoch across ranks and workers; every rank yields exactly
  ``len(loader) = floor(N / (world_size * micro_batch))`` batches, however uneven the shards (N from
  the index, after the ``data.fraction`` subset); order reproducible from ``(train.seed, epoch)``;
* evaluation: every sample exactly once across ranks (no padding/duplicates; counts may differ by one
  sample between ranks; the evaluator gathers lists);
* exact resume: ``state_dict()`` / ``load_state_dict()`` (:mod:`scaling.data.resume`);
* bad samples (corrupt/missing media, unreadable shard, no ``answers`` to train on or score against) are
  skipped, counted (``loader.skipped``) and
  their keys logged; a training rank still yields its full batch count (it takes the next samples and,
  if its share runs out, cycles through it again; a worker whose whole share is undecodable, e.g. inside
  a lost shard, reads seeded replacement samples from the rank's other shards and the split instead,
  with a warning naming the shard).

Training loaders are a stream: iterating again after a ``break`` continues where it stopped, the
epoch advances by itself after a complete pass (so ``for epoch ...: for batch in loader`` works), and
``set_epoch(e)`` jumps to epoch ``e`` (a no-op for the current epoch, which keeps a resumed position).
Evaluation loaders start a full pass on every iteration (unless a state was just loaded).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from scaling.common.media import EncoderInputs
from scaling.config.base import ConfigError
from scaling.config.tasks import TASKS
from scaling.data.collate import collate
from scaling.data.decode import SampleDecoder, SampleError
from scaling.data.plan import WorkerPlan, batches_done_by, derive_seed, plan_rank, replacement_plan
from scaling.data.resume import LoaderState, reconcile
from scaling.data.shards import ShardRef, all_shards_missing_error, read_positions, resolve_split
from scaling.data.subset import kept_positions
from scaling.data.text import TextEncoder, text_encoder_for
from scaling.data.workers import preemption_signals_blocked, worker_init

log = logging.getLogger(__name__)
MAX_LOGGED_SKIPS = 20


def iter_plan(plan: WorkerPlan, shards: list[ShardRef], start: int = 0) -> Iterator[tuple[int, dict | None, str]]:
    """Replay ``plan.order[start:]`` on data: yields ``(k, raw_sample_or_None, key_or_reason)``.

    Shards are read in stream order, only at the positions still needed (earlier ones are never
    read: no decoding, and no I/O at all for shards that are entirely behind); a reorder buffer holds
    the samples read ahead, at most about ``shuffle_buffer`` of them.
    """
    needed = plan.order[start:]
    need = set(needed)

    def reader():
        for si, seg in enumerate(plan.segments):
            s0, s1 = plan.segment_range(si)
            wanted = [(sp, seg.positions[sp - s0]) for sp in range(s0, s1) if sp in need]
            if not wanted:
                continue
            to_stream = {rp: sp for sp, rp in wanted}
            for rp, sample, key in read_positions(shards[seg.shard].url, [rp for _, rp in wanted]):
                if rp in to_stream:
                    yield to_stream[rp], sample, key

    source = reader()
    pending: dict[int, tuple[dict | None, str]] = {}
    for k, sp in enumerate(needed, start=start):
        while sp not in pending:
            try:
                got, sample, key = next(source)
            except StopIteration:
                pending[sp] = (None, f"stream position {sp} was not delivered by its shard")
                break
            pending[got] = (sample, key)
        sample, key = pending.pop(sp)
        yield k, sample, key
    source.close()


class ShardStream(IterableDataset):
    """The per-worker part of the loader (runs inside dataloader workers). Yields collated batches
    with a ``_meta`` entry (worker, cursor, skipped keys) that :class:`StreamLoader` strips."""

    def __init__(self, shards: list[ShardRef], kept: list[list[int]], decoder: SampleDecoder, text: TextEncoder, *,
                 train: bool, batch_size: int, seed: int, rank: int, world_size: int, num_workers: int,
                 shuffle_buffer: int, lengths: list[list[int]] | None = None, bucket_batches: int = 0,
                 samples_per_epoch: int | None = None, limit: int | None = None):
        self.shards = shards
        self.kept = kept
        self.decoder = decoder
        self.text = text
        self.train = train
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = max(1, num_workers)
        self.shuffle_buffer = shuffle_buffer
        self.lengths = lengths
        self.bucket_batches = bucket_batches
        self.samples_per_epoch = samples_per_epoch
        self.limit = limit
        # set by StreamLoader before each pass
        self.epoch = 0
        self.cursors = [0] * self.num_workers
        self.batches_done = 0

    def plans(self, epoch: int, worker: int | None = None) -> tuple[list[WorkerPlan], int]:
        return plan_rank(
            self.kept, train=self.train, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size,
            num_workers=self.num_workers, batch_size=self.batch_size, shuffle_buffer=self.shuffle_buffer,
            lengths=self.lengths, bucket_batches=self.bucket_batches if self.train else 0,
            samples_per_epoch=self.samples_per_epoch, limit=self.limit, worker=worker,
        )

    def order_settings(self) -> dict[str, int]:
        """The settings besides the layout that shape the order (kept in the loader state: changing one
        makes a resume approximate)."""
        if not self.train:  # evaluation reads in index order
            return {"shuffle_buffer": 1, "bucket_batches": 0, "samples_per_epoch": 0}
        return {"shuffle_buffer": max(1, self.shuffle_buffer),
                "bucket_batches": self.bucket_batches if self.lengths is not None else 0,
                "samples_per_epoch": self.samples_per_epoch or 0}

    def __iter__(self):
        info = get_worker_info()
        physical = info.id if info is not None else 0
        if info is not None and info.num_workers != self.num_workers:
            raise RuntimeError(f"dataloader has {info.num_workers} workers, the plan {self.num_workers}")
        k = self.num_workers
        worker = (physical + self.batches_done) % k  # rotation keeps the round-robin order on resume
        plans, _ = self.plans(self.epoch, worker)
        plan = plans[worker]
        cursor = self.cursors[worker] if worker < len(self.cursors) else 0
        if self.train:
            quota = plan.quota - batches_done_by(worker, self.batches_done, k)
            yield from self._train_batches(plan, worker, cursor, quota)
        else:
            yield from self._eval_batches(plan, worker, cursor)

    def _decode(self, raw, key, cursor_seed: int, skipped: list[str]):
        if raw is None:
            skipped.append(key)
            return None
        try:
            return self.decoder(raw, random.Random(cursor_seed))
        except SampleError as err:
            skipped.append(f"{raw.get('__url__')}:{raw.get('__key__')} ({err.reason})")
            return None

    def _train_batches(self, plan: WorkerPlan, worker: int, cursor: int, quota: int):
        if quota <= 0:
            return
        if plan.size == 0:
            raise RuntimeError(f"rank {self.rank} worker {worker} has no samples but must yield {quota} batches")
        batch: list[dict] = []
        skipped: list[str] = []
        for cursor, sample in self._train_samples(plan, worker, cursor, skipped):  # noqa: B020 - the cursor argument is the start; the loop advances it
            batch.append(sample)
            if len(batch) == self.batch_size:
                out = collate(batch, self.text, train=True)
                out["_meta"] = {"worker": worker, "cursor": cursor, "skipped": list(skipped)}
                yield out
                batch = []
                skipped.clear()
                quota -= 1
                if quota == 0:
                    return

    def _train_samples(self, plan: WorkerPlan, worker: int, cursor: int, skipped: list[str]):
        """``(cursor, sample)`` for the worker's decodable samples from ``cursor`` on, endlessly.

        The worker cycles through its share; when a whole pass over it gives nothing (its share lies
        inside a lost shard), it goes on with its replacement order (:func:`replacement_plan`), with
        negative cursors ``-1 - consumed``. Raises when that gives nothing either.
        """
        if cursor >= 0:
            yield from self._laps(plan, cursor, skipped)
            cursor = -1
        replacement = self.replacement(self.epoch, worker)
        if replacement.size:
            self._warn_replacement(plan, worker, replacement, skipped)
            for consumed, sample in self._laps(replacement, -1 - cursor, skipped):
                yield -1 - consumed, sample
        raise RuntimeError(
            f"rank {self.rank} worker {worker}: none of its {plan.size} samples nor of its {replacement.size} replacement "
            f"samples could be decoded (last problems: {skipped[-3:]}); check the shards with `scaling data inspect`")

    def _laps(self, plan: WorkerPlan, consumed: int, skipped: list[str]):
        """``(entries consumed, sample)`` for each decodable sample of ``plan.order`` from entry
        ``consumed`` on, going round again at the end; returns after a whole lap without one."""
        size = plan.size
        while True:
            lap, k0 = divmod(consumed, size)
            good_in_lap = 0
            for k, raw, key in iter_plan(plan, self.shards, k0):
                consumed = lap * size + k + 1
                sample = self._decode(raw, key, derive_seed(plan.seed, consumed - 1), skipped)
                if sample is not None:
                    good_in_lap += 1
                    yield consumed, sample
            if good_in_lap == 0 and k0 == 0:
                return
            consumed = (lap + 1) * size

    def replacement(self, epoch: int, worker: int) -> WorkerPlan:
        return replacement_plan(
            self.kept, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size,
            num_workers=self.num_workers, batch_size=self.batch_size, worker=worker,
            shuffle_buffer=self.shuffle_buffer, samples_per_epoch=self.samples_per_epoch,
        )

    def _warn_replacement(self, plan: WorkerPlan, worker: int, replacement: WorkerPlan, skipped: list[str]) -> None:
        lost = sorted({self.shards[seg.shard].url for seg in plan.segments})
        log.warning(
            "rank %d worker %d: none of its %d samples could be decoded (shard %s; last problem: %s); it reads %d "
            "replacement samples from the rank's other shards and the split instead (they are seen twice this epoch). "
            "Restore or re-create the lost shard (check with `scaling data inspect`)",
            self.rank, worker, plan.size, ", ".join(lost), skipped[-1] if skipped else "none", replacement.size)

    def _eval_batches(self, plan: WorkerPlan, worker: int, cursor: int):
        """One batch per ``batch_size`` consecutive entries of the worker's order (the last one shorter), so that
        the batch count is known before decoding (``len()``): bad samples make their batch smaller, and a batch
        whose samples are all bad is yielded empty (``ids == []``, no tensors)."""
        batch: list[dict] = []
        skipped: list[str] = []
        for k, raw, key in iter_plan(plan, self.shards, cursor):
            cursor = k + 1
            sample = self._decode(raw, key, derive_seed(plan.seed, k), skipped)
            if sample is not None:
                batch.append(sample)
            if cursor % self.batch_size == 0 or cursor == plan.size:
                out = collate(batch, self.text, train=False) if batch else empty_eval_batch()
                out["_meta"] = {"worker": worker, "cursor": cursor, "skipped": skipped}
                yield out
                batch, skipped = [], []


def empty_eval_batch() -> dict[str, Any]:
    """An evaluation batch whose samples were all skipped: no rows (consumers skip it)."""
    return {"ids": [], "answers": [], "input_ids": torch.zeros(0, 0, dtype=torch.long),
            "attention_mask": torch.zeros(0, 0, dtype=torch.long)}


class StreamLoader:
    """Iterable over one epoch of batches for one rank, with ``state_dict``/``load_state_dict``.

    Attributes: ``epoch``, ``skipped`` (skip events so far: a bad sample met again when a worker cycles
    through its share counts again), ``skipped_in_epoch`` (distinct bad samples of this epoch: what the
    trainer reports), ``skipped_keys`` (the last
    100 of them), ``num_samples`` (samples of the split after the subset), ``meta`` (the split's
    index entry).
    """

    def __init__(self, dataset: ShardStream, *, train: bool, num_workers: int, epoch: int = 0,
                 pin_memory: bool = False, prefetch_factor: int = 2, num_samples: int = 0,
                 fraction: float = 1.0, subset_seed: int = 0, meta: dict | None = None):
        self.dataset = dataset
        self.train = train
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.num_samples = num_samples
        self.fraction = fraction
        self.subset_seed = subset_seed
        self.meta = meta or {}
        self.skipped = 0
        self.skipped_keys: list[str] = []
        self._k = max(1, num_workers)
        self._resumed = False
        self._num_batches = dataset.plans(0, worker=-1)[1]
        self._reset(epoch)

    # ------------------------------------------------------------------ epoch bookkeeping
    def _reset(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = 0
        self.samples = 0
        self.cursors = [0] * self._k
        self.skipped_epoch: dict[str, None] = {}  # distinct bad samples of this epoch (an ordered set)

    @property
    def skipped_in_epoch(self) -> int:
        """Distinct bad samples skipped in the current epoch (restored on resume)."""
        return len(self.skipped_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch`` (no-op when already in it: a resumed position is kept)."""
        if epoch != self.epoch:
            self._reset(epoch)

    def __len__(self) -> int:
        """Training: batches per epoch on every rank. Evaluation: batches on this rank, exactly what an iteration
        yields (a batch with skipped samples is smaller; one whose samples were all skipped is empty)."""
        return self._num_batches

    @property
    def batch_size(self) -> int:
        return self.dataset.batch_size

    # ------------------------------------------------------------------ state
    def _state(self) -> LoaderState:
        ds = self.dataset
        return LoaderState(
            epoch=self.epoch, batches=self.batches, samples=self.samples, cursors=list(self.cursors), seed=ds.seed,
            rank=ds.rank, world_size=ds.world_size, num_workers=self._k, batch_size=ds.batch_size,
            num_samples=self.num_samples, fraction=self.fraction, subset_seed=self.subset_seed, skipped=self.skipped,
            skipped_epoch_keys=list(self.skipped_epoch),
            **ds.order_settings(),
        )

    def state_dict(self) -> dict[str, Any]:
        """Small JSON-able dict: epoch, batches/samples yielded this epoch, per-worker cursors, layout."""
        return self._state().to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly after the last batch the saved loader yielded (see :func:`reconcile`)."""
        st = reconcile(LoaderState.from_dict(state), self._state())
        self.epoch, self.batches, self.samples = st.epoch, st.batches, st.samples
        self.cursors = list(st.cursors) or [0] * self._k
        self.skipped = st.skipped
        self.skipped_epoch = dict.fromkeys(st.skipped_epoch_keys or [])
        self._resumed = True

    # ------------------------------------------------------------------ iteration
    def _note_skips(self, keys: list[str]) -> None:
        for key in keys:
            self.skipped += 1
            if key in self.skipped_epoch:  # met again (a worker cycling through its share): logged already
                continue
            self.skipped_epoch[key] = None
            self.skipped_keys = (self.skipped_keys + [key])[-100:]
            if self.skipped_in_epoch <= MAX_LOGGED_SKIPS:
                log.warning("skipped a bad sample: %s", key)
            elif self.skipped_in_epoch == MAX_LOGGED_SKIPS + 1:
                log.warning("more bad samples skipped this epoch (not listed); their number per epoch is in the "
                            "training log (data/skipped_samples in train_log.jsonl and TensorBoard) and "
                            "train_summary.json (skipped_samples); `scaling data inspect` finds them")

    def __iter__(self):
        if self.train and self.batches >= self._num_batches:
            self._reset(self.epoch + 1)
        if not self.train and not self._resumed:
            self._reset(self.epoch)  # every evaluation pass covers the whole split
        self._resumed = False
        ds = self.dataset
        ds.epoch, ds.cursors, ds.batches_done = self.epoch, list(self.cursors), self.batches
        if self.num_workers > 0:
            # the workers' base seed comes from this generator, not from the process's global torch RNG: creating
            # the iterator would otherwise draw from it, once per pass, at a point a resumed run does not repeat
            # (a resume was not exact with workers: dropout and every later random draw shifted)
            seed = derive_seed("dataloader", ds.seed, ds.rank, self.epoch) % 2**63
            loader = DataLoader(
                ds, batch_size=None, num_workers=self.num_workers, worker_init_fn=worker_init,
                pin_memory=self.pin_memory and torch.cuda.is_available(), prefetch_factor=self.prefetch_factor,
                persistent_workers=False, generator=torch.Generator().manual_seed(seed),
            )
            with preemption_signals_blocked():  # a signal arriving while the workers start must not kill them
                it = iter(loader)
        else:
            it = iter(ds)
        completed = False
        try:
            for batch in it:
                meta = batch.pop("_meta")
                self.cursors[meta["worker"]] = meta["cursor"]
                self._note_skips(meta["skipped"])
                if batch.pop("_empty", False):
                    continue
                self.batches += 1
                self.samples += len(batch["ids"])
                yield batch
                if self.train and self.batches >= self._num_batches:
                    break
            completed = True
        finally:
            del it
        if completed:
            if self.train:
                if self.batches < self._num_batches:
                    raise RuntimeError(f"rank {ds.rank} yielded {self.batches} of {self._num_batches} batches")
                self._reset(self.epoch + 1)
            else:
                self._reset(self.epoch)


def _source_for(cfg, split: str) -> tuple[str, str]:
    data = cfg.data
    if data.use_features and data.features:
        return data.features, split
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    source = getattr(data, split)
    if not source:
        raise ConfigError(
            f"data.{split} is not set: point it at converted shards, e.g. data.{split}=shards/coco "
            f"(the folder with index.json) or 'shards/coco/{split}-{{000000..000031}}.tar' "
            f"(create them with `scaling data convert`)")
    return source, split


def build_loader(cfg, tokenizer, split: str, rank: int, world_size: int, train: bool, epoch: int = 0, *,
                 encoder: EncoderInputs | None = None, limit: int | None = None, num_workers: int | None = None) -> StreamLoader:
    """A :class:`StreamLoader` over ``cfg.data.<split>`` for ``rank`` of ``world_size``.

    ``train=True``: shuffled, augmented, ``cfg.train.micro_batch`` per batch, ``data.fraction`` subset,
    the same number of batches on every rank. ``train=False``: generation batches of
    ``cfg.eval.batch_size`` (left-padded prompts, ids, answers, task), each sample once across ranks;
    ``limit`` keeps the first ``limit`` samples of the split (e.g. ``cfg.eval.subset``).
    ``num_workers`` overrides ``cfg.data.num_workers``. ``encoder``: what the model's encoder needs
    (``scaling.models.transforms.encoder_inputs(cfg.model, cfg.data)``; ``scaling.training.loaders.build_loader``
    passes it): its preprocessing, or the signature of the cached features it accepts. A model that reads
    no media (``model.inject.name=none``) needs none.
    """
    from scaling.data.features import check_features_meta

    data = cfg.data
    if tokenizer is None:
        raise ConfigError(f"model.llm={cfg.model.llm!r} has no tokenizer (a shape name?); the data pipeline needs the "
                          "LLM's tokenizer: point model.llm at a model folder")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} / world_size {world_size} is not a valid process layout")
    source, index_split = _source_for(cfg, split)
    fraction = data.fraction if train else 1.0
    need_ids = train and (fraction < 1.0 or data.length_bucketing)
    try:
        src = resolve_split(source, index_split, data.index, need_ids=need_ids, what=f"data.{split}",
                            allow_pipe=data.allow_pipe)
    except ConfigError as err:
        if data.use_features and data.features and "has no split" in str(err):
            from scaling.common.hints import features_split_hint

            raise ConfigError(features_split_hint(str(err), split, data.features)) from None
        raise
    missing = all_shards_missing_error(src.shards, source, f"data.{split}")
    if missing is not None:  # else every DataLoader worker would fail on its first shard
        raise missing
    meta = src.meta
    if need_ids:
        kept = [kept_positions(sh.ids, fraction, data.subset_seed) for sh in src.shards]
    else:
        kept = [range(sh.num_samples) for sh in src.shards]  # ranges: no per-sample memory at scale
    total = sum(len(k) for k in kept)
    if total == 0:
        raise ConfigError(f"data.{split}: no samples{f' in the {fraction:.2%} subset (data.fraction)' if fraction < 1 else ''}")
    lengths = [list(sh.lengths or [0] * sh.num_samples) for sh in src.shards] if (train and data.length_bucketing) else None
    for sh in src.shards:  # ids were only needed for the subset; don't copy them into every worker
        sh.ids = sh.lengths = None

    shard_task = meta.get("task")
    if shard_task and shard_task != data.task and shard_task in TASKS:
        log.warning("data.task is %r but the shards of data.%s are %r; using the shards' prompt template",
                    data.task, split, shard_task)
    task = shard_task or data.task
    perceives = (cfg.model.inject or {}).get("name") != "none"
    if perceives and encoder is None:
        raise TypeError("build_loader(encoder=...) is required for a model that reads media: pass "
                        "scaling.models.transforms.encoder_inputs(cfg.model, cfg.data), or call "
                        "scaling.training.loaders.build_loader, which does")
    if not perceives:  # a model without perception (the blind baseline) reads the text only
        spec = None
    elif data.use_features:
        check_features_meta(meta, cfg.model, encoder)
        spec = None
    else:
        spec = encoder.spec
        modality = meta.get("modality")
        if modality and modality != spec.modality:
            raise ConfigError(
                f"data.{split} holds {modality} samples but model.encoder ({cfg.model.encoder}) reads {spec.modality}; "
                f"use an encoder for {modality} or shards of modality {spec.modality}")
        if spec.modality == "video" and spec.frames != data.video_frames:
            log.info("video clips are sampled at %d frames (the encoder's), not data.video_frames=%d",
                     spec.frames, data.video_frames)
    decoder = SampleDecoder(spec, train, task, data, use_features=data.use_features and perceives, require_answers=True)
    text = text_encoder_for(cfg, tokenizer, task)
    batch_size = cfg.train.micro_batch if train else cfg.eval.batch_size
    workers = data.num_workers if num_workers is None else num_workers
    if workers > 0:  # HF tokenizers warn (and may deadlock) when forked after using their thread pool
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stream = ShardStream(
        src.shards, kept, decoder, text, train=train, batch_size=batch_size, seed=cfg.train.seed, rank=rank,
        world_size=world_size, num_workers=workers, shuffle_buffer=data.shuffle_buffer, lengths=lengths,
        bucket_batches=data.bucket_batches if data.length_bucketing else 0,
        samples_per_epoch=data.samples_per_epoch if train else None, limit=limit,
    )
    loader = StreamLoader(stream, train=train, num_workers=workers, epoch=epoch, pin_memory=data.pin_memory,
                          prefetch_factor=data.prefetch_factor, num_samples=total, fraction=fraction,
                          subset_seed=data.subset_seed, meta=meta)
    if train and len(loader) == 0:
        raise ConfigError(f"data.{split}: {total} samples is less than one batch per rank "
                          f"(world_size {world_size} x micro_batch {batch_size}); lower train.micro_batch or use more data")
    return loader


__all__ = ["ShardStream", "StreamLoader", "build_loader", "iter_plan", "resolve_split"]
