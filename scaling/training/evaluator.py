"""The training's periodic evaluation: validation loss, a few generated samples and the ``evaluate_fn`` hook.

:class:`Evaluator` runs on every rank (collective: under ZeRO-3 every rank runs the same forward calls),
logs the metrics, and asks for the best adapter to be kept (``RUN/best/``) when the selection metric
(``eval.metric``; default CIDEr for captioning, accuracy for QA; a name containing "loss" is minimised)
improves. :meth:`Evaluator.evaluate_reporting_failure` is what the loop calls: a failing evaluation is
reported (log, ``train_log.jsonl``, ``train_summary.json``) and training goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from scaling.config.tasks import metric_of
from scaling.training import distributed
from scaling.training.monitor import summarize
from scaling.training.samples import generate_samples
from scaling.training.state import TrainerState

EvaluateFn = Callable[[Any, int], dict]


def default_metric(cfg) -> str:
    return cfg.eval.metric or metric_of(cfg.data.task)  # the task's headline metric (scaling/config/tasks.py)


def is_better(name: str, value: float, best: dict | None) -> bool:
    if best is None or best.get("value") is None:
        return True
    return value < best["value"] if "loss" in name.lower() else value > best["value"]


class Evaluator:
    """One job's periodic evaluation; ``on_best()`` (collective) keeps the adapter when the metric improves."""

    def __init__(self, cfg, env, model, strategy, tokenizer, loader_fn: Callable, evaluate_fn: EvaluateFn | None,
                 comm: torch.device, on_best: Callable[[], None]):
        self.cfg, self.env, self.model, self.strategy = cfg, env, model, strategy
        self.tokenizer, self.loader_fn, self.evaluate_fn = tokenizer, loader_fn, evaluate_fn
        self.comm, self.on_best = comm, on_best
        self.main = env.is_main
        self.failures: list[dict] = []  # {"step", "error"} of this job's failed evaluations

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
        total, count = distributed.all_reduce([total, count], "sum", self.comm)
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
        return generate_samples(self.model, self.strategy, self.tokenizer, batch, n, cfg.eval.max_new_tokens)

    def evaluate(self, state: TrainerState, monitor) -> dict:
        """Validation loss, samples and the hook's metrics into ``state``; keeps the best adapter. Collective."""
        self.strategy.train(False)
        metrics: dict[str, Any] = {}
        try:
            val = self.validation_loss()
            if val is not None:
                metrics["val_loss"] = val
            text = self.samples() if (self.main or self.strategy.partitioned) else None
            if text and self.main:
                monitor.text(state.step, "samples", text)
                monitor.write(f"step {state.step} samples:\n{text}")
            if self.evaluate_fn is not None:
                with torch.no_grad():
                    extra = self.evaluate_fn(self.model, state.step) or {}
                metrics.update({k: v for k, v in extra.items()})
        finally:
            self.strategy.train(True)
        metrics = distributed.broadcast_object(metrics)
        state.last_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            tags = {k: ("val/loss" if k == "val_loss" else k if "/" in k else f"eval/{k}") for k in numeric}
            monitor.scalars(state.step, {tags[k]: v for k, v in numeric.items()}, prefix="eval")
            monitor.write(f"step {state.step} eval: {summarize(numeric)}")
        name = default_metric(self.cfg)
        if name in numeric and is_better(name, numeric[name], state.best):
            state.best = {"metric": name, "value": numeric[name], "step": state.step}
            self.on_best()
        return metrics

    def evaluate_reporting_failure(self, state: TrainerState, monitor, saved_dir: str | None = None) -> bool:
        """:meth:`evaluate`; a failure is reported (log, ``train_log.jsonl``, ``train_summary.json``) and training
        goes on. True when it succeeded. (A failure raised on every rank, as the hook's scoring errors are, keeps the
        ranks in step; a rank failing alone inside a collective cannot be caught here.)"""
        try:
            self.evaluate(state, monitor)
            return True
        except Exception as err:  # noqa: BLE001 - an evaluation must not end the training (the checkpoint is saved)
            self.strategy.train(True)
            message = f"{type(err).__name__}: {err}"
            self.failures.append({"step": state.step, "error": message})
            monitor.scalars(state.step, {"eval/failed": 1.0}, prefix="eval")
            where = saved_dir or self.cfg.train.output_dir
            monitor.write(
                f"step {state.step} eval FAILED ({message}); training goes on"
                + (f" (the checkpoint of step {state.step} is saved)" if saved_dir else "")
                + f". Once the cause is fixed, score it with `scaling eval --checkpoint {where} --split val`")
            return False
