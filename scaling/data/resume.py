"""Loader state for exact resume: a small JSON-able dict.

The sample order is a deterministic function of (seed, epoch, rank, world_size, worker, num_workers)
(:mod:`scaling.data.plan`), and each sample's augmentation/answer draw a function of its seed and
position, so the state is only *where* each worker is:

    {"version": 1, "epoch": 3, "batches": 120, "samples": 1920,
     "cursors": [241, 240],            # per dataloader worker: entries of its order consumed
     "seed": 0, "rank": 1, "world_size": 8, "num_workers": 2, "batch_size": 16,
     "num_samples": 113287, "fraction": 1.0, "subset_seed": 0, "skipped": 0}

``batches``/``samples`` count what this rank has yielded in the current epoch. A cursor counts plan
entries consumed, skipped bad samples included, so resuming never re-reads them. Resuming replays a
worker's order up to its cursor on sample *positions* only: whole shards before it are not opened,
and samples inside the current shard are passed over without decoding.
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

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoaderState":
        if not isinstance(data, dict):
            raise ConfigError(f"loader state must be a dict, got {type(data).__name__}")
        version = data.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ConfigError(f"loader state version {version} is not supported (expected {STATE_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def reconcile(saved: LoaderState, current: LoaderState) -> LoaderState:
    """The state to resume from. Exact when the layout matches; otherwise an approximate position.

    Same seed, world size, workers, batch size and data → ``saved`` as is. When the data layout
    changed (another world size or worker count, a different subset, new shards), the exact order
    cannot be replayed: the epoch restarts at the same *fraction* of the epoch on the new layout
    (some samples of this epoch may be seen twice or not at all) and a warning says so.
    """
    same_data = (saved.num_samples, saved.fraction, saved.subset_seed, saved.seed) == (
        current.num_samples, current.fraction, current.subset_seed, current.seed)
    same_layout = (saved.world_size, saved.num_workers, saved.batch_size) == (
        current.world_size, current.num_workers, current.batch_size)
    if same_data and same_layout and len(saved.cursors) == current.num_workers:
        out = dataclasses.replace(saved, rank=current.rank)
        if saved.rank != current.rank:
            log.warning("resuming rank %d from the loader state of rank %d: each rank should load its own state",
                        current.rank, saved.rank)
        return out
    consumed = saved.samples * saved.world_size  # samples consumed by all ranks this epoch
    per_rank_batches = consumed // max(1, current.world_size * current.batch_size)
    log.warning(
        "data loader layout changed since the checkpoint (world_size %d→%d, num_workers %d→%d, batch %d→%d, "
        "samples %d→%d): resuming epoch %d approximately at batch %d of the new layout; this epoch may repeat "
        "or miss some samples", saved.world_size, current.world_size, saved.num_workers, current.num_workers,
        saved.batch_size, current.batch_size, saved.num_samples, current.num_samples, saved.epoch, per_rank_batches,
    )
    return fast_forward(dataclasses.replace(current, epoch=saved.epoch, skipped=saved.skipped), per_rank_batches)


def fast_forward(state: LoaderState, batches: int) -> LoaderState:
    """``state`` positioned after ``batches`` batches of its epoch, assuming no sample was skipped."""
    from scaling.data.plan import batches_done_by

    k = max(1, state.num_workers)
    cursors = [batches_done_by(w, batches, k) * state.batch_size for w in range(k)]
    return dataclasses.replace(state, batches=batches, samples=batches * state.batch_size, cursors=cursors)
