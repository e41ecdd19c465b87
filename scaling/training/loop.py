"""The training loop: one code path for a CPU, one GPU, DDP and DeepSpeed ZeRO-2/3.

:func:`train` runs a whole job:

1. read the rank/world size (:mod:`~scaling.training.distributed`), validate everything before
   loading a model (:func:`~scaling.training.validate.plan_run`: one error listing all problems);
2. build the data loader (to know the steps per epoch), the model, the AdamW over trainable
   parameters only, the warm-up/cosine schedule and the strategy (torch/DDP or DeepSpeed);
3. resume from ``RUN/checkpoints/latest`` when ``train.resume=auto`` (exactly: weights, optimizer,
   schedule, loss scaler, RNG states, the loader's position inside the epoch and the open log window;
   a changed ``train.lr``/``train.max_steps`` re-targets the schedule from the next step);
4. loop over optimizer steps: ``accumulation`` micro batches (``global_batch / (micro_batch ×
   world)``), then a clipped step that is skipped (and counted) when the gradient is not finite;
   log every ``train.log_every`` steps, checkpoint every ``train.save_every``, then evaluate every
   ``train.eval_every`` steps (validation loss, generated samples, and the ``evaluate_fn`` hook; a
   failing evaluation is reported and training goes on);
5. on SIGTERM/SIGUSR1, checkpoint at the next step boundary, write ``RUN/requeue`` and return
   ``train.requeue_exit_code``; at the end write ``train_summary.json`` (and ``metrics.json`` when
   the hook produced metrics).

The evaluation hook is ``evaluate_fn(model, step) -> dict``: called on every rank with the
unwrapped :class:`~scaling.models.model.PerceptualLM` in eval mode under ``torch.no_grad()``; it
returns metrics (rank 0's are used). Under ZeRO-3 it must run the same number of forward calls on
every rank. The best adapter by ``eval.metric`` (default CIDEr for captioning, accuracy for QA; a
name containing "loss" is minimised) is kept in ``RUN/best/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import yaml

from scaling.config import to_dict
from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt
from scaling.training import diskspace, distributed, ds_config, loaders, recompute, resume_check, validate
from scaling.training.diskspace import CheckpointWriteError
from scaling.training.monitor import FlopCounter, Monitor, gpu_type, peak_memory_gb, summarize
from scaling.training.runlock import RunLock
from scaling.training.signals import INTERRUPT_EXIT_CODE, REQUEUE_FILE, SignalBudget, StopFlag

EvaluateFn = Callable[[Any, int], dict]
MEDIA_KEYS = ("pixel_values", "video", "audio")


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


@dataclasses.dataclass
class TrainResult:
    exit_code: int
    state: TrainerState
    output_dir: str
    preempted: bool = False  # stopped by a signal (preemption or Ctrl-C) and checkpointed
    interrupted: bool = False  # ... and that signal was Ctrl-C (exit 130, no requeue marker)
    checkpoint: str | None = None  # the newest checkpoint of the run when it stopped
    summary: dict | None = None  # train_summary.json (rank 0)


def default_metric(cfg) -> str:
    return cfg.eval.metric or ("CIDEr" if cfg.data.task == "caption" else "accuracy")


def _better(name: str, value: float, best: dict | None) -> bool:
    if best is None or best.get("value") is None:
        return True
    return value < best["value"] if "loss" in name.lower() else value > best["value"]


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
        cfg, t = self.cfg, self.cfg.train
        try:
            env = distributed.read_env()
        except Exception:
            _remove_requeue_marker(t.output_dir)
            raise
        # one job per run directory (rank 0 holds RUN/lock): a second live job stops here, before writing anything
        if env.is_main:
            self.lock = RunLock(t.output_dir, warn=lambda msg: _log(True, f"WARNING: {msg}")).acquire()
        # first of all: a requeue marker left by an earlier job must not survive this job's start, or a job
        # failing below (config error, rendezvous) would be requeued forever
        _remove_requeue_marker(t.output_dir)
        # DeepSpeed 0.19 calls collectives torch 2.13 deprecates, once per call: keep the logs readable
        warnings.filterwarnings("ignore", message=r".*`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
                                category=FutureWarning)
        self.env = env
        self.device = distributed.pick_device(self.env, t.device)
        self.plan = validate.plan_run(cfg, self.env.world_size, self.device.type)
        self.main = self.env.is_main
        self.stop = StopFlag().install()
        self.budget = SignalBudget(t.signal_budget)  # step + save time against the time a preemption leaves
        distributed.init(self.env, self.device, deepspeed=self.plan.deepspeed is not None, backend=t.dist_backend)
        if distributed.world_size() != self.env.world_size:
            raise RuntimeError(f"process group has {distributed.world_size()} ranks, the environment says {self.env.world_size}")
        for note in self.plan.notes:
            _log(self.main, f"note: {note}")
        self.out = t.output_dir
        self.root = ckpt.checkpoints_dir(self.out)
        self.cfg_dict = to_dict(cfg)
        earlier = ckpt.list_checkpoints(self.root) if t.resume == "never" else []
        if earlier:
            raise ConfigError(
                f"{self.root} holds checkpoints of an earlier run ({os.path.basename(earlier[-1][1])} the newest) and "
                f"train.resume=never starts afresh: the two runs' checkpoints would mix (pruning keeps the highest "
                f"steps, a later resume could pick the old run's). Use another train.output_dir, move or delete "
                f"{self.root}, or resume it with train.resume=auto"
            )
        # a checkpoint this job cannot resume (other world size or strategy) fails now, before the model, the
        # DeepSpeed op build and before config.yaml is overwritten
        problem = distributed.broadcast_object(resume_check.resume_problem(cfg, self.plan) if self.main else None)
        if problem:
            raise ConfigError(problem)
        if self.main:
            os.makedirs(self.root, exist_ok=True)
            ckpt.clean_partial(self.root)
            with open(os.path.join(self.out, "config.yaml"), "w") as fh:
                yaml.safe_dump(self.cfg_dict, fh, sort_keys=False)
        distributed.barrier()

        self.tokenizer = loaders.load_tokenizer(cfg.model.llm)
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

        from scaling.models.builder import build_model, fuse_llm, parameter_table
        from scaling.training.fingerprint import model_fingerprints
        from scaling.training.optim import build_optimizer
        from scaling.training.schedule import build_scheduler

        _seed_all(t.seed)  # identical trainable initialisation on every rank
        zero3 = self.plan.deepspeed is not None and ds_config.zero_stage(self.plan.deepspeed) == 3
        # unfused first: fingerprints see the weights as loaded, and the strategy (DeepSpeed broadcasts every
        # parameter at initialisation) sees no FP8 tensors; the fused forward is installed after it, below
        self.model = build_model(cfg.model, self.device, fuse=False)
        self.model.configure_loss(t.loss_reduction, t.loss_weight)
        self.fingerprints = model_fingerprints(self.model)
        if self.main:
            table = parameter_table(self.model)
            rows = ", ".join(f"{k} {tr:,} trainable / {fr:,} frozen" for k, (tr, fr) in table.items())
            _log(True, f"model: {rows}")
        named = self.model.trainable_named_parameters()
        offload = bool(self.plan.deepspeed) and _offloads(self.plan.deepspeed)
        fused_adamw = self.device.type == "cuda" and self.plan.deepspeed is None  # ZeRO flattens it itself
        optimizer = build_optimizer(named, t.lr, t.weight_decay, t.decay_1d, eps=t.adam_eps, cpu_offload=offload,
                                    fused=fused_adamw, overrides=t.param_groups)
        in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        assert in_opt == {id(p) for _, p in named}, "the optimizer must hold exactly the trainable parameters"

        def scheduler_fn(opt):
            return build_scheduler(opt, self.total_steps, t.warmup_fraction, t.min_lr_ratio, self.accum, t.schedule_unit)

        if self.plan.deepspeed is not None:
            from scaling.training.strategy import DeepSpeedStrategy

            self.strategy = DeepSpeedStrategy(self.model, optimizer, scheduler_fn, self.plan.deepspeed, self.plan.precision, self.device)
        else:
            from scaling.training.strategy import AccelerateStrategy

            self.strategy = AccelerateStrategy(self.model, optimizer, scheduler_fn(optimizer), self.plan.precision,
                                          self.device, self.env.world_size, t.clip)
        # ZeRO-3 partitions the frozen weights itself: no fused forward there
        self.fused = (fuse_llm(self.model, cfg.model, self.device) if not zero3 else None) or {}
        if t.gradient_checkpointing:
            recompute.enable(self.model)  # after fusing: it wraps the layers' (fused) forward
        self.state = TrainerState(
            total_steps=self.total_steps, world_size=self.env.world_size, accumulation=self.accum,
            micro_batch=t.micro_batch, strategy=self.strategy.kind, zero_stage=self.strategy.zero_stage, precision=self.plan.precision,
        )
        self._write_rank_file()
        _seed_all(t.seed * 1000 + self.env.rank)  # per-rank streams (dropout) from here on
        self.data_state = None
        self.eval_failures: list[dict] = []  # {"step", "error"} of this job's failed evaluations
        self.save_failures: list[dict] = []  # {"step", "error"} of this job's periodic saves that failed
        self.window_state = None  # the log window's sums at the checkpoint (steps since the last log line)
        self.resumed_from = self._maybe_resume()
        self.gpu, self.peak = gpu_type(self.device)
        _log(self.main, (
            f"world {self.env.world_size} ({self.env.source}), device {self.device} ({self.gpu}), "
            f"strategy {self.strategy.kind}{f' ZeRO-{self.strategy.zero_stage}' if self.strategy.kind == 'deepspeed' else ''}, "
            f"precision {self.plan.precision}, micro batch {t.micro_batch} × accumulation {self.accum} × {self.env.world_size} "
            f"= {t.global_batch}; {self.steps_per_epoch} steps/epoch, {self.total_steps} steps"
            + (f"; resumed from {self.resumed_from} (step {self.state.step})" if self.resumed_from else "")
        ))

    def _write_rank_file(self) -> None:
        """``RUN/ranks/rankNNNNN.json``: who this process was (debugging multi-node jobs; read by the tests)."""
        local = total = 0
        for _, p in self.model.named_parameters():
            if not p.requires_grad:
                total += getattr(p, "ds_numel", p.numel())
                local += p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
        info = {
            "rank": self.env.rank, "world_size": self.env.world_size, "local_rank": self.env.local_rank,
            "launcher_env": self.env.source, "process_group_size": distributed.world_size(),
            "process_group_rank": distributed.rank(), "host": os.uname().nodename, "pid": os.getpid(),
            # how the launcher reached this node: SLURM's node name, the SSH connection of a hostfile launcher
            "slurm_node": os.environ.get("SLURMD_NODENAME"), "ssh_connection": os.environ.get("SSH_CONNECTION"),
            "device": str(self.device), "strategy": self.strategy.kind, "zero_stage": self.strategy.zero_stage,
            "frozen_params_total": total, "frozen_params_local": local, "accumulation": self.accum,
            "fused_llm_layers": self.fused.get("fused_layers", 0), "fp8_llm_layers": self.fused.get("fp8_layers", 0),
            # rotary frequencies must stay fp32 under bf16/fp16 training (DeepSpeed < 0.19.2 cast every buffer)
            "inv_freq_dtypes": sorted({str(b.dtype) for n, b in self.model.named_buffers() if n.endswith("inv_freq")}),
        }
        os.makedirs(os.path.join(self.out, "ranks"), exist_ok=True)
        ckpt.write_json_atomic(os.path.join(self.out, "ranks", f"rank{self.env.rank:05d}.json"), info)

    def _maybe_resume(self) -> str | None:
        if self.cfg.train.resume != "auto":
            return None
        # rank 0 verifies every rank's files against the checkpoint's manifest and falls back past damaged ones
        found = ckpt.find_resumable(self.out, lambda msg: _log(True, f"WARNING: {msg}")) if self.main else (None, None)
        found, error = distributed.broadcast_object(found)
        if error:
            raise ConfigError(error)
        if found is None:
            return None
        saved = ckpt.read_json(os.path.join(found, ckpt.STATE))
        problem = resume_check.compatibility_problem(found, saved, self.env.world_size, self.strategy.kind,
                                                     self.strategy.zero_stage)
        if problem:
            raise ConfigError(problem)
        self._check_batch_geometry(found, saved)
        # the same refusal as loading the adapter: the trainable weights only mean something on these backbones
        adapter_meta = ckpt.read_adapter_meta(os.path.join(found, ckpt.ADAPTER))
        ckpt.check_backbones(os.path.join(found, ckpt.ADAPTER), adapter_meta, self.fingerprints, self.cfg.model)
        self.strategy.load(found)
        t = self.cfg.train
        known = {f.name for f in dataclasses.fields(TrainerState)}
        self.state = TrainerState(**{k: v for k, v in saved.items() if k in known})
        self.state.accumulation, self.state.micro_batch = self.accum, t.micro_batch
        if self.state.total_steps != self.total_steps:
            _log(self.main, f"note: total steps changed from {self.state.total_steps} to {self.total_steps} "
                            f"(the schedule follows the new total from step {self.state.step + 1})")
            self.state.total_steps = self.total_steps
        # the checkpoint restores the old peak rate and the rate of the next step from the old schedule: apply
        # this job's train.lr and schedule (total steps, warm-up, minimum) from the very next step
        from scaling.training.optim import group_peak_lr

        old_lr = self.strategy.restart_schedule(t.lr, lambda name: group_peak_lr(name, t.lr, t.param_groups))
        if not math.isclose(old_lr, t.lr, rel_tol=1e-9, abs_tol=0.0):
            _log(self.main, f"note: train.lr changed from {old_lr:g} to {t.lr:g} (the schedule follows the new peak "
                            f"rate from step {self.state.step + 1}: lr {self.strategy.lr():.6g})")
        rng, self.data_state = ckpt.read_rank_files(found, self.env.rank)
        self.window_state = ckpt.read_window(found, self.env.rank)
        ckpt.set_rng_state(rng)
        return found

    def _check_batch_geometry(self, found: str, saved: dict) -> None:
        """Refuse a mid-epoch resume with another micro batch or accumulation (the data position would be wrong).

        ``step_in_epoch`` counts optimizer steps of ``accumulation`` micro batches and the loader's position counts
        micro batches of the saved size: with other sizes the rest of the epoch cannot be replayed exactly. At an
        epoch boundary (``step_in_epoch`` 0, no position saved) the next epoch simply starts with the new sizes.
        """
        t = self.cfg.train
        accum = int(saved.get("accumulation") or 1)
        micro = saved.get("micro_batch")
        if micro is None:  # checkpoints written before trainer_state.json recorded it: the adapter's config has it
            micro = _adapter_micro_batch(found)
        changed = accum != self.accum or (micro is not None and int(micro) != t.micro_batch)
        if not changed:
            return
        world = self.env.world_size
        old = f"micro batch {micro} × accumulation {accum} × {world} rank(s) = train.global_batch {micro * accum * world}" \
            if micro is not None else f"accumulation {accum}"
        new = f"micro batch {t.micro_batch} × accumulation {self.accum} × {world} rank(s) = train.global_batch {t.global_batch}"
        if not saved.get("step_in_epoch"):
            _log(self.main, f"note: the batch geometry changed at an epoch boundary, from {old} to {new}")
            return
        keep = f"train.micro_batch={micro} train.global_batch={micro * accum * world}" if micro is not None \
            else f"the train.micro_batch and train.global_batch it was written with (accumulation {accum})"
        raise ConfigError(
            f"{found} stopped inside an epoch with {old}; this job has {new}. Its position in the epoch counts "
            f"batches of the old sizes, so it cannot be resumed exactly with other ones. Resume with {keep}, or "
            f"start afresh in another train.output_dir"
        )

    # ------------------------------------------------------------------ checkpoints
    def save(self, loader, step_in_epoch_done: bool, window: _Window | None = None) -> str:
        """Write a checkpoint of the current step (collective).

        ``window``: the log window (steps since the last log line). Its samples/tokens are added to the state's
        counters first (exact at every checkpoint) and its sums are saved per rank, so that a resumed run logs the
        same values as an uninterrupted one.
        """
        st = self.state
        started = time.time()
        if window is not None:
            self._count_seen(window)
        tmp = os.path.join(self.root, ckpt.step_name(st.step) + ".tmp")
        failure = None
        try:
            if self.main:
                ckpt.begin(self.root, st.step)
        except OSError as err:
            failure = err
        self._agree_saved(failure, tmp)
        tensors = self.strategy.trainable_state()
        try:
            if self.main:
                ckpt.save_adapter(os.path.join(tmp, ckpt.ADAPTER), tensors, self.cfg_dict, self.fingerprints,
                                  step=st.step, metrics=st.last_metrics)
            self.strategy.save(tmp, self.main)
            saved = dataclasses.replace(st, train_seconds=st.train_seconds + (time.time() - self.started))
            if step_in_epoch_done:  # the epoch is finished: resume at the start of the next one
                saved.epoch, saved.step_in_epoch = st.epoch + 1, 0
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
        self._agree_saved(failure, tmp)
        final = os.path.join(self.root, ckpt.step_name(st.step))
        try:
            if self.main:
                ckpt.commit(self.root, st.step, self.cfg.train.keep_last)
        except OSError as err:
            failure = err
        self._agree_saved(failure, tmp)
        warning = self.budget.saved(time.time() - started)
        if warning:
            _log(self.main, warning)
        return final

    def _agree_saved(self, failure: BaseException | None, tmp: str) -> None:
        """Collective: when any rank failed to write its part, remove the partial checkpoint and raise on every rank
        a :class:`~scaling.training.diskspace.CheckpointWriteError` saying what failed and the space needed."""
        failed = distributed.all_reduce([1.0 if failure is not None else 0.0], "max", self._comm_device())[0] > 0
        if not failed:
            return
        message = None
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            done = ckpt.list_checkpoints(self.root)
            size = diskspace.dir_size(done[-1][1]) if done else 0
            err = failure if failure is not None else RuntimeError("another rank failed to write its part")
            message = diskspace.describe(err, self.root, self.state.step, size, self.cfg.train.keep_last)
            message = f"{message}|{int(diskspace.is_disk_full(err))}"
        message = distributed.broadcast_object(message)
        text, full = message.rsplit("|", 1)
        raise CheckpointWriteError(text, bool(int(full)))

    def _save_or_report(self, loader, epoch_done: bool, window, final: bool) -> str | None:
        """:meth:`save`; a periodic save that fails is reported and training goes on (the next save retries); a
        final one (end of training, preemption, Ctrl-C) raises with the fix. Returns the checkpoint or None."""
        try:
            return self.save(loader, epoch_done, window)
        except CheckpointWriteError as err:
            done = ckpt.list_checkpoints(self.root)
            last = f"step {done[-1][0]} ({done[-1][1]})" if done else "none yet"
            fix = ("free space there (or lower train.keep_last; move old runs away)" if err.disk_full
                   else "fix the cause")
            if final:
                raise CheckpointWriteError(
                    f"{err}. {fix[0].upper() + fix[1:]}, then run the same command again: it resumes from the newest "
                    f"checkpoint, {last}, and saves step {self.state.step} again", err.disk_full) from None
            self.save_failures.append({"step": self.state.step, "error": str(err)})
            next_save = (self.state.step // self.cfg.train.save_every + 1) * self.cfg.train.save_every
            self.monitor.write(f"WARNING: {err}. Training goes on; the next save (step "
                               f"{min(next_save, self.total_steps)}) retries; {fix}. Newest checkpoint: {last}")
            return None

    def save_best(self, tensors: dict[str, torch.Tensor]) -> None:
        if not self.main:
            return
        best_dir = os.path.join(self.out, "best")
        os.makedirs(best_dir, exist_ok=True)
        ckpt.save_adapter(os.path.join(best_dir, ckpt.ADAPTER), tensors, self.cfg_dict, self.fingerprints,
                          step=self.state.step, metrics=self.state.last_metrics, best=self.state.best)
        ckpt.write_json_atomic(os.path.join(best_dir, "metrics.json"), {"step": self.state.step, **(self.state.best or {}),
                                                                       "metrics": self.state.last_metrics})

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def validation_loss(self) -> float | None:
        cfg = self.cfg
        if not cfg.data.val:
            return None
        # training-format batches (labels) of the val split: the same number on every rank (ZeRO-3 needs
        # it) and the same samples at every evaluation (epoch 0); augmentation and data.fraction apply
        loader = self.loader_fn(cfg, self.tokenizer, "val", self.env.rank, self.env.world_size, True, epoch=0)
        limit = len(loader) if cfg.train.val_batches is None else min(len(loader), cfg.train.val_batches)
        total, count = 0.0, 0.0
        for i, batch in enumerate(loader):
            if i >= limit:
                break
            out = self.strategy.forward(self.strategy.to_device(batch))
            n = float(out["n_targets"])
            if n > 0 and torch.isfinite(out["loss"]):
                total += float(out["loss"]) * n
                count += n
        total, count = distributed.all_reduce([total, count], "sum", self._comm_device())
        return total / count if count > 0 else None

    @torch.no_grad()
    def samples(self) -> str | None:
        """A few generated texts from the first validation batch (rank 0's; all ranks compute under ZeRO-3)."""
        cfg, n = self.cfg, self.cfg.train.log_samples
        if n <= 0 or not cfg.data.val:
            return None
        batch = None
        if self.main or self.strategy.partitioned:
            loader = self.loader_fn(cfg, self.tokenizer, "val", self.env.rank, self.env.world_size, False, epoch=0)
            # the first batch with samples (an evaluation batch whose samples were all skipped is empty)
            batch = next((b for b in loader if len(b.get("ids", [None]))), None) if self.main else None
        if self.strategy.partitioned:
            batch = distributed.broadcast_object(batch)
        if batch is None:
            return None
        if "labels" in batch:  # training format: cut the prompts out
            prompts, refs, media = prompts_from_batch(batch, n, pad_id=_pad_id(self.tokenizer))
        else:  # generation format (scaling.data): left-padded prompts + reference answers
            prompts = {"input_ids": batch["input_ids"][:n], "attention_mask": batch["attention_mask"][:n]}
            refs = [" | ".join(a) for a in batch.get("answers", [[]] * n)[:n]]
            media = {k: batch[k][:n] for k in (*MEDIA_KEYS, "features") if batch.get(k) is not None}
        prompts = self.strategy.to_device(prompts)
        media = self.strategy.to_device(media)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            eos = getattr(self.model.llm.config, "eos_token_id", None)
        with self.strategy.gathered_for_generation():
            out = self.model.generate(
                prompts["input_ids"], prompts["attention_mask"], max_new_tokens=cfg.eval.max_new_tokens,
                num_beams=1, eos_token_id=eos, pad_token_id=_pad_id(self.tokenizer), **media,
            )
        lines = []
        for i in range(out.shape[0]):
            lines.append(f"- generated: {_decode(self.tokenizer, out[i])!r} | reference: {_decode(self.tokenizer, refs[i])!r}")
        return "\n".join(lines)

    def evaluate_reporting_failure(self, saved_dir: str | None = None) -> bool:
        """:meth:`evaluate`; a failure is reported (log, ``train_log.jsonl``, ``train_summary.json``) and training
        goes on. True when it succeeded. (A failure raised on every rank, as the hook's scoring errors are, keeps the
        ranks in step; a rank failing alone inside a collective cannot be caught here.)"""
        st = self.state
        try:
            self.evaluate()
            return True
        except Exception as err:  # noqa: BLE001 - an evaluation must not end the training (the checkpoint is saved)
            self.strategy.train(True)
            message = f"{type(err).__name__}: {err}"
            self.eval_failures.append({"step": st.step, "error": message})
            self.monitor.scalars(st.step, {"eval/failed": 1.0}, prefix="eval")
            where = saved_dir or self.out
            self.monitor.write(
                f"step {st.step} eval FAILED ({message}); training goes on"
                + (f" (the checkpoint of step {st.step} is saved)" if saved_dir else "")
                + f". Once the cause is fixed, score it with `scaling eval --checkpoint {where} --split val`")
            return False

    def _record_eval_in(self, ckpt_dir: str) -> None:
        """The checkpoint of this step was written before its evaluation: add the metrics and best to its state."""
        if self.main:
            ckpt.update_state(ckpt_dir, {"last_metrics": self.state.last_metrics, "best": self.state.best})
        distributed.barrier()

    def evaluate(self) -> dict:
        """Validation loss, samples and the hook's metrics; keeps the best adapter. Collective."""
        st = self.state
        self.strategy.train(False)
        metrics: dict[str, Any] = {}
        try:
            val = self.validation_loss()
            if val is not None:
                metrics["val_loss"] = val
            text = self.samples() if (self.main or self.strategy.partitioned) else None
            if text and self.main:
                self.monitor.text(st.step, "samples", text)
                self.monitor.write(f"step {st.step} samples:\n{text}")
            if self.evaluate_fn is not None:
                with torch.no_grad():
                    extra = self.evaluate_fn(self.model, st.step) or {}
                metrics.update({k: v for k, v in extra.items()})
        finally:
            self.strategy.train(True)
        metrics = distributed.broadcast_object(metrics)
        st.last_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            tags = {k: ("val/loss" if k == "val_loss" else k if "/" in k else f"eval/{k}") for k in numeric}
            self.monitor.scalars(st.step, {tags[k]: v for k, v in numeric.items()}, prefix="eval")
            self.monitor.write(f"step {st.step} eval: {summarize(numeric)}")
        name = default_metric(self.cfg)
        if name in numeric and _better(name, numeric[name], st.best):
            st.best = {"metric": name, "value": numeric[name], "step": st.step}
            self.save_best(self.strategy.trainable_state())
        return metrics

    def _comm_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo takes CPU tensors
        return self.device if (self.device.type == "cuda" and distributed.is_initialized()) else torch.device("cpu")

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        cfg, t, st = self.cfg, self.cfg.train, self.state
        self.monitor = Monitor(self.out, self.main, self.total_steps, st.step, t.tensorboard, t.progress_bar)
        flops = FlopCounter(self.model)
        self.strategy.train(True)
        comm = self._comm_device()
        window = _Window.from_state(self.window_state)
        self.window_state = None
        preempted = False
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
                    window.add_step(info)
                    window.add_flops(flops)
                    if st.step % t.log_every == 0 or st.step == self.total_steps:
                        self._log_window(window, comm)
                        window = _Window()
                    epoch_done = st.step_in_epoch >= steps_this_epoch
                    # save first: an evaluation that fails (or a job killed while evaluating) loses no step
                    saved_dir = None
                    if st.step % t.save_every == 0 or st.step == self.total_steps:
                        saved_dir = self._save_or_report(loader, epoch_done, window, final=st.step == self.total_steps)
                        last_saved = st.step if saved_dir else last_saved
                    if t.eval_every != 0 and (  # 0 = off; None = at the end only
                            (t.eval_every and st.step % t.eval_every == 0) or st.step == self.total_steps):
                        if self.evaluate_reporting_failure(saved_dir) and saved_dir is not None:
                            self._record_eval_in(saved_dir)
                    self.monitor.advance()
                    if self.on_step is not None:
                        self.on_step(st.step, {"loss": st.last_loss, "applied": info.applied})
                if preempted:
                    break
                if st.step_in_epoch >= steps_this_epoch:
                    self._count_skipped(comm)  # the epoch's final count
                    st.epoch += 1
                    st.step_in_epoch = 0
            interrupted = preempted and self.stop.interrupted_agreed
            if interrupted:
                if st.step > 0 and last_saved != st.step:
                    self.monitor.write(f"Ctrl-C: checkpointing step {st.step}")
                    self._save_or_report(loader, st.step_in_epoch >= steps_this_epoch, window, final=True)
                code = INTERRUPT_EXIT_CODE
            elif preempted:
                self.monitor.write(f"preemption signal ({self.stop.name or 'on another rank'}): checkpointing step {st.step}")
                if last_saved != st.step:
                    self._save_or_report(loader, st.step_in_epoch >= steps_this_epoch, window, final=True)
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
        latest = ckpt.list_checkpoints(self.root)
        return TrainResult(code, st, self.out, preempted, interrupted, latest[-1][1] if latest else None, summary)

    def _skipped_local(self) -> float:
        """Distinct bad samples this rank's training loader skipped in the current epoch (0 for loaders without it)."""
        return float(getattr(getattr(self, "_loader", None), "skipped_in_epoch", 0) or 0)

    def _count_skipped(self, comm) -> None:
        """Collective: the current epoch's distinct skipped samples over all ranks into the state."""
        total = distributed.all_reduce([self._skipped_local()], "sum", comm)[0]
        self.state.skipped_samples[str(self.state.epoch)] = int(round(total))

    def _count_seen(self, w: _Window, sums: list[float] | None = None) -> None:
        """Add the window's samples/tokens not counted yet to the state (collective unless ``sums`` are given)."""
        if sums is None:
            sums = distributed.all_reduce(list(w.uncounted()), "sum", self._comm_device())
        self.state.samples_seen += int(round(sums[0]))
        self.state.tokens_seen += int(round(sums[1]))
        w.mark_counted()

    def _log_window(self, w: _Window, comm) -> None:
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
        st = self.state
        summary = {
            "train_seconds": round(st.train_seconds, 3),
            "gpu_type": self.gpu,
            "n_gpus": self.env.world_size if self.device.type == "cuda" else 0,
            "steps": st.step,
            "total_steps": self.total_steps,
            "finished": st.step >= self.total_steps and not preempted,
            "skipped_steps": st.skipped_steps,
            "samples_seen": st.samples_seen,
            "world_size": self.env.world_size,
            "strategy": st.strategy,
            "zero_stage": st.zero_stage,
            "precision": st.precision,
            "final_loss": st.last_loss,
            "val_loss": st.last_metrics.get("val_loss"),  # the last evaluation's (null without data.val)
            "best": st.best,  # {"metric", "value", "step"} of RUN/best, null when none was kept
            "best_dir": os.path.join(self.out, "best") if st.best else None,
            "this_job_loop_seconds": round(loop_seconds, 3),
            # the slowest step and save of this job: a preemption checkpoint needs up to their sum (train.signal_budget)
            "step_seconds_max": round(self.budget.step_seconds, 3),
            "save_seconds_max": round(self.budget.save_seconds, 3),
            "skipped_samples": st.skipped_samples,  # {"epoch": distinct bad samples the training loader skipped}
            "skipped_samples_total": sum(st.skipped_samples.values()),
            "eval_failures": self.eval_failures,
            "save_failures": self.save_failures,
        }
        ckpt.write_json_atomic(os.path.join(self.out, "train_summary.json"), summary)
        hook_metrics = {k: v for k, v in st.last_metrics.items() if k != "val_loss"}
        if self.evaluate_fn is not None and hook_metrics and not preempted:
            ckpt.write_json_atomic(os.path.join(self.out, "metrics.json"), {
                "task": self.cfg.data.task, "step": st.step, "metrics": hook_metrics, "best": st.best,
                "split": "val", "subset": self.cfg.eval.subset,
                "source": "the training's periodic evaluation (val subset; METEOR and SPICE off): "
                          "`scaling eval --checkpoint RUN --split test` scores the whole test split",
            })
        return summary


class _Window:
    """Sums over the steps between two log lines (local to this rank).

    Checkpoints save it (:meth:`state_dict`, one file per rank) so that the first log line after a resume covers
    the same steps as without the interruption; ``counted_*`` are the samples/tokens already added to the
    :class:`TrainerState` counters (at a checkpoint inside the window).
    """

    FIELDS = ("loss_sum", "loss_count", "nonfinite", "samples", "targets", "media", "flops", "tokens",
              "counted_samples", "counted_tokens", "norms", "loss_scale", "lr")

    def __init__(self):
        self.start = time.time()
        self.loss_sum = self.loss_count = self.nonfinite = 0.0
        self.samples = self.targets = 0.0
        self.media = self.media_taken = 0
        self.flops = self.tokens = 0.0
        self.counted_samples = self.counted_tokens = 0.0
        self.norms: list[float] = []
        self.loss_scale = None
        self.lr: float | None = None

    def state_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.FIELDS}, "seconds": time.time() - self.start}

    @classmethod
    def from_state(cls, state: dict | None) -> _Window:
        w = cls()
        if state:
            for k in cls.FIELDS:
                if k in state:
                    setattr(w, k, list(state[k]) if k == "norms" else state[k])
            w.media_taken = w.media
            w.start = time.time() - float(state.get("seconds", 0.0))
        return w

    def add_micro(self, out: dict, batch: dict) -> None:
        loss = float(out["loss"].detach())
        if math.isfinite(loss):
            self.loss_sum += loss
            self.loss_count += 1
        else:
            self.nonfinite += 1
        self.targets += float(out.get("n_targets", 0))
        n = int(batch["input_ids"].shape[0])
        self.samples += n
        if any(batch.get(k) is not None for k in MEDIA_KEYS):
            self.media += n

    def add_step(self, info) -> None:
        if info.grad_norm is not None:
            self.norms.append(info.grad_norm)
        if info.loss_scale is not None:
            self.loss_scale = info.loss_scale

    def add_flops(self, counter: FlopCounter) -> None:
        """Take the model FLOPs and LLM tokens of the micro batches since the last call (once per step)."""
        flops, tokens = counter.take(self.media - self.media_taken)
        self.media_taken = self.media
        self.flops += flops
        self.tokens += float(tokens)

    def uncounted(self) -> tuple[float, float]:
        return self.samples - self.counted_samples, self.tokens - self.counted_tokens

    def mark_counted(self) -> None:
        self.counted_samples, self.counted_tokens = self.samples, self.tokens

    def grad_norm_mean(self) -> float | None:
        return sum(self.norms) / len(self.norms) if self.norms else None


