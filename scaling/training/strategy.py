"""The only place that knows how a step is distributed and in which precision.

The loop (:mod:`scaling.training.loop`) calls the same methods whatever runs underneath:

* :class:`AccelerateStrategy` — one process or DDP (NCCL on GPU, gloo on CPU) through Hugging Face
  Accelerate: ``Accelerator.prepare`` wraps the model in DDP and the optimizer, ``accelerator.autocast``
  / ``backward`` / ``clip_grad_norm_`` / ``no_sync`` give mixed precision on GPU (bf16, or fp16 with
  Accelerate's dynamic loss scaler) and gradient accumulation; fp32 on CPU. Trainable weights stay
  fp32. DDP syncs only trainable parameters (frozen ones are loaded identically on every rank and
  never broadcast). The process group itself comes from the launcher's environment
  (:mod:`scaling.training.distributed`), and the strategy checks that Accelerate sees the same world.
* :class:`DeepSpeedStrategy` — ``deepspeed.initialize(model, optimizer=AdamW(trainable only))``.
  ZeRO-2 partitions the optimizer state and gradients of the trainable weights while the frozen
  backbones stay replicated; ZeRO-3 also partitions the frozen weights (at ``initialize``), and
  the embedding / LM-head weights the model reads directly are registered as external parameters
  so that they are gathered when needed. DeepSpeed's fp16/bf16 mode keeps fp32 master weights in
  the optimizer and a half-precision working copy (fp16: DeepSpeed's dynamic loss scaling).
  A non-finite gradient makes DeepSpeed skip the step (counted).

Both strategies skip an optimizer step whose gradient norm is not finite (every rank sees the same
all-reduced gradients, so they agree), and do not advance the schedule on skipped steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any

import torch

from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt


@dataclasses.dataclass
class StepInfo:
    applied: bool
    grad_norm: float | None
    loss_scale: float | None = None


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class Strategy:
    model: Any
    device: torch.device
    precision: str
    zero_stage: int = 0
    kind: str = "torch"

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return _to_device(batch, self.device)

    @property
    def partitioned(self) -> bool:
        """True when parameters are partitioned (ZeRO-3): every rank must run every forward."""
        return self.zero_stage == 3

    @contextlib.contextmanager
    def gathered_for_generation(self):
        yield

    def restart_schedule(self, lr: float, group_lr=None) -> float:
        """After :meth:`load`: this job's peak rates and schedule apply from the very next step.

        A checkpoint restores the scheduler's step count, but also the peak rates it was built with
        (``base_lrs``) and the rate the optimizer applies next, computed by the *old* schedule. Both are
        replaced: the next step uses ``peak · factor(step)`` of this job's schedule (its total steps,
        warm-up and minimum ratio), where a group's peak is ``group_lr(group_name)`` (its
        ``train.param_groups`` override) or ``lr``. Identical values when nothing changed. Returns the
        restored peak rate of the first group that follows ``lr``."""
        sched = self.scheduler
        groups = sched.optimizer.param_groups
        peaks = [float(group_lr(g.get("name", "")) if group_lr is not None else lr) for g in groups]
        follows = [i for i, p in enumerate(peaks) if p == float(lr)] or [0]
        old = float(sched.base_lrs[follows[0]])
        sched.base_lrs = peaks
        for group, base, factor in zip(groups, sched.base_lrs, sched.lr_lambdas):
            group["initial_lr"] = base
            if torch.is_tensor(group["lr"]):
                group["lr"].fill_(base * factor(sched.last_epoch))
            else:
                group["lr"] = base * factor(sched.last_epoch)
        sched._last_lr = [float(group["lr"]) for group in groups]
        return old


class AccelerateStrategy(Strategy):
    """One process or DDP through Hugging Face Accelerate (see the module docstring)."""

    kind = "accelerate"

    def __init__(self, model, optimizer, scheduler, precision: str, device: torch.device, world_size: int, clip: float):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.model, self.scheduler = model, scheduler
        self.device, self.precision, self.clip = device, precision, clip
        self.params = [p for _, p in model.trainable_named_parameters()]
        mixed = {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no") if device.type == "cuda" else "no"
        _reset_accelerate_state()  # several trainings in one process (tests, the demo) may use other precisions
        self.accelerator = Accelerator(
            mixed_precision=mixed, cpu=device.type == "cpu", step_scheduler_with_optimizer=False,
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=False)],
        )
        acc_world = self.accelerator.num_processes
        if acc_world != world_size:
            raise RuntimeError(
                f"Accelerate sees {acc_world} process(es) but the launcher environment says {world_size}; "
                f"launch with torchrun, accelerate launch (--multi_gpu), deepspeed --no_local_rank or srun"
            )
        if world_size > 1:  # frozen weights are loaded identically on every rank: DDP neither broadcasts nor reduces them
            from torch.nn.parallel import DistributedDataParallel as DDP

            frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
            frozen += [n for n, _ in model.named_buffers()]
            DDP._set_params_and_buffers_to_ignore_for_model(model, frozen)
        self.wrapped, self.optimizer = self.accelerator.prepare(model, optimizer, device_placement=[False, False])
        self.scaler = self.accelerator.scaler  # fp16 on GPU: dynamic loss scaling

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with self.accelerator.autocast():
            return self.wrapped(**batch)

    def no_sync(self, boundary: bool):
        """Skip DDP's gradient all-reduce on micro batches before the accumulation boundary."""
        if boundary or self.wrapped is self.model:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self.wrapped)

    def backward(self, loss: torch.Tensor, accumulation: int, boundary: bool) -> None:  # noqa: ARG002
        self.accelerator.backward(loss / accumulation)

    def step(self) -> StepInfo:
        scale = float(self.scaler.get_scale()) if self.scaler is not None else None
        max_norm = self.clip if self.clip > 0 else float("inf")
        norm = float(self.accelerator.clip_grad_norm_(self.params, max_norm))  # unscales fp16 gradients first
        finite = math.isfinite(norm)
        if finite or self.scaler is not None:
            self.optimizer.step()  # with a scaler: skipped by the scaler itself when gradients hold inf/nan
        if finite:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepInfo(applied=finite, grad_norm=norm if finite else None, loss_scale=scale)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().float().cpu().clone() for n, p in self.model.trainable_named_parameters()}

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def save(self, directory: str, is_main: bool) -> None:
        if not is_main:
            return
        ckpt.save_pt(self.optimizer.state_dict(), os.path.join(directory, "optimizer.pt"))
        ckpt.save_pt(self.scheduler.state_dict(), os.path.join(directory, "scheduler.pt"))
        if self.scaler is not None:
            ckpt.save_pt(self.scaler.state_dict(), os.path.join(directory, "scaler.pt"))

    def load(self, directory: str) -> None:
        if not os.path.isfile(os.path.join(directory, "optimizer.pt")):
            if os.path.isdir(os.path.join(directory, "deepspeed")):
                raise RuntimeError(
                    f"{directory} has no optimizer.pt: it was written by DeepSpeed (train.deepspeed set); resume it with "
                    f"the same train.deepspeed, or start a new run from its weights"
                )
            raise RuntimeError(f"{directory} is incomplete: optimizer.pt is missing (deleted or lost); resume from an "
                               f"earlier checkpoint (move this one away) or start a new run from its weights")
        tensors, _ = ckpt.read_adapter(os.path.join(directory, ckpt.ADAPTER))
        ckpt.load_trainable(self.model, tensors, source=directory)
        from scaling.training.optim import migrate_state_dict

        saved = ckpt.load_pt(os.path.join(directory, "optimizer.pt"), self.device)
        try:  # checkpoints of the older decay/no_decay grouping are re-indexed for the per-category groups
            saved = migrate_state_dict(saved, self.optimizer, self.model.trainable_named_parameters(), directory)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.optimizer.load_state_dict(saved)
        sched = ckpt.load_pt(os.path.join(directory, "scheduler.pt"))
        if len(sched.get("base_lrs", [])) != len(self.optimizer.param_groups):  # migrated groups: one rate each
            sched["base_lrs"] = [sched["base_lrs"][0]] * len(self.optimizer.param_groups)
            sched["_last_lr"] = [sched.get("_last_lr", sched["base_lrs"])[0]] * len(self.optimizer.param_groups)
        self.scheduler.load_state_dict(sched)
        scaler_path = os.path.join(directory, "scaler.pt")
        if self.scaler is not None and os.path.isfile(scaler_path):
            self.scaler.load_state_dict(ckpt.load_pt(scaler_path))


