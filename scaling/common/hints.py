"""Messages that name a fix, shared by the check before a run and the loader that meets the same problem.

:func:`features_split_hint`: a cached-features folder without a split the run reads (raised by
``scaling.training.validate`` before a model loads, and by ``scaling.data.stream`` when a loader is built
without that check).
"""


def features_split_hint(problem: str, split: str, features: str) -> str:
    """A cached-features folder without a split the run reads: say how to cache it."""
    return (f"{problem}. data.features={features} holds no cached {split!r} split: cache it with "
            f"`scaling data cache-features --config CFG --split {split} --out {features}` (without --split it caches "
            f"every split the config names: data.train, data.val, data.test), or set data.{split}=null")
