"""Low shared pieces that every package may import (it imports no other ``scaling`` package).

* ``media`` — :class:`~scaling.common.media.MediaSpec`: what an encoder expects as input (the models
  build it, the data pipeline reads it).
* ``io`` — :func:`~scaling.common.io.atomic_write` and friends: files written whole or not at all.
* ``values`` — config values given as text: number-like strings (PyYAML's ``1e-5``), ``key=value`` items.
* ``signals`` — the signals a training job handles (the trainer) and its data workers ignore.
* ``run_layout`` — the names inside a run directory (checkpoints, adapter, trainer state, manifest, requeue marker).
* ``hints`` — error hints raised on both sides of a layer (the cached-features split hint).
"""
