"""Keyword names that differ across the transformers versions ``pyproject.toml`` accepts.

transformers 5.x renames the KV-cache argument of every model's ``forward`` from ``past_key_values`` to
``cache`` (the old name warns with a FutureWarning until its removal). We pass whichever name the
model's own ``forward`` declares, so no call of ours triggers the warning and none breaks after it.
"""

from __future__ import annotations

import functools
import inspect


@functools.cache
def _cache_kwarg_of(forward) -> str:
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_kwarg(module) -> str:
    """``"cache"`` or ``"past_key_values"``: the KV-cache keyword of ``module.forward``."""
    forward = getattr(type(module), "forward", None)
    return _cache_kwarg_of(forward) if forward is not None else "past_key_values"
