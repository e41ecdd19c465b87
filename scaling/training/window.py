"""The log window: sums over the optimizer steps between two log lines, local to one rank.

The trainer adds every micro batch's loss and sizes and every step's gradient norm and FLOPs to a
:class:`LogWindow`, all-reduces its sums at each log line and starts a new one. Checkpoints save it
(:meth:`LogWindow.state_dict`, one file per rank) so that the first log line after a resume covers the same
steps as without the interruption.
"""

from __future__ import annotations

import math
import time

MEDIA_KEYS = ("pixel_values", "video", "audio")  # the batch keys that go through the encoder


class LogWindow:
    """Sums over the steps between two log lines (local to this rank).

    ``counted_*`` are the samples/tokens already added to the :class:`~scaling.training.state.TrainerState`
    counters (at a checkpoint inside the window).
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
    def from_state(cls, state: dict | None) -> LogWindow:
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

    def add_flops(self, counter) -> None:
        """Take the model FLOPs and LLM tokens of the micro batches since the last call (once per step) from a
        :class:`~scaling.training.monitor.FlopCounter`."""
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
