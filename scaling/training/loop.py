"""The training loop: one code path for a CPU, one GPU, DDP and DeepSpeed ZeRO-2/3.

:func:`train` runs a whole job. :meth:`Trainer.setup` is a list of builders, in the manner of torchtune's
recipes; each one calls the module that owns its part:

1. ``_setup_env``: rank/world size (:mod:`~scaling.training.distributed`), the run's lock, signal handlers, and
   everything checkable before a model loads (:func:`~scaling.training.validate.plan_run`: one error listing
   all problems);
2. ``_setup_run_dir``: refuse to mix runs or to resume what cannot be resumed, write ``config.yaml``
   (:mod:`~scaling.training.rundir`);
3. ``_setup_data``: the tokenizer and the training loader (to know the steps per epoch);
4. ``_setup_model``, ``_setup_optimizer``, ``_setup_strategy``, ``_setup_fused_forward``: the model, AdamW over
   trainable parameters only, the warm-up/cosine schedule, the strategy (torch/DDP or DeepSpeed), then the fused
   frozen-LLM forward and gradient checkpointing;
5. ``_setup_state``, ``_setup_saver``, ``_setup_evaluator``: the :class:`~scaling.training.state.TrainerState`,
   the checkpoint writer (:mod:`~scaling.training.saver`) and the periodic evaluation
   (:mod:`~scaling.training.evaluator`);
6. ``_setup_resume``: resume from ``RUN/checkpoints/latest`` when ``train.resume=auto``
   (:mod:`~scaling.training.resume`: weights, optimizer, schedule, loss scaler, RNG states, the loader's position
   inside the epoch and the open log window; a changed ``train.lr``/``train.max_steps`` re-targets the schedule
   from the next step).

:meth:`Trainer.run` then loops over optimizer steps: ``accumulation`` micro batches (``global_batch /
(micro_batch × world)``), then a clipped step that is skipped (and counted) when the gradient is not finite;
log every ``train.log_every`` steps (:mod:`~scaling.training.window`, :mod:`~scaling.training.monitor`),
checkpoint every ``train.save_every``, then evaluate every ``train.eval_every`` steps (validation loss,
generated samples, and the ``evaluate_fn`` hook; a failing evaluation is reported and training goes on). On
SIGTERM/SIGUSR1 it checkpoints at the next step boundary, writes ``RUN/requeue`` and returns
``train.requeue_exit_code``; at the end it writes ``train_summary.json`` (and ``metrics.json`` when the hook
produced metrics; :mod:`~scaling.training.summary`).

The evaluation hook is ``evaluate_fn(model, step) -> dict``: called on every rank with the
unwrapped :class:`~scaling.models.model.PerceptualLM` in eval mode under ``torch.no_grad()``; it
returns metrics (rank 0's are used). Under ZeRO-3 it must run the same number of forward calls on
every rank. The best adapter by ``eval.metric`` (default CIDEr for captioning, accuracy for QA; a
name containing "loss" is minimised) is kept in ``RUN/best/``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from scaling.common.run_layout import REQUEUE_FILE
from scaling.common.signals import INTERRUPT_EXIT_CODE
from scaling.config import to_dict
from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt
from scaling.training import distributed, ds_config, loaders, recompute, resume, resume_check, rundir, validate
from scaling.training.divergence import DIVERGED_EXIT_CODE, diverged_diagnosis
from scaling.training.evaluator import EvaluateFn, Evaluator
from scaling.training.monitor import FlopCounter, Monitor, gpu_type, peak_memory_gb, read_log, summarize
from scaling.training.runlock import RunLock
from scaling.training.saver import CheckpointSaver
from scaling.training.signals import SignalBudget, StopFlag
from scaling.training.state import TrainerState, TrainResult
from scaling.training.summary import write_summary
from scaling.training.window import LogWindow

__all__ = ["EvaluateFn", "TrainResult", "Trainer", "TrainerState", "read_log", "train"]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log(is_main: bool, message: str) -> None:
    if is_main:
        print(message, file=sys.stderr, flush=True)


class Trainer:
    """Holds one job's objects; :func:`train` is the entry point."""

    def __init__(self, cfg, evaluate_fn: EvaluateFn | None = None, loader_fn: Callable | None = None,
                 on_step: Callable[[int, dict], None] | None = None):
        self.cfg = cfg
        self.evaluate_fn = evaluate_fn
        self.loader_fn = loader_fn or loaders.build
        self.on_step = on_step
        self.started = time.time()
        self.lock: RunLock | None = None

    def release(self) -> None:
        """Give the run directory back (the lock of rank 0)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        self.cfg = resume.keep_checkpoint_format(self.cfg)
        self._setup_env()
        self._setup_run_dir()
        self._setup_data()
        self._setup_model()
        self._setup_strategy(self._setup_optimizer())
        self._setup_fused_forward()
        self._setup_state()
        self.saver = self._setup_saver()
        self.evaluator = self._setup_evaluator()
        self._setup_resume()
        self._log_setup()

    def _setup_env(self) -> None:
        """Rank/world size, the run's lock, signal handlers, the plan (validated before any model) and the process
        group."""
        t = self.cfg.train
        try:
            env = distributed.read_env()
        except Exception:
            rundir.remove_requeue_marker(t.output_dir)
            raise
        # one job per run directory (rank 0 holds RUN/lock): a second live job stops here, before writing anything
        if env.is_main:
            self.lock = RunLock(t.output_dir, warn=lambda msg: _log(True, f"WARNING: {msg}")).acquire()
        # first of all: a requeue marker left by an earlier job must not survive this job's start, or a job
        # failing below (config error, rendezvous) would be requeued forever
        rundir.remove_requeue_marker(t.output_dir)
        # DeepSpeed 0.19 calls collectives torch 2.13 deprecates, once per call: keep the logs readable
        warnings.filterwarnings("ignore", message=r".*`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
                                category=FutureWarning)
        self.env = env
        self.device = distributed.pick_device(self.env, t.device)
        self.plan = validate.plan_run(self.cfg, self.env.world_size, self.device.type)
        self.main = self.env.is_main
        self.stop = StopFlag().install()
        self.budget = SignalBudget(t.signal_budget)  # step + save time against the time a preemption leaves
        distributed.init(self.env, self.device, deepspeed=self.plan.deepspeed is not None, backend=t.dist_backend)
        if distributed.world_size() != self.env.world_size:
            raise RuntimeError(f"process group has {distributed.world_size()} ranks, the environment says {self.env.world_size}")
        # NCCL reduces CUDA tensors only; gloo takes CPU tensors
        self.comm = self.device if (self.device.type == "cuda" and distributed.is_initialized()) else torch.device("cpu")
        for note in self.plan.notes:
            _log(self.main, f"note: {note}")

    def _setup_run_dir(self) -> None:
        """Refuse to mix runs or to resume a checkpoint this job cannot (other world size or strategy): now, before
        the model, the DeepSpeed op build and before ``config.yaml`` is overwritten."""
        self.out = self.cfg.train.output_dir
        self.root = ckpt.checkpoints_dir(self.out)
        self.cfg_dict = to_dict(self.cfg)
        rundir.refuse_earlier_run(self.cfg)
        problem = distributed.broadcast_object(resume_check.resume_problem(self.cfg, self.plan) if self.main else None)
        if problem:
            raise ConfigError(problem)
        rundir.prepare(self.out, self.cfg_dict, self.main)
        distributed.barrier()

    def _setup_data(self) -> None:
        """The tokenizer and epoch 0's training loader: the steps per epoch and the total steps."""
        cfg, t = self.cfg, self.cfg.train
        self.tokenizer = loaders.load_tokenizer(cfg.model.llm, cfg.model.trust_remote_code)
        self.accum = self.plan.accumulation
        first = self.loader_fn(cfg, self.tokenizer, "train", self.env.rank, self.env.world_size, True, epoch=0)
        self.steps_per_epoch = len(first) // self.accum
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the training split gives {len(first)} micro batches per rank per epoch, fewer than the {self.accum} "
                f"needed for one optimizer step (global batch {t.global_batch}); lower train.global_batch or add data"
            )
        self._first_loader = first
        self.total_steps = t.max_steps or max(1, math.ceil(t.epochs * self.steps_per_epoch))

    def _setup_model(self) -> None:
        """The model, unfused: fingerprints see the weights as loaded, and the strategy (DeepSpeed broadcasts every
        parameter at initialisation) sees no FP8 tensors; the fused forward is installed after the strategy."""
        from scaling.models.builder import build_model, parameter_table
        from scaling.training.fingerprint import model_fingerprints

        t = self.cfg.train
        _seed_all(t.seed)  # identical trainable initialisation on every rank
        self.model = build_model(self.cfg.model, self.device, fuse=False)
        self.model.configure_loss(t.loss_reduction, t.loss_weight)
        self.fingerprints = model_fingerprints(self.model)
        if self.main:
            table = parameter_table(self.model)
            rows = ", ".join(f"{k} {tr:,} trainable / {fr:,} frozen" for k, (tr, fr) in table.items())
            _log(True, f"model: {rows}")

    def _setup_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over exactly the trainable parameters."""
        from scaling.training.optim import build_optimizer

        t, ds = self.cfg.train, self.plan.deepspeed
        named = self.model.trainable_named_parameters()
        offload = bool(ds) and ds_config.offloads_optimizer(ds)
        fused_adamw = self.device.type == "cuda" and ds is None  # ZeRO flattens it itself
        optimizer = build_optimizer(named, t.lr, t.weight_decay, t.decay_1d, eps=t.adam_eps, cpu_offload=offload,
                                    fused=fused_adamw, overrides=t.param_groups)
        in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        assert in_opt == {id(p) for _, p in named}, "the optimizer must hold exactly the trainable parameters"
        return optimizer

    def _setup_strategy(self, optimizer: torch.optim.Optimizer) -> None:
        """The warm-up/cosine schedule and the strategy: torch/DDP, or DeepSpeed when ``train.deepspeed`` is set."""
        from scaling.training.schedule import build_scheduler

        t = self.cfg.train

        def scheduler_fn(opt):
            return build_scheduler(opt, self.total_steps, t.warmup_fraction, t.min_lr_ratio, self.accum, t.schedule_unit)

        if self.plan.deepspeed is not None:
            from scaling.training.strategy import DeepSpeedStrategy

            self.strategy = DeepSpeedStrategy(self.model, optimizer, scheduler_fn, self.plan.deepspeed, self.plan.precision, self.device)
        else:
            from scaling.training.strategy import AccelerateStrategy

            self.strategy = AccelerateStrategy(self.model, optimizer, scheduler_fn(optimizer), self.plan.precision,
                                               self.device, self.env.world_size, t.clip)

    def _setup_fused_forward(self) -> None:
        """The fused frozen-LLM forward (not under ZeRO-3: it partitions the frozen weights itself), then gradient
        checkpointing (it wraps the layers' fused forward)."""
        from scaling.models.builder import fuse_llm

        zero3 = self.plan.deepspeed is not None and ds_config.zero_stage(self.plan.deepspeed) == 3
        self.fused = (fuse_llm(self.model, self.cfg.model, self.device) if not zero3 else None) or {}
        if self.cfg.train.gradient_checkpointing:
            recompute.enable(self.model)

    def _setup_state(self) -> None:
        """A fresh :class:`TrainerState`, this rank's ``ranks/`` file, then per-rank random streams (dropout)."""
        t = self.cfg.train
        self.state = TrainerState(
            total_steps=self.total_steps, world_size=self.env.world_size, accumulation=self.accum,
            micro_batch=t.micro_batch, strategy=self.strategy.kind, zero_stage=self.strategy.zero_stage, precision=self.plan.precision,
        )
        rundir.write_rank_file(self.out, self.env, self.device, self.model, self.strategy, self.accum, self.fused)
        _seed_all(t.seed * 1000 + self.env.rank)  # per-rank streams (dropout) from here on

    def _setup_saver(self) -> CheckpointSaver:
        return CheckpointSaver(self.cfg, self.cfg_dict, self.env, self.strategy, self.fingerprints, self.budget,
                               self.comm, self.started)

    def _setup_evaluator(self) -> Evaluator:
        return Evaluator(self.cfg, self.env, self.model, self.strategy, self.tokenizer, self.loader_fn,
                         self.evaluate_fn, self.comm, on_best=lambda: self.saver.save_best(self.state))

    def _setup_resume(self) -> None:
        """Restore ``RUN/checkpoints/latest`` when ``train.resume=auto`` (see :mod:`scaling.training.resume`)."""
        self.data_state = None  # the loader's position inside the epoch
        self.window_state = None  # the log window's sums at the checkpoint (steps since the last log line)
        found = resume.resume(self.cfg, self.env, self.strategy, self.fingerprints, self.accum, self.total_steps,
                              log=lambda msg: _log(self.main, msg), comm=self.comm)
        self.resumed_from = found.path if found else None
        if found:
            self.state, self.data_state, self.window_state = found.state, found.data_state, found.window_state

    def _log_setup(self) -> None:
        t = self.cfg.train
        self.gpu, self.peak = gpu_type(self.device)
        _log(self.main, (
            f"world {self.env.world_size} ({self.env.source}), device {self.device} ({self.gpu}), "
            f"strategy {self.strategy.kind}{f' ZeRO-{self.strategy.zero_stage}' if self.strategy.kind == 'deepspeed' else ''}, "
            f"precision {self.plan.precision}, micro batch {t.micro_batch} × accumulation {self.accum} × {self.env.world_size} "
            f"= {t.global_batch}; {self.steps_per_epoch} steps/epoch, {self.total_steps} steps"
            + (f"; resumed from {self.resumed_from} (step {self.state.step})" if self.resumed_from else "")
        ))

    # ------------------------------------------------------------------ checkpoints
    def _save(self, loader, epoch_done: bool, window: LogWindow | None, final: bool) -> str | None:
        """Checkpoint the current step (collective): the window's samples/tokens are added to the state's counters
        first (exact at every checkpoint) and its sums saved per rank, so that a resumed run logs the same values as
        an uninterrupted one. A periodic save that fails is reported and training goes on; a final one raises."""
        if window is not None:
            self._count_seen(window)
        return self.saver.save_or_report(self.state, loader, epoch_done, window, final, self.monitor, self.total_steps)

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        cfg, t, st = self.cfg, self.cfg.train, self.state
        self.monitor = Monitor(self.out, self.main, self.total_steps, st.step, t.tensorboard, t.progress_bar)
        flops = FlopCounter(self.model)
        self.strategy.train(True)
        comm = self.comm
        window = LogWindow.from_state(self.window_state)
        self.window_state = None
        preempted = False
        diverged = None  # the diagnosis when too many steps in a row were skipped for non-finite gradients
        skipped_in_a_row = 0
        last_saved = st.step if self.resumed_from else None
        t0 = time.time()
        try:
            while st.step < self.total_steps:
                if st.epoch == 0 and self._first_loader is not None:
                    loader = self._first_loader
                else:
                    loader = self.loader_fn(cfg, self.tokenizer, "train", self.env.rank, self.env.world_size, True, epoch=st.epoch)
                self._first_loader = None
                if self.data_state is not None:
                    loader.load_state_dict(self.data_state)
                    self.data_state = None
                steps_this_epoch = len(loader) // self.accum
                self._loader = loader
                if steps_this_epoch < 1:
                    raise RuntimeError(f"epoch {st.epoch} of the training loader has {len(loader)} batches, fewer than one "
                                       f"optimizer step ({self.accum} micro batches)")
                batches = iter(loader)
                while st.step_in_epoch < steps_this_epoch and st.step < self.total_steps:
                    if self.stop.agreed(comm):
                        preempted = True
                        break
                    step_started = time.time()
                    for micro in range(self.accum):
                        batch = next(batches, None)
                        if batch is None:
                            raise RuntimeError(
                                f"the training loader ran out of batches in epoch {st.epoch} at micro batch {micro + 1} of "
                                f"optimizer step {st.step + 1} ({st.step_in_epoch} of {steps_this_epoch} steps of the epoch "
                                f"done, {len(loader)} micro batches per epoch by len()): its position does not match the "
                                f"trainer's step count (a loader whose len() is wrong, or a checkpoint resumed with another "
                                f"batch geometry). Resume with the train.micro_batch/train.global_batch it was written with, "
                                f"or start afresh in another train.output_dir"
                            )
                        boundary = micro == self.accum - 1
                        with self.strategy.no_sync(boundary):
                            out = self.strategy.forward(self.strategy.to_device(batch))
                            self.strategy.backward(out["loss"], self.accum, boundary)
                        window.add_micro(out, batch)
                    window.lr = self.strategy.lr()  # the rate this step applies
                    info = self.strategy.step()
                    self.budget.step(time.time() - step_started)
                    st.step += 1
                    st.step_in_epoch += 1
                    st.skipped_steps += 0 if info.applied else 1
                    skipped_in_a_row = 0 if info.applied else skipped_in_a_row + 1
                    window.add_step(info)
                    window.add_flops(flops)
                    if st.step % t.log_every == 0 or st.step == self.total_steps:
                        self._log_window(window, comm)
                        window = LogWindow()
                    epoch_done = st.step_in_epoch >= steps_this_epoch
                    # save first: an evaluation that fails (or a job killed while evaluating) loses no step
                    saved_dir = None
                    if st.step % t.save_every == 0 or st.step == self.total_steps:
                        saved_dir = self._save(loader, epoch_done, window, final=st.step == self.total_steps)
                        last_saved = st.step if saved_dir else last_saved
                    if t.eval_every != 0 and (  # 0 = off; None = at the end only
                            (t.eval_every and st.step % t.eval_every == 0) or st.step == self.total_steps):
                        if self.evaluator.evaluate_reporting_failure(st, self.monitor, saved_dir) and saved_dir is not None:
                            self.saver.record_eval(saved_dir, st)
                    self.monitor.advance()
                    if self.on_step is not None:
                        self.on_step(st.step, {"loss": st.last_loss, "applied": info.applied})
                    if t.max_skipped_in_a_row and skipped_in_a_row >= t.max_skipped_in_a_row:
                        diverged = diverged_diagnosis(skipped_in_a_row, st, t, self.strategy.lr())
                        break
                if preempted or diverged:
                    break
                if st.step_in_epoch >= steps_this_epoch:
                    self._count_skipped(comm)  # the epoch's final count
                    st.epoch += 1
                    st.step_in_epoch = 0
            interrupted = preempted and self.stop.interrupted_agreed
            if diverged:
                if not (st.step % t.log_every == 0 or st.step == self.total_steps):  # (collective: same on all ranks)
                    self._log_window(window, comm)  # the steps since the last log line
                self.monitor.write(f"ERROR: {diverged}")
                code = DIVERGED_EXIT_CODE
            elif interrupted:
                if st.step > 0 and last_saved != st.step:
                    self.monitor.write(f"Ctrl-C: checkpointing step {st.step}")
                    self._save(loader, st.step_in_epoch >= steps_this_epoch, window, final=True)
                code = INTERRUPT_EXIT_CODE
            elif preempted:
                self.monitor.write(f"preemption signal ({self.stop.name or 'on another rank'}): checkpointing step {st.step}")
                if last_saved != st.step:
                    self._save(loader, st.step_in_epoch >= steps_this_epoch, window, final=True)
                if self.main:
                    ckpt.write_text_atomic(os.path.join(self.out, REQUEUE_FILE), f"{st.step}\n")
                if self.stop.received_at is not None:  # this rank got the signal: how much of the budget it took
                    _log(True, f"rank {self.env.rank}: preemption checkpoint of step {st.step} written "
                               f"{time.time() - self.stop.received_at:.1f} s after the signal "
                               f"(train.signal_budget {t.signal_budget:g} s)")
                code = t.requeue_exit_code
            else:
                code = 0
        finally:
            flops.close()
            self.monitor.close()
            self.stop.uninstall()
        st.train_seconds += time.time() - self.started
        summary = self._write_summary(preempted, time.time() - t0)
        if diverged and summary is not None:
            summary.update(finished=False, stopped=diverged)
            ckpt.write_json_atomic(os.path.join(self.out, "train_summary.json"), summary)
        latest = ckpt.list_checkpoints(self.root)
        return TrainResult(code, st, self.out, preempted, interrupted, latest[-1][1] if latest else None, summary)

    def _skipped_local(self) -> float:
        """Distinct bad samples this rank's training loader skipped in the current epoch (0 for loaders without it)."""
        return float(getattr(getattr(self, "_loader", None), "skipped_in_epoch", 0) or 0)

    def _count_skipped(self, comm) -> None:
        """Collective: the current epoch's distinct skipped samples over all ranks into the state."""
        total = distributed.all_reduce([self._skipped_local()], "sum", comm)[0]
        self.state.skipped_samples[str(self.state.epoch)] = int(round(total))

    def _count_seen(self, w: LogWindow, sums: list[float] | None = None) -> None:
        """Add the window's samples/tokens not counted yet to the state (collective unless ``sums`` are given)."""
        if sums is None:
            sums = distributed.all_reduce(list(w.uncounted()), "sum", self.comm)
        self.state.samples_seen += int(round(sums[0]))
        self.state.tokens_seen += int(round(sums[1]))
        w.mark_counted()

    def _log_window(self, w: LogWindow, comm) -> None:
        st = self.state
        sums = distributed.all_reduce(
            [w.loss_sum, w.loss_count, w.nonfinite, w.samples, w.targets, w.tokens, w.flops, self._skipped_local(),
             *w.uncounted()], "sum", comm,
        )
        loss_sum, loss_count, nonfinite, samples, targets, tokens, total_flops, skipped = sums[:8]
        self._count_seen(w, sums[8:])
        st.skipped_samples[str(st.epoch)] = int(round(skipped))
        dt = max(1e-9, time.time() - w.start)
        loss = loss_sum / loss_count if loss_count else None
        st.last_loss = loss
        values = {
            "loss": loss,
            "lr": w.lr,
            "grad_norm": w.grad_norm_mean(),
            "loss_scale": w.loss_scale,
            "skipped_steps": float(st.skipped_steps),
            "nonfinite_losses": nonfinite,
            "data/skipped_samples": skipped,  # distinct bad samples skipped so far in this epoch, all ranks
            "epoch": st.epoch + st.step_in_epoch / max(1, self.steps_per_epoch),
            "perf/samples_per_s": samples / dt,
            "perf/tokens_per_s": tokens / dt,
            "perf/targets_per_s": targets / dt,
            "perf/mfu": (total_flops / dt / (self.peak * 1e12 * self.env.world_size)) if self.peak else None,
            "perf/tflops_per_gpu": total_flops / dt / 1e12 / self.env.world_size,
            "perf/peak_mem_gb": peak_memory_gb(self.device),
        }
        self.monitor.scalars(st.step, values)
        if not self.cfg.train.progress_bar:
            self.monitor.write(f"step {st.step}/{self.total_steps} | " + summarize({k: v for k, v in values.items() if "/" not in k}))

    def _write_summary(self, preempted: bool, loop_seconds: float) -> dict | None:
        if not self.main:
            return None
        return write_summary(
            self.cfg, self.state, gpu=self.gpu, n_gpus=self.env.world_size if self.device.type == "cuda" else 0,
            world_size=self.env.world_size, preempted=preempted, loop_seconds=loop_seconds, budget=self.budget,
            eval_failures=self.evaluator.failures, save_failures=self.saver.failures, hook=self.evaluate_fn is not None,
        )


def train(cfg, evaluate_fn: EvaluateFn | None = None, loader_fn: Callable | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Run (or resume) the training job described by ``cfg`` (see the module docstring)."""
    trainer = Trainer(cfg, evaluate_fn, loader_fn, on_step)
    try:
        trainer.setup()
        return trainer.run()
    finally:
        trainer.release()
