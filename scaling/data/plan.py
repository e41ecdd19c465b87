"""Epoch plans: which samples each (rank, worker) reads and in which order.

A plan is a pure function of the index (shard sample counts, subset positions),
``(seed, epoch, rank, world_size, worker, num_workers, batch_size)`` and the order settings (shuffle
buffer, length bucketing, samples per epoch), which is what makes the loader reproducible and exactly
resumable without any saved shuffle state (the loader state records them all, see
:mod:`scaling.data.resume`).

Training: the shard order is shuffled with ``(seed, epoch)`` (the same on every rank); the resulting
sequence of samples is cut into ``world_size`` contiguous, balanced ranges (so a shard straddling a
boundary is read partly by two ranks, nobody sees a sample twice, and every rank holds at least
``floor(N / world_size)`` samples); each range is cut again per dataloader worker. Every rank then
produces exactly ``batches_per_rank = floor(N / (world_size * batch_size))`` batches, spread over its
workers round-robin. Inside a worker, samples come out in the order of a seeded shuffle buffer
(simulated on positions here, replayed on data by :mod:`scaling.data.stream`), optionally regrouped by
text length (length bucketing).

A worker whose whole share cannot be decoded (a lost shard) reads a :func:`replacement_plan` instead:
the rank's other samples, then the rest of the split, in a seeded order.

Evaluation: shards in index order, contiguous balanced ranges per rank and worker, every sample
exactly once, no padding, no shuffling.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import random
from collections.abc import Sequence


def derive_seed(*parts) -> int:
    """A 64-bit seed from any printable parts (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode("utf-8")).digest()[:8], "big")


def balanced_ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``range(total)`` into ``parts`` contiguous ranges whose sizes differ by at most one."""
    return [(i * total // parts, (i + 1) * total // parts) for i in range(parts)]


def batches_per_rank(total: int, world_size: int, batch_size: int) -> int:
    """Training batches every rank yields per epoch (the same number on every rank)."""
    return total // (world_size * batch_size)


def worker_quota(batches: int, worker: int, num_workers: int) -> int:
    """Batches of a rank's ``batches`` produced by ``worker`` (round-robin: batch i is worker i % K)."""
    return batches // num_workers + (1 if worker < batches % num_workers else 0)


