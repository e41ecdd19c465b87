"""What a training job writes when it stops: ``RUN/train_summary.json`` and, from the hook, ``RUN/metrics.json``.

``train_summary.json`` (rank 0) is what ``scaling train`` prints and the tests and the cluster scripts read:
steps, whether the run finished, skipped steps and samples, the final and validation loss, the best adapter,
this job's slowest step and save (what a preemption checkpoint needs, ``train.signal_budget``) and the
evaluations and periodic saves that failed.
"""

from __future__ import annotations

import os

from scaling.training import checkpoint as ckpt
from scaling.training.state import TrainerState

#: the evaluation hook's count of unscorable validation samples: a top-level field of metrics.json, not a score
UNSCORABLE = "unscorable_samples"


def write_summary(cfg, st: TrainerState, *, gpu: str, n_gpus: int, world_size: int, preempted: bool,
                  loop_seconds: float, budget, eval_failures: list[dict], save_failures: list[dict],
                  hook: bool) -> dict:
    """Write ``train_summary.json`` (and ``metrics.json`` when the ``evaluate_fn`` hook produced metrics and the run
    was not preempted); returns the summary. ``budget``: the job's :class:`~scaling.training.signals.SignalBudget`."""
    out = cfg.train.output_dir
    summary = {
        "train_seconds": round(st.train_seconds, 3),
        "gpu_type": gpu,
        "n_gpus": n_gpus,
        "steps": st.step,
        "total_steps": st.total_steps,
        "finished": st.step >= st.total_steps and not preempted,
        "skipped_steps": st.skipped_steps,
        "samples_seen": st.samples_seen,
        "world_size": world_size,
        "strategy": st.strategy,
        "zero_stage": st.zero_stage,
        "precision": st.precision,
        "final_loss": st.last_loss,
        "val_loss": st.last_metrics.get("val_loss"),  # the last evaluation's (null without data.val)
        "best": st.best,  # {"metric", "value", "step"} of RUN/best, null when none was kept
        "best_dir": os.path.join(out, "best") if st.best else None,
        "this_job_loop_seconds": round(loop_seconds, 3),
        # the slowest step and save of this job: a preemption checkpoint needs up to their sum (train.signal_budget)
        "step_seconds_max": round(budget.step_seconds, 3),
        "save_seconds_max": round(budget.save_seconds, 3),
        "skipped_samples": st.skipped_samples,  # {"epoch": distinct bad samples the training loader skipped}
        "skipped_samples_total": sum(st.skipped_samples.values()),
        "eval_failures": eval_failures,
        "save_failures": save_failures,
    }
    ckpt.write_json_atomic(os.path.join(out, "train_summary.json"), summary)
    hook_metrics = {k: v for k, v in st.last_metrics.items() if k not in ("val_loss", UNSCORABLE)}
    if hook and hook_metrics and not preempted:
        ckpt.write_json_atomic(os.path.join(out, "metrics.json"), {
            "task": cfg.data.task, "step": st.step, "metrics": hook_metrics, "best": st.best,
            # validation samples the scores leave out (no reference, undecodable): a count beside the scores, like
            # `scaling eval`'s "skipped" (train_log.jsonl's eval rows keep it as eval/unscorable_samples)
            UNSCORABLE: int(st.last_metrics.get(UNSCORABLE) or 0),
            "split": "val", "subset": cfg.eval.subset,
            "source": "the training's periodic evaluation (val subset; METEOR and SPICE off): "
                      "`scaling eval --checkpoint RUN --split test` scores the whole test split",
        })
    return summary