def _remove_requeue_marker(output_dir: str) -> None:
    try:
        os.remove(os.path.join(output_dir, REQUEUE_FILE))
    except FileNotFoundError:
        pass


def _adapter_micro_batch(ckpt_dir: str) -> int | None:
    """``train.micro_batch`` of the config stored in a checkpoint's adapter metadata (None when unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(os.path.join(ckpt_dir, ckpt.ADAPTER), "pt") as fh:
            config = json.loads((fh.metadata() or {}).get("config") or "{}")
        return int(config["train"]["micro_batch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _offloads(ds: dict) -> bool:
    from scaling.training.ds_config import offloads_optimizer

    return offloads_optimizer(ds)


def _pad_id(tokenizer) -> int:
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return 0


def _decode(tokenizer, ids) -> str:
    if isinstance(ids, str):
        return ids
    ids = [int(i) for i in ids.tolist()]
    if tokenizer is None:
        return " ".join(map(str, ids))
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def prompts_from_batch(batch: dict, n: int, pad_id: int = 0) -> tuple[dict, list[torch.Tensor], dict]:
    """Training-format batch → (left-padded prompts, reference target ids, media) for the first ``n`` rows.

    The prompt of a row is its tokens before the first target (``labels != -100``).
    """
    ids, mask, labels = batch["input_ids"][:n], batch["attention_mask"][:n], batch["labels"][:n]
    prompts, refs = [], []
    for row in range(ids.shape[0]):
        target = (labels[row] != -100).nonzero()
        start = int(target[0]) if len(target) else int(mask[row].sum())
        keep = mask[row, :start].bool()
        prompts.append(ids[row, :start][keep])
        refs.append(labels[row][labels[row] != -100])
    width = max(1, max(len(p) for p in prompts))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, p in enumerate(prompts):
        if len(p):
            input_ids[row, width - len(p):] = p
            attention[row, width - len(p):] = 1
    media = {k: batch[k][:n] for k in (*MEDIA_KEYS, "features") if batch.get(k) is not None}
    return {"input_ids": input_ids, "attention_mask": attention}, refs, media


def train(cfg, evaluate_fn: EvaluateFn | None = None, loader_fn: Callable | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Run (or resume) the training job described by ``cfg`` (see the module docstring)."""
    trainer = Trainer(cfg, evaluate_fn, loader_fn, on_step)
    try:
        trainer.setup()
        return trainer.run()
    finally:
        trainer.release()


def read_log(output_dir: str, kind: str = "train") -> list[dict]:
    """Rows of ``train_log.jsonl`` of one kind (``train`` or ``eval``)."""
    path = os.path.join(output_dir, "train_log.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if r.get("kind") == kind]
