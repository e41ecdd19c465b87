"""End-of-command summary blocks (printed to stdout: they are the command's result; logs go to stderr).

``train_block`` after ``scaling train``: steps, samples and time; final and best metric and the best
checkpoint's path; skipped samples and steps; the next commands. ``eval_next`` and ``sweep_block`` do the
same for ``scaling eval`` and ``scaling sweep --run``.
"""

from __future__ import annotations

import os
import shlex


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def train_block(result, cfg) -> str:
    """The block printed after ``scaling train`` (``result``: :class:`scaling.training.loop.TrainResult`)."""
    s = result.summary or {}
    run = result.output_dir
    q = shlex.quote
    if result.interrupted:
        head = f"training interrupted (Ctrl-C) at step {s.get('steps')}/{s.get('total_steps')}"
    elif result.preempted:
        head = f"training preempted at step {s.get('steps')}/{s.get('total_steps')}"
    elif isinstance(s.get("steps"), int) and isinstance(s.get("total_steps"), int) and s["steps"] > s["total_steps"]:
        head = (f"nothing to train: the run's newest checkpoint is at step {s['steps']}, past this config's "
                f"{s['total_steps']} steps (raise train.max_steps or train.epochs to continue it)")
    else:
        head = f"training done: {s.get('steps')}/{s.get('total_steps')} steps"
    lines = [
        "",
        f"{head} · {s.get('samples_seen', 0):,} samples · {_duration(s.get('train_seconds'))} "
        f"(world {s.get('world_size')}, {s.get('strategy')}, {s.get('precision')}) · run folder {run}",
        f"  final training loss {_num(s.get('final_loss'))}"
        + (f" · validation loss {_num(s.get('val_loss'))}" if s.get("val_loss") is not None else ""),
    ]
    best = s.get("best")
    if best:
        lines.append(f"  best {best.get('metric')} {_num(best.get('value'))} at step {best.get('step')}: {s.get('best_dir')}")
    else:
        lines.append("  best checkpoint: none kept (no evaluation metric; train.eval_every and eval.metric choose it)")
    skipped = s.get("skipped_samples_total", s.get("skipped_samples"))
    if isinstance(skipped, dict):  # {epoch: count}
        skipped = sum(skipped.values())
    lines.append(f"  skipped: {_num(skipped) if skipped is not None else 0} samples (undecodable media), "
                 f"{s.get('skipped_steps', 0)} steps (non-finite gradients)")
    if result.checkpoint:
        lines.append(f"  latest checkpoint: {result.checkpoint}")
    lines.append("next:")
    if result.preempted:
        lines.append(f"  {'rerun the same command' if result.interrupted else 'requeue the job'}: it resumes from "
                     f"{os.path.join(run, 'checkpoints', 'latest')}")
    from scaling.data.sources import has_references

    split = "test" if cfg.data.test else "val"
    if not has_references(cfg.data.test or cfg.data.val):
        lines.append(f"  scaling eval --checkpoint {q(run)} --data SHARDS --split test     (this config has no "
                     "shards with references to score)")
    else:
        lines.append(f"  scaling eval --checkpoint {q(run)} --split {split}")
    export = os.path.basename(os.path.normpath(run)) + ".safetensors"  # outside the run folder: exports are copies
    lines.append(f"  scaling convert {q(run)} --to adapter {q(export)}")
    lines.append(f"  scaling inspect {q(run)}")
    return "\n".join(lines)


def eval_next(checkpoint: str, run_dir: str | None) -> str:
    """The lines printed after ``scaling eval``'s table."""
    q = shlex.quote
    lines = ["next:"]
    if run_dir:
        lines.append(f"  scaling report {q(run_dir)}             # tables over runs (mean ± std over seeds)")
    lines.append(f"  scaling predict --checkpoint {q(checkpoint)} IMAGE_OR_AUDIO [--question ...]")
    return "\n".join(lines)


def sweep_block(result: dict, out: str, points) -> str:
    """The block printed after ``scaling sweep --run`` (``result`` from :func:`scaling.evaluation.sweep.run_points`)."""
    q = shlex.quote
    lines = [
        "",
        f"sweep done: {len(points)} points in {out} · {len(result['done'])} trained, {len(result['skipped'])} "
        f"skipped (finished before), {len(result['failed'])} failed",
    ]
    if result["failed"]:
        lines.append("  failed: " + ", ".join(result["failed"]) + "  (their output is above on stderr; rerun the same "
                     "command to retry them: finished points are skipped)")
    lines.append("next:")
    lines.append(f"  scaling report {q(out)}      # writes {os.path.join(out.rstrip('/') or '.', 'report')}/")
    return "\n".join(lines)
