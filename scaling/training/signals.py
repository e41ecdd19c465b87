"""Preemption: SIGTERM / SIGUSR1 set a flag; the loop checkpoints at the next step boundary and exits.

SLURM sends ``SIGUSR1`` ahead of the time limit when the batch script asks for it
(``#SBATCH --signal=USR1@120``) and ``SIGTERM`` when it preempts or cancels a job. A handler only
records the signal: the loop checks :meth:`StopFlag.agreed` at every optimizer-step boundary (the
flag is all-reduced, so every rank stops at the same step even when the signal reached them at
different times), saves a checkpoint, writes ``RUN/requeue`` and exits with
``train.requeue_exit_code`` (124). ``launch/*.sbatch`` requeue the job on that file or code; the
requeued job resumes by itself (``train.resume=auto`` finds ``checkpoints/latest``).

Repeated signals are ignored (the save must finish); SIGINT (Ctrl-C) is left alone and stops at once.
"""

from __future__ import annotations

import signal
import time

from scaling.training import distributed

HANDLED = ("SIGTERM", "SIGUSR1")
REQUEUE_FILE = "requeue"


class StopFlag:
    """Records preemption signals; :meth:`agreed` tells every rank whether any rank got one."""

    def __init__(self, signals: tuple[str, ...] = HANDLED):
        self.signum: int | None = None
        self.received_at: float | None = None
        self._previous: dict[int, object] = {}
        self._signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]

    def _handler(self, signum, frame):  # noqa: ARG002 - signal handler signature
        if self.signum is None:
            self.signum = signum
            self.received_at = time.time()

    def install(self) -> "StopFlag":
        for sig in self._signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread (e.g. a notebook worker): no preemption handling
                pass
        return self

    def uninstall(self) -> None:
        for sig, prev in self._previous.items():
            try:
                signal.signal(sig, prev)
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    @property
    def local(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def agreed(self, device="cpu") -> bool:
        """True on every rank when any rank received a signal (one tiny all-reduce)."""
        return distributed.all_reduce([1.0 if self.local else 0.0], "max", device)[0] > 0