def batches_done_by(worker: int, batches_done: int, num_workers: int) -> int:
    """How many of the first ``batches_done`` round-robin batches came from ``worker``."""
    return max(0, -(-(batches_done - worker) // num_workers))


@dataclasses.dataclass
class Segment:
    shard: int  # index into the split's shard list
    positions: list[int]  # raw sample positions inside that shard (ascending)


@dataclasses.dataclass
class WorkerPlan:
    """What one (rank, worker) reads: ``segments`` in stream order and the output ``order`` (a
    permutation of stream positions ``0..size-1``)."""

    segments: list[Segment]
    order: list[int]
    quota: int | None  # batches to produce (training) or None (evaluation: everything once)
    seed: int  # per-sample random streams derive from (seed, cursor)

    def __post_init__(self):
        self._starts = [0]
        for seg in self.segments:
            self._starts.append(self._starts[-1] + len(seg.positions))

    @property
    def size(self) -> int:
        return self._starts[-1]

    def locate(self, stream_pos: int) -> tuple[int, int]:
        """stream position → (segment index, raw position inside its shard)."""
        i = bisect.bisect_right(self._starts, stream_pos) - 1
        return i, self.segments[i].positions[stream_pos - self._starts[i]]

    def segment_range(self, i: int) -> tuple[int, int]:
        return self._starts[i], self._starts[i + 1]


def _cut(order: Sequence[int], kept: Sequence[Sequence[int]], start: int, stop: int) -> list[Segment]:
    """Segments covering samples ``start..stop-1`` of the concatenation of ``kept`` in shard ``order``
    (``kept[s]`` may be a ``range``: only the covered part is materialised)."""
    out = []
    offset = 0
    for shard in order:
        n = len(kept[shard])
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            out.append(Segment(shard, list(kept[shard][lo - offset : hi - offset])))
        offset += n
        if offset >= stop:
            break
    return out


def shuffle_buffer_order(size: int, buffer: int, rng: random.Random) -> list[int]:
    """Output order of a shuffle buffer of ``buffer`` items fed positions ``0..size-1``.

    The buffer fills to ``buffer`` items, then each new item swaps with a random buffered one, which
    is emitted; at the end the rest is drained at random. Output k is always a position < k + buffer,
    so replaying it on data holds at most ``buffer`` samples in memory.
    """
    if buffer <= 1:
        return list(range(size))
    out: list[int] = []
    buf: list[int] = []
    for pos in range(size):
        buf.append(pos)
        if len(buf) >= buffer:
            j = rng.randrange(len(buf))
            buf[j], buf[-1] = buf[-1], buf[j]
            out.append(buf.pop())
    while buf:
        j = rng.randrange(len(buf))
        buf[j], buf[-1] = buf[-1], buf[j]
        out.append(buf.pop())
    return out


def bucket_order(order: list[int], lengths: list[int], batch_size: int, window_batches: int, rng: random.Random) -> list[int]:
    """Within consecutive windows of ``window_batches`` batches, sort by text length, cut into
    batches and shuffle the batches (similar lengths → less padding; order still random)."""
    window = batch_size * window_batches
    out: list[int] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        noise = {p: rng.random() for p in chunk}
        chunk = sorted(chunk, key=lambda p: (lengths[p], noise[p]))
        batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        for b in batches:
            out.extend(b)
    return out


@dataclasses.dataclass
class TrainSplit:
    """How an epoch's sample sequence (shards in ``shard_order``, concatenated) is cut for one rank:
    the rank reads ``start..stop-1``, worker ``w`` the ``sizes[w]`` samples after the previous workers'."""

    shard_order: list[int]
    total: int
    start: int
    stop: int
    sizes: list[int]
    quotas: list[int]
    n_batches: int

    def worker_range(self, worker: int) -> tuple[int, int]:
        lo = self.start + sum(self.sizes[:worker])
        return lo, lo + self.sizes[worker]


def _train_split(kept: Sequence[Sequence[int]], seed: int, epoch: int, rank: int, world_size: int, k: int,
                 batch_size: int, samples_per_epoch: int | None) -> TrainSplit:
    total = sum(len(x) for x in kept)
    shard_order = list(range(len(kept)))
    random.Random(derive_seed("shards", seed, epoch)).shuffle(shard_order)
    a, b = balanced_ranges(total, world_size)[rank]
    epoch_total = samples_per_epoch if samples_per_epoch else total
    n_batches = batches_per_rank(epoch_total, world_size, batch_size)
    quotas = [worker_quota(n_batches, w, k) for w in range(k)]
    n_rank = b - a
    if samples_per_epoch:  # workers cycle over their share: split it in proportion to their quotas
        cum = [0]
        for q in quotas:
            cum.append(cum[-1] + q)
        bounds = [(n_rank * c + n_batches // 2) // max(1, n_batches) for c in cum] if n_batches else [n_rank * w // k for w in range(k + 1)]
        sizes = [bounds[w + 1] - bounds[w] for w in range(k)]
    else:
        spare = n_rank - n_batches * batch_size
        sizes = [q * batch_size + spare // k + (1 if w < spare % k else 0) for w, q in enumerate(quotas)]
    return TrainSplit(shard_order, total, a, b, sizes, quotas, n_batches)


def plan_rank(
    kept: Sequence[Sequence[int]],
    *,
    train: bool,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    num_workers: int,
    batch_size: int,
    shuffle_buffer: int = 1000,
    lengths: Sequence[Sequence[int]] | None = None,
    bucket_batches: int = 0,
    samples_per_epoch: int | None = None,
    limit: int | None = None,
    worker: int | None = None,
) -> tuple[list[WorkerPlan], int]:
    """Plans of every worker of ``rank`` (indexed by logical worker id) and the rank's batch count.

    ``kept[s]`` lists the raw positions of shard ``s`` that belong to the split (all of them, or a
    low-data subset). ``lengths[s][p]`` (optional) is the text length of raw position ``p`` of shard
    ``s`` (length bucketing). ``samples_per_epoch`` overrides the epoch length (training; workers cycle
    through their samples again when it exceeds the data). ``limit`` evaluates the first samples only.
    ``worker`` given: only that worker's order is computed (the others get an empty ``order``; their
    segments and quotas are still exact).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    k = max(1, num_workers)
    total = sum(len(x) for x in kept)
    if train:
        split = _train_split(kept, seed, epoch, rank, world_size, k, batch_size, samples_per_epoch)
        plans = []
        for w in range(k):
            lo, hi = split.worker_range(w)
            segs = _cut(split.shard_order, kept, lo, hi)
            wseed = derive_seed("worker", seed, epoch, rank, world_size, w, k)
            plan = WorkerPlan(segs, [], split.quotas[w], wseed)
            plans.append(plan)
            if worker is not None and w != worker:
                continue
            rng = random.Random(derive_seed("buffer", wseed))
            order = shuffle_buffer_order(plan.size, shuffle_buffer, rng)
            if lengths is not None and bucket_batches > 0:
                flat = [lengths[s.shard][p] for s in segs for p in s.positions]
                order = bucket_order(order, flat, batch_size, bucket_batches, rng)
            plan.order = order
        return plans, split.n_batches
    shard_order = list(range(len(kept)))
    if limit is not None:
        total = min(total, limit)
    a, b = balanced_ranges(total, world_size)[rank]
    plans = []
    for w, (lo, hi) in enumerate(balanced_ranges(b - a, k)):
        segs = _cut(shard_order, kept, a + lo, a + hi)
        plan = WorkerPlan(segs, [], None, derive_seed("eval-worker", seed, rank, w))
        plan.order = list(range(plan.size))
        plans.append(plan)
    n_batches = sum(-(-p.size // batch_size) for p in plans)
    return plans, n_batches


def replacement_plan(
    kept: Sequence[Sequence[int]],
    *,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    num_workers: int,
    batch_size: int,
    worker: int,
    shuffle_buffer: int = 1000,
    samples_per_epoch: int | None = None,
) -> WorkerPlan:
    """The samples a training worker reads instead of its share when none of that share can be decoded
    (it lies inside a lost or corrupt shard), so that it still yields its batches.

    The rank's other samples come first (the shares of the workers after it, then before it), then the
    rest of the split after the rank's range (wrapping around), up to the rank's size plus the largest
    shard (enough to get past any single lost shard); read in a seeded shuffle-buffer order. A
    deterministic function of the same arguments as :func:`plan_rank`, so a resumed run replays it.
    These samples are also read by their own workers: they are seen twice this epoch.
    """
    k = max(1, num_workers)
    split = _train_split(kept, seed, epoch, rank, world_size, k, batch_size, samples_per_epoch)
    own_lo, own_hi = split.worker_range(worker)
    room = (split.stop - split.start) + max((len(x) for x in kept), default=0)
    pieces = [(own_hi, split.stop), (split.start, own_lo), (split.stop, split.total), (0, split.start)]
    segs: list[Segment] = []
    for lo, hi in pieces:
        hi = min(hi, lo + room)
        if lo < hi:
            segs += _cut(split.shard_order, kept, lo, hi)
            room -= hi - lo
    wseed = derive_seed("replacement", seed, epoch, rank, world_size, worker, k)
    plan = WorkerPlan(segs, [], split.quotas[worker], wseed)
    plan.order = shuffle_buffer_order(plan.size, shuffle_buffer, random.Random(derive_seed("buffer", wseed)))
    return plan
