"""Can this job resume its run folder's checkpoint? Answered before any model is built or DeepSpeed op compiled.

A checkpoint holds per-rank data positions and (under DeepSpeed) per-rank ZeRO partitions, so it resumes only
with the world size and strategy that wrote it. The trainer asks :func:`resume_problem` right after the
process group exists — before the 60–100 s DeepSpeed op build — and ``scaling train --check`` asks it too.
"""

from __future__ import annotations

import os

from scaling.training import checkpoint as ckpt


def compatibility_problem(found: str, saved: dict, world_size: int, strategy: str, zero_stage: int) -> str | None:
    """Why the checkpoint ``found`` (its state ``saved``) cannot be resumed by this job, or None."""
    if saved.get("world_size") != world_size:
        return (f"{found} was written by {saved.get('world_size')} ranks, this job has {world_size}: the data "
                f"position and the ZeRO partitions are per rank. Resume with {saved.get('world_size')} ranks, or start "
                f"afresh in another train.output_dir")
    if saved.get("strategy") != strategy or saved.get("zero_stage", 0) != zero_stage:
        return (f"{found} was written by {saved.get('strategy')} (ZeRO stage {saved.get('zero_stage', 0)}), this job runs "
                f"{strategy} (stage {zero_stage}); resume with the same train.deepspeed, or start afresh in another "
                f"train.output_dir")
    return None


def planned_strategy(plan) -> tuple[str, int]:
    """(strategy kind, ZeRO stage) the trainer will run for a :class:`scaling.training.validate.RunPlan`."""
    return ("accelerate", 0) if plan.deepspeed is None else ("deepspeed", plan.zero_stage)


def latest_state(output_dir: str) -> tuple[str | None, dict | None]:
    """The newest complete checkpoint of ``output_dir`` and its saved trainer state (cheap: no verification)."""
    found = ckpt.find_latest(output_dir) if os.path.isdir(output_dir) else None
    if found is None:
        return None, None
    try:
        return found, ckpt.read_json(os.path.join(found, ckpt.STATE))
    except (OSError, ValueError):
        return found, None  # damaged: the trainer's verified resume reports (or falls back past) it


def resume_problem(cfg, plan) -> str | None:
    """Why ``cfg.train.output_dir``'s latest checkpoint cannot be resumed by this plan (None: fine or nothing to resume)."""
    if cfg.train.resume != "auto":
        return None
    found, saved = latest_state(cfg.train.output_dir)
    if not found or saved is None:
        return None
    kind, stage = planned_strategy(plan)
    return compatibility_problem(found, saved, plan.world_size, kind, stage)
