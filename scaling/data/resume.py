"""Loader state for exact resume: a small JSON-able dict.

The sample order is a deterministic function of the data (index, subset), (seed, epoch, rank,
world_size, worker, num_workers, batch_size) and the order settings (shuffle buffer, length bucketing,
samples per epoch) (:mod:`scaling.data.plan`), and each sample's augmentation/answer draw a function of
its seed and position, so the state is only *where* each worker is, plus what the order was made of:

    {"version": 1, "epoch": 3, "batches": 120, "samples": 1920,
     "cursors": [241, 240],            # per dataloader worker: entries of its order consumed
     "seed": 0, "rank": 1, "world_size": 8, "num_workers": 2, "batch_size": 16,
     "num_samples": 113287, "fraction": 1.0, "subset_seed": 0, "skipped": 0,
     "shuffle_buffer": 1000, "bucket_batches": 0, "samples_per_epoch": 0}

``batches``/``samples`` count what this rank has yielded in the current epoch. A cursor counts plan
entries consumed, skipped bad samples included, so resuming never re-reads them (a negative cursor
``-1 - j``: the worker's own share could not be decoded and it has consumed ``j`` entries of its
replacement order, see :func:`scaling.data.plan.replacement_plan`). Resuming replays a worker's order
up to its cursor on sample *positions* only: whole shards before it are not opened, and samples inside
the current shard are passed over without decoding.

``bucket_batches`` is 0 without length bucketing and ``samples_per_epoch`` 0 when the epoch length
comes from the index. States saved before the order settings were recorded lack them (``None``):
they are assumed unchanged, as the code that wrote them assumed, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from scaling.config.base import ConfigError

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclasses.dataclass
class LoaderState:
    epoch: int = 0
    batches: int = 0
    samples: int = 0
    cursors: list[int] = dataclasses.field(default_factory=list)
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    num_workers: int = 1
    batch_size: int = 1
    num_samples: int = 0
    fraction: float = 1.0
    subset_seed: int = 0
    skipped: int = 0
    skipped_epoch_keys: list[str] | None = None  # the distinct bad samples of this epoch (None: not recorded)
    # order settings; None = unknown (a state saved before they were recorded)
    shuffle_buffer: int | None = None
    bucket_batches: int | None = None  # 0 = no length bucketing
    samples_per_epoch: int | None = None  # 0 = the epoch length of the index

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoaderState:
        if not isinstance(data, dict):
            raise ConfigError(f"loader state must be a dict, got {type(data).__name__}")
        version = data.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ConfigError(f"loader state version {version} is not supported (expected {STATE_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


DATA_FIELDS = ("num_samples", "fraction", "subset_seed", "seed")
LAYOUT_FIELDS = ("world_size", "num_workers", "batch_size")
ORDER_FIELDS = ("shuffle_buffer", "bucket_batches", "samples_per_epoch")


def layout_changes(saved: LoaderState, current: LoaderState) -> list[str]:
    """``"name saved→current"`` for every setting the sample order depends on that differs (a setting
    the saved state does not know is taken as unchanged)."""
    changes = []
    for name in DATA_FIELDS + LAYOUT_FIELDS + ORDER_FIELDS:
        was, now = getattr(saved, name), getattr(current, name)
        if was is not None and was != now:
            changes.append(f"{name} {was}→{now}")
    return changes


def reconcile(saved: LoaderState, current: LoaderState) -> LoaderState:
    """The state to resume from. Exact when the layout matches; otherwise an approximate position.

    Same seed, data, world size, workers, batch size, shuffle buffer, length bucketing and samples per
    epoch → ``saved`` as is. When any of them changed (another world size or worker count, a different
    subset, new shards, another ``data.shuffle_buffer``...), the exact order cannot be replayed: the
    epoch restarts at the same *fraction* of the epoch on the new layout (some samples of this epoch
    may be seen twice or not at all) and a warning says so.
    """
    unknown = [name for name in ORDER_FIELDS if getattr(saved, name) is None]
    if unknown:
        log.warning("the loader state predates recording %s; assuming they are unchanged (if data.shuffle_buffer, "
                    "data.length_bucketing/bucket_batches or data.samples_per_epoch changed since, this epoch may "
                    "repeat or miss some samples)", ", ".join(unknown))
    changes = layout_changes(saved, current)
    if not changes and len(saved.cursors) == current.num_workers:
        out = dataclasses.replace(saved, rank=current.rank, **{name: getattr(current, name) for name in unknown})
        if saved.rank != current.rank:
            log.warning("resuming rank %d from the loader state of rank %d: each rank should load its own state",
                        current.rank, saved.rank)
        return out
    consumed = saved.samples * saved.world_size  # samples consumed by all ranks this epoch
    per_rank_batches = consumed // max(1, current.world_size * current.batch_size)
    log.warning(
        "data loader layout changed since the checkpoint (%s): resuming epoch %d approximately at batch %d of the "
        "new layout; this epoch may repeat or miss some samples (keep these settings to resume exactly)",
        ", ".join(changes) or f"{len(saved.cursors)} worker cursors for {current.num_workers} workers",
        saved.epoch, per_rank_batches,
    )
    return fast_forward(dataclasses.replace(current, epoch=saved.epoch, skipped=saved.skipped,
                                            skipped_epoch_keys=saved.skipped_epoch_keys), per_rank_batches)


def fast_forward(state: LoaderState, batches: int) -> LoaderState:
    """``state`` positioned after ``batches`` batches of its epoch, assuming no sample was skipped."""
    from scaling.data.plan import batches_done_by

    k = max(1, state.num_workers)
    cursors = [batches_done_by(w, batches, k) * state.batch_size for w in range(k)]
    return dataclasses.replace(state, batches=batches, samples=batches * state.batch_size, cursors=cursors)
