"""The names inside a run directory, for every package that reads or writes one.

The trainer writes them (:mod:`scaling.training.checkpoint`, :mod:`scaling.training.manifest`,
:mod:`scaling.training.signals`); evaluation, the CLI and the launch scripts read them. One definition here
keeps the writer and its readers from drifting apart and lets the checkpoint and manifest modules share them
without importing each other::

    RUN/checkpoints/latest                  LATEST: the name of the newest complete checkpoint
    RUN/checkpoints/step_000500/            step_name(500)
        adapter.safetensors                 ADAPTER
        trainer_state.json                  STATE
        manifest.json                       MANIFEST
        rng_rank00000.pt ...                rank_file("rng", 0), also "data" and "window"
    RUN/requeue                             REQUEUE_FILE: written on a preemption, removed at the next start
"""

from __future__ import annotations

import os

CHECKPOINTS = "checkpoints"
LATEST = "latest"
ADAPTER = "adapter.safetensors"
STATE = "trainer_state.json"
MANIFEST = "manifest.json"
REQUEUE_FILE = "requeue"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def checkpoints_dir(output_dir: str) -> str:
    return os.path.join(output_dir, CHECKPOINTS)


def rank_file(kind: str, rank: int) -> str:
    """A per-rank file of a checkpoint: ``kind`` is ``rng``, ``data`` or ``window``."""
    return f"{kind}_rank{rank:05d}.pt"
