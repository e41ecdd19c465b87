"""What a training job carries from step to step and hands back: :class:`TrainerState`, :class:`TrainResult`.

``TrainerState`` is what ``RUN/checkpoints/step_N/trainer_state.json`` holds (besides what the strategy and
the per-rank RNG/data/window files hold); :func:`restore` reads it back, keeping only the fields this version
knows, so that checkpoints written by older or newer versions resume.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class TrainerState:
    """What ``trainer_state.json`` holds (besides what the strategy and RNG files hold)."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    total_steps: int = 0
    world_size: int = 1
    accumulation: int = 1
    micro_batch: int | None = None  # None in checkpoints written before it was recorded
    skipped_steps: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    strategy: str = "accelerate"
    zero_stage: int = 0
    precision: str = "fp32"
    last_metrics: dict = dataclasses.field(default_factory=dict)
    best: dict | None = None  # {"metric", "value", "step"}
    last_loss: float | None = None
    skipped_samples: dict = dataclasses.field(default_factory=dict)  # {"epoch": distinct bad samples skipped}


def restore(saved: dict) -> TrainerState:
    """A :class:`TrainerState` from a ``trainer_state.json``: fields this version does not know are ignored."""
    known = {f.name for f in dataclasses.fields(TrainerState)}
    return TrainerState(**{k: v for k, v in saved.items() if k in known})


@dataclasses.dataclass
class TrainResult:
    exit_code: int
    state: TrainerState
    output_dir: str
    preempted: bool = False  # stopped by a signal (preemption or Ctrl-C) and checkpointed
    interrupted: bool = False  # ... and that signal was Ctrl-C (exit 130, no requeue marker)
    checkpoint: str | None = None  # the newest checkpoint of the run when it stopped
    summary: dict | None = None  # train_summary.json (rank 0)
