"""Resuming a run: find its newest intact checkpoint, refuse what cannot resume exactly, restore everything.

:func:`resume` (collective) lets rank 0 verify every rank's files against the checkpoint's manifest (falling back
past damaged checkpoints), refuses another world size, strategy or mid-epoch batch geometry (the checks of
:mod:`scaling.training.resume_check` and :func:`check_batch_geometry`) and backbones other than the adapter's,
then restores the strategy (weights, optimizer, schedule, loss scaler), the trainer state, the RNG states, the
loader's position and the open log window. A changed ``train.lr``/``train.max_steps`` re-targets the schedule
from the next step.

:func:`keep_checkpoint_format` runs first of all: a checkpoint whose stored config has an older format resumes
with the override keys that keep the behaviour it was trained with (:mod:`scaling.config.versions`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt
from scaling.training import distributed, resume_check
from scaling.training import state as trainer_state
from scaling.training.optim import group_peak_lr


@dataclasses.dataclass
class Resumed:
    path: str  # the checkpoint directory
    state: trainer_state.TrainerState
    data_state: Any  # this rank's loader state_dict() (None at an epoch boundary)
    window_state: dict | None  # this rank's open log window


def resume(cfg, env, strategy, fingerprints: dict, accum: int, total_steps: int,
           log: Callable[[str], None], comm: Any = "cpu") -> Resumed | None:
    """Restore the newest intact checkpoint of ``cfg.train.output_dir`` (collective); None when there is none.

    ``log`` prints a line on rank 0 (notes and warnings); ``comm``: the device of the ranks' collectives (CUDA
    under NCCL). A checkpoint whose files pass the manifest checks but that ``strategy.load`` fails to load on any
    rank is marked damaged with the reason and every rank falls back to the next-newest intact one
    (:func:`load_or_mark_damaged`).
    """
    t = cfg.train
    if t.resume != "auto":
        return None
    failed_loads: list[tuple[str, str]] = []  # (why, path): checkpoints that passed the file checks but failed to load
    while True:
        # rank 0 verifies every rank's files against the checkpoint's manifest and falls back past damaged ones
        found = ckpt.find_resumable(t.output_dir, lambda msg: log(f"WARNING: {msg}")) if env.is_main else (None, None)
        found, error = distributed.broadcast_object(found)
        if error:
            raise ConfigError("\n".join([error] + [line for line, _ in failed_loads]))
        if found is None or found in failed_loads_paths(failed_loads):
            if failed_loads:  # every checkpoint failed to load: say so rather than silently starting afresh
                raise ConfigError("\n".join(
                    [f"no checkpoint of {t.output_dir} could be loaded:"] + [line for line, _ in failed_loads]
                    + ["restore the files from a backup, or start afresh with another train.output_dir"]))
            return None
        saved = ckpt.read_json(os.path.join(found, ckpt.STATE))
        problem = resume_check.compatibility_problem(found, saved, env.world_size, strategy.kind, strategy.zero_stage)
        if problem:
            raise ConfigError(problem)
        check_batch_geometry(found, saved, t, accum, env.world_size, log)
        # the same refusal as loading the adapter: the trainable weights only mean something on these backbones
        adapter_meta = ckpt.read_adapter_meta(os.path.join(found, ckpt.ADAPTER))
        ckpt.check_backbones(os.path.join(found, ckpt.ADAPTER), adapter_meta, fingerprints, cfg.model)
        line = load_or_mark_damaged(strategy, found, env, comm)
        if line is None:
            break
        log(f"WARNING: {line}")
        failed_loads.append((line, found))
    state = trainer_state.restore(saved)
    state.accumulation, state.micro_batch = accum, t.micro_batch
    if state.total_steps != total_steps:
        log(f"note: total steps changed from {state.total_steps} to {total_steps} "
            f"(the schedule follows the new total from step {state.step + 1})")
        state.total_steps = total_steps
    if state.step >= total_steps:
        log(f"note: the checkpoint is at step {state.step}, at or past this config's {total_steps} steps: nothing "
            f"to train (raise train.max_steps or train.epochs to continue the run)")
    # the checkpoint restores the old peak rate and the rate of the next step from the old schedule: apply
    # this job's train.lr and schedule (total steps, warm-up, minimum) from the very next step
    old_lr = strategy.restart_schedule(t.lr, lambda name: group_peak_lr(name, t.lr, t.param_groups))
    if not math.isclose(old_lr, t.lr, rel_tol=1e-9, abs_tol=0.0):
        log(f"note: train.lr changed from {old_lr:g} to {t.lr:g} (the schedule follows the new peak "
            f"rate from step {state.step + 1}: lr {strategy.lr():.6g})")
    rng, data_state = ckpt.read_rank_files(found, env.rank)
    window_state = ckpt.read_window(found, env.rank)
    ckpt.set_rng_state(rng)
    return Resumed(found, state, data_state, window_state)


def failed_loads_paths(failed: list) -> set[str]:
    return {path for _, path in failed}


def load_or_mark_damaged(strategy, found: str, env, comm: Any = "cpu") -> str | None:
    """``strategy.load(found)`` on every rank (collective); None when every rank loaded it.

    When the load raises on any rank, the ranks agree on it (an all-reduce of a failure flag after the attempt,
    so none goes on with a checkpoint another could not load), rank 0 renames the checkpoint ``step_N.damaged``
    with every failing rank's reason (:func:`scaling.training.manifest.mark_damaged`) and every rank gets the
    line that says so, so that the caller retries the next-newest intact checkpoint. A
    :class:`~scaling.config.base.ConfigError` (this config cannot resume it, e.g. other optimizer groups) is no
    damage: it is raised on every rank, and the checkpoint stays.
    """
    from scaling.training import manifest

    why, code = None, 0.0
    try:
        strategy.load(found)
    except ConfigError as err:
        why, code = str(err), 2.0
    except Exception as err:  # noqa: BLE001 -- whatever the loader raises, this checkpoint cannot be resumed
        why, code = f"rank {env.rank}: {strategy.kind} could not load it ({type(err).__name__}: {err})", 1.0
    worst = distributed.all_reduce([code], "max", comm)[0]
    if worst == 0:
        return None
    if worst == 2:
        raise ConfigError(why if code == 2 else f"another rank refused to resume {found}: see its message")
    reasons = distributed.all_gather_object(why)
    line = manifest.mark_damaged(found, [r for r in reasons if r]) if env.is_main else None
    line = distributed.broadcast_object(line)
    distributed.barrier()  # the rename is done before any rank looks for the next checkpoint
    return line


def check_batch_geometry(found: str, saved: dict, t, accum: int, world: int, log: Callable[[str], None]) -> None:
    """Refuse a mid-epoch resume with another micro batch or accumulation (the data position would be wrong).

    ``step_in_epoch`` counts optimizer steps of ``accumulation`` micro batches and the loader's position counts
    micro batches of the saved size: with other sizes the rest of the epoch cannot be replayed exactly. At an
    epoch boundary (``step_in_epoch`` 0, no position saved) the next epoch simply starts with the new sizes.
    ``t``: this job's ``train`` config section; ``accum``: its accumulation.
    """
    old_accum = int(saved.get("accumulation") or 1)
    micro = saved.get("micro_batch")
    if micro is None:  # checkpoints written before trainer_state.json recorded it: the adapter's config has it
        micro = adapter_micro_batch(found)
    changed = old_accum != accum or (micro is not None and int(micro) != t.micro_batch)
    if not changed:
        return
    old = f"micro batch {micro} × accumulation {old_accum} × {world} rank(s) = train.global_batch {micro * old_accum * world}" \
        if micro is not None else f"accumulation {old_accum}"
    new = f"micro batch {t.micro_batch} × accumulation {accum} × {world} rank(s) = train.global_batch {t.global_batch}"
    if not saved.get("step_in_epoch"):
        log(f"note: the batch geometry changed at an epoch boundary, from {old} to {new}")
        return
    keep = f"train.micro_batch={micro} train.global_batch={micro * old_accum * world}" if micro is not None \
        else f"the train.micro_batch and train.global_batch it was written with (accumulation {old_accum})"
    raise ConfigError(
        f"{found} stopped inside an epoch with {old}; this job has {new}. Its position in the epoch counts "
        f"batches of the old sizes, so it cannot be resumed exactly with other ones. Resume with {keep}, or "
        f"start afresh in another train.output_dir"
    )


def adapter_micro_batch(ckpt_dir: str) -> int | None:
    """``train.micro_batch`` of the config stored in a checkpoint's adapter metadata (None when unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(os.path.join(ckpt_dir, ckpt.ADAPTER), "pt") as fh:
            config = json.loads((fh.metadata() or {}).get("config") or "{}")
        return int(config["train"]["micro_batch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keep_checkpoint_format(cfg):
    """``cfg`` with the override keys that keep the behaviour of the checkpoint it resumes, when that checkpoint's
    stored config has an older format (scaling/config/versions.py), said in one line; else ``cfg`` itself."""
    from scaling.config import config_from_dict, to_dict
    from scaling.config.base import apply_overrides
    from scaling.config.versions import CONFIG_FORMAT, format_overrides, stored_format

    found = ckpt.find_latest(cfg.train.output_dir) if cfg.train.resume == "auto" and os.path.isdir(cfg.train.output_dir) else None
    if found is None or not os.path.isfile(os.path.join(found, ckpt.ADAPTER)):
        return cfg
    stored = ckpt.read_adapter_meta(os.path.join(found, ckpt.ADAPTER)).get("config") or {}
    version = stored_format(stored)
    if version < 2 and cfg.train.deepspeed:
        raise ConfigError(f"{found} was written with config format {version}, whose optimizer groups (decay/no_decay) "
                          f"DeepSpeed cannot re-index into the per-category ones (only runs without DeepSpeed are "
                          f"migrated): evaluate its adapter as it is (the override keys are applied when it loads), "
                          f"or start a new run in another train.output_dir")
    extra = format_overrides(stored, resume=True) if version < CONFIG_FORMAT else []
    adapter = os.path.join(found, ckpt.ADAPTER)
    extra += ckpt.format_1_prompt_width(stored, lambda name: ckpt.adapter_tensor_shape(adapter, name))
    if not extra:
        return cfg
    if distributed.read_env().is_main:
        print(f"note: {found} was written with config format {version} (current {CONFIG_FORMAT}): resuming with "
              f"{' '.join(extra)}, the behaviour it was trained with", file=sys.stderr, flush=True)
    return config_from_dict(apply_overrides(to_dict(cfg), extra))
