"""Writing a training job's checkpoints: collective, all-or-nothing, and reported when they fail.

:meth:`CheckpointSaver.save` writes the step's checkpoint (adapter, strategy state, trainer state, per-rank
RNG/data/window files; layout in :mod:`scaling.training.checkpoint`) into ``step_N.tmp/`` and commits it.
When any rank fails to write its part, every rank learns it, the partial directory is removed and a
:class:`~scaling.training.diskspace.CheckpointWriteError` says what failed and the space needed.
:meth:`CheckpointSaver.save_or_report` is what the loop calls: a periodic save that fails is reported and
training goes on (the next save retries); a final one raises with the fix. :meth:`CheckpointSaver.save_best`
keeps ``RUN/best/``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time

import torch

from scaling.training import checkpoint as ckpt
from scaling.training import diskspace, distributed
from scaling.training.diskspace import CheckpointWriteError
from scaling.training.state import TrainerState
from scaling.training.summary import UNSCORABLE


class CheckpointSaver:
    """Saves one job's checkpoints; ``started``: when the job started (``train_seconds`` counts up to a save)."""

    def __init__(self, cfg, cfg_dict: dict, env, strategy, fingerprints: dict, budget, comm: torch.device,
                 started: float):
        self.cfg, self.cfg_dict, self.env, self.strategy = cfg, cfg_dict, env, strategy
        self.fingerprints, self.budget, self.comm, self.started = fingerprints, budget, comm, started
        self.main = env.is_main
        self.out = cfg.train.output_dir
        self.root = ckpt.checkpoints_dir(self.out)
        self.failures: list[dict] = []  # {"step", "error"} of this job's periodic saves that failed

    def save(self, state: TrainerState, loader, step_in_epoch_done: bool, window=None) -> str:
        """Write a checkpoint of ``state.step`` (collective); ``window``: the log window, saved per rank."""
        started = time.time()
        tmp = os.path.join(self.root, ckpt.step_name(state.step) + ".tmp")
        failure = None
        try:
            if self.main:
                ckpt.begin(self.root, state.step)
        except OSError as err:
            failure = err
        self._agree_saved(failure, tmp, state.step)
        tensors = self.strategy.trainable_state()
        try:
            if self.main:
                ckpt.save_adapter(os.path.join(tmp, ckpt.ADAPTER), tensors, self.cfg_dict, self.fingerprints,
                                  step=state.step, metrics=state.last_metrics)
            self.strategy.save(tmp, self.main)
            saved = dataclasses.replace(state, train_seconds=state.train_seconds + (time.time() - self.started))
            if step_in_epoch_done:  # the epoch is finished: resume at the start of the next one
                saved.epoch, saved.step_in_epoch = state.epoch + 1, 0
                data = None
            else:
                data = loader.state_dict()
            ckpt.write_rank_files(tmp, self.env.rank, data, window.state_dict() if window is not None else None)
            if self.main:
                ckpt.write_json_atomic(os.path.join(tmp, ckpt.STATE), dataclasses.asdict(saved))
        except Exception as err:  # noqa: BLE001 - classified below; every rank must learn about it
            if not (isinstance(err, (OSError, RuntimeError)) or diskspace.is_disk_full(err)):
                raise
            failure = err
        self._agree_saved(failure, tmp, state.step)
        final = os.path.join(self.root, ckpt.step_name(state.step))
        try:
            if self.main:
                ckpt.commit(self.root, state.step, self.cfg.train.keep_last)
        except OSError as err:
            failure = err
        self._agree_saved(failure, tmp, state.step)
        warning = self.budget.saved(time.time() - started)
        if warning and self.main:
            print("\n" + warning, file=sys.stderr, flush=True)  # its own line, after any progress bar
        return final

    def _agree_saved(self, failure: BaseException | None, tmp: str, step: int) -> None:
        """Collective: when any rank failed to write its part, remove the partial checkpoint and raise on every rank
        a :class:`~scaling.training.diskspace.CheckpointWriteError` saying what failed and the space needed."""
        failed = distributed.all_reduce([1.0 if failure is not None else 0.0], "max", self.comm)[0] > 0
        if not failed:
            return
        message = None
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            done = ckpt.list_checkpoints(self.root)
            size = diskspace.dir_size(done[-1][1]) if done else 0
            err = failure if failure is not None else RuntimeError("another rank failed to write its part")
            message = diskspace.describe(err, self.root, step, size, self.cfg.train.keep_last)
            message = f"{message}|{int(diskspace.is_disk_full(err))}"
        message = distributed.broadcast_object(message)
        text, full = message.rsplit("|", 1)
        raise CheckpointWriteError(text, bool(int(full)))

    def save_or_report(self, state: TrainerState, loader, epoch_done: bool, window, final: bool, monitor,
                       total_steps: int) -> str | None:
        """:meth:`save`; a periodic save that fails is reported and training goes on (the next save retries); a
        final one (end of training, preemption, Ctrl-C) raises with the fix. Returns the checkpoint or None."""
        try:
            return self.save(state, loader, epoch_done, window)
        except CheckpointWriteError as err:
            done = ckpt.list_checkpoints(self.root)
            last = f"step {done[-1][0]} ({done[-1][1]})" if done else "none yet"
            fix = ("free space there (or lower train.keep_last; move old runs away)" if err.disk_full
                   else "fix the cause")
            if final:
                raise CheckpointWriteError(
                    f"{err}. {fix[0].upper() + fix[1:]}, then run the same command again: it resumes from the newest "
                    f"checkpoint, {last}, and saves step {state.step} again", err.disk_full) from None
            self.failures.append({"step": state.step, "error": str(err)})
            next_save = (state.step // self.cfg.train.save_every + 1) * self.cfg.train.save_every
            monitor.write(f"WARNING: {err}. Training goes on; the next save (step "
                          f"{min(next_save, total_steps)}) retries; {fix}. Newest checkpoint: {last}")
            return None

    def record_eval(self, ckpt_dir: str, state: TrainerState) -> None:
        """The checkpoint of this step was written before its evaluation: add the metrics and best to its state."""
        if self.main:
            ckpt.update_state(ckpt_dir, {"last_metrics": state.last_metrics, "best": state.best})
        distributed.barrier()

    def save_best(self, state: TrainerState) -> None:
        """``RUN/best/``: the adapter and metrics of ``state.best`` (collective: every rank gathers the weights)."""
        tensors = self.strategy.trainable_state()
        if not self.main:
            return
        best_dir = os.path.join(self.out, "best")
        os.makedirs(best_dir, exist_ok=True)
        ckpt.save_adapter(os.path.join(best_dir, ckpt.ADAPTER), tensors, self.cfg_dict, self.fingerprints,
                          step=state.step, metrics=state.last_metrics, best=state.best)
        scores = {k: v for k, v in state.last_metrics.items() if k != UNSCORABLE}
        ckpt.write_json_atomic(os.path.join(best_dir, "metrics.json"), {
            "step": state.step, **(state.best or {}), "metrics": scores,
            UNSCORABLE: int(state.last_metrics.get(UNSCORABLE) or 0)})