def _reset_accelerate_state() -> None:
    """Forget the precision an earlier ``Accelerator`` in this process fixed (the process group stays)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


class DeepSpeedStrategy(Strategy):
    """DeepSpeed engine over the trainable parameters (see the module docstring)."""

    kind = "deepspeed"

    def __init__(self, model, optimizer, scheduler_fn, ds_config: dict, precision: str, device: torch.device):
        import deepspeed

        from scaling.training import ds_config as dsc

        self.model, self.device, self.precision = model, device, precision
        self.zero_stage = dsc.zero_stage(ds_config)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler_fn, config=ds_config,
        )
        # every DeepSpeed checkpoint read goes through a weights-only load
        self.engine.checkpoint_engine.load = ckpt.weights_only_deepspeed_load
        self._external: list[torch.nn.Parameter] = []
        if self.zero_stage == 3:
            # the model reads these weights directly (not through their module's forward)
            from deepspeed.runtime.zero.partition_parameters import register_external_parameter

            seen = set()
            for module in (model.layout.embed_tokens, model.layout.lm_head):
                for p in module.parameters(recurse=False):
                    if id(p) not in seen:
                        seen.add(id(p))
                        register_external_parameter(model, p)
                        self._external.append(p)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.engine(**batch)

    def no_sync(self, boundary: bool):  # noqa: ARG002 - DeepSpeed reduces at the boundary itself
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, accumulation: int, boundary: bool) -> None:  # noqa: ARG002
        # DeepSpeed divides by gradient_accumulation_steps itself
        self.engine.backward(loss)
        if not boundary:
            self.engine.step()  # counts the micro step; updates nothing before the boundary

    def step(self) -> StepInfo:
        if not self.engine.is_gradient_accumulation_boundary():
            raise RuntimeError(
                "DeepSpeed's micro-step count disagrees with the trainer's accumulation boundary; "
                "check gradient_accumulation_steps in the DeepSpeed config (it should be \"auto\")"
            )
        self.engine.step()
        applied = bool(self.engine.was_step_applied())
        norm = self.engine.get_global_grad_norm()
        norm = float(norm) if norm is not None else None
        if norm is not None and not math.isfinite(norm):
            norm = None
        scale = None
        if self.precision == "fp16":
            scale = float(getattr(self.engine.optimizer, "loss_scale", getattr(self.engine.optimizer, "cur_scale", 0.0)))
        return StepInfo(applied=applied, grad_norm=norm if applied else None, loss_scale=scale)

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """fp32 master weights, gathered (collective: every rank calls; complete on every rank)."""
        from deepspeed.runtime.zero.partition_parameters import GatheredParameters
        from deepspeed.utils import safe_get_full_fp32_param

        out = {}
        for name, p in self.model.trainable_named_parameters():
            full = safe_get_full_fp32_param(p)
            if full is None:
                with GatheredParameters([p], modifier_rank=None):
                    full = p.detach().clone()
            out[name] = full.detach().float().cpu().clone()
        return out

    def train(self, mode: bool = True) -> None:
        self.engine.train(mode)
        self.model.train(mode)

    @contextlib.contextmanager
    def gathered_for_generation(self):
        """ZeRO-3: gather the directly-read weights around ``model.generate`` (all ranks must enter)."""
        if not self._external:
            yield
            return
        from deepspeed.runtime.zero.partition_parameters import GatheredParameters

        with GatheredParameters(self._external, modifier_rank=None):
            yield

    def save(self, directory: str, is_main: bool) -> None:  # noqa: ARG002 - every rank writes its partition
        self.engine.save_checkpoint(directory, tag="deepspeed", save_latest=False, exclude_frozen_parameters=True)

    def load(self, directory: str) -> None:
        if not os.path.isdir(os.path.join(directory, "deepspeed")):
            raise RuntimeError(
                f"{directory} has no deepspeed/ state: it was written without DeepSpeed; resume it without "
                f"train.deepspeed, or start a new run"
            )
        path, _ = self.engine.load_checkpoint(
            directory, tag="deepspeed", load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True,
        )
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {directory}/deepspeed")
