"""Low-data subsets: a deterministic fraction of a split chosen by a seeded hash of the sample id.

``keep(id, fraction, seed)`` hashes ``f"{seed}:{id}"`` (SHA-1, so no dependence on Python's
per-process hash randomisation) to a number ``u`` in [0, 1) and keeps the sample when ``u < fraction``.
The choice depends on nothing but (id, fraction, seed): it is identical on every rank, every worker and
every run, and subsets are nested (the 1% subset is inside the 10% one for the same seed). The size is
binomial around ``fraction * N`` (for COCO's 113k training images, 1% gives 1133 ± 33).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def subset_value(sample_id: str, seed: int = 0) -> float:
    """The sample's position in [0, 1) for subset selection."""
    digest = hashlib.sha1(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def keep(sample_id: str, fraction: float, seed: int = 0) -> bool:
    """True when the sample belongs to the ``fraction`` subset for ``seed``."""
    if fraction >= 1.0:
        return True
    return subset_value(sample_id, seed) < fraction


def kept_positions(ids: Iterable[str], fraction: float, seed: int = 0) -> list[int]:
    """Positions of the kept samples in a shard's id list."""
    return [i for i, sid in enumerate(ids) if keep(sid, fraction, seed)]
