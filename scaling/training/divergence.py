"""Stopping a run whose optimizer steps keep being skipped for non-finite gradients (``train.max_skipped_in_a_row``).

The loop skips (and counts) a step whose gradient is not finite; after ``train.max_skipped_in_a_row`` such steps in
a row it stops with :data:`DIVERGED_EXIT_CODE` and :func:`diverged_diagnosis` says why and what to change.
"""

from __future__ import annotations

DIVERGED_EXIT_CODE = 3  # stopped: too many optimizer steps in a row skipped for non-finite gradients


def diverged_diagnosis(n: int, st, t, lr: float) -> str:
    """Why the run stopped after ``n`` skipped steps in a row, and what to change."""
    return (f"training stopped at step {st.step}: the last {n} optimizer steps all had non-finite gradients (NaN or inf) "
            f"and were skipped ({st.skipped_steps} skipped in all; last loss {st.last_loss}); the weights no longer "
            f"change, or have diverged. Likely causes: a learning rate far too high (train.lr={t.lr:g}, now {lr:.3g}), "
            f"fp16 overflow (use train.precision=bf16 or fp32), bad samples (`scaling data inspect`). Fix it and resume "
            f"from the newest checkpoint (it holds the weights of before the divergence only if it was saved before), "
            f"or start afresh; train.max_skipped_in_a_row={t.max_skipped_in_a_row} sets this limit (0 = never stop)")
