"""What every DataLoader worker of the project runs first (``worker_init_fn``).

Slurm (and ``kill -TERM -PGID``) signals every process of a job step, DataLoader workers included.
PyTorch's worker SIGTERM handler exits the worker when the signal does not come from its parent; the
trainer then fails with ``DataLoader worker (pid …) exited unexpectedly`` before it reads its stop flag,
so no preemption checkpoint is written. A worker therefore ignores the preemption signals
(:data:`scaling.common.signals.HANDLED`: SIGTERM, SIGUSR1 and SIGINT) and leaves them to the trainer, which
checkpoints and stops; the workers then exit with their loader (or, should the trainer die, through
PyTorch's parent watchdog). Ctrl-C reaches the whole foreground process group: the trainer's first one
checkpoints at the end of the step and needs the workers' batches until then, its second one aborts the
trainer, whose workers then go with it. SIGKILL cannot be ignored, so Slurm's final kill still ends them.

Any loader that starts worker processes (``torch.utils.data.DataLoader``, torchdata's
``StatefulDataLoader``) passes ``worker_init_fn=worker_init``, or calls :func:`ignore_preemption_signals`
from its own init function, and starts them (``iter(loader)``) inside :func:`preemption_signals_blocked`, which
closes the window between a worker's fork and its init function.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import torch

from scaling.common.signals import HANDLED


def _handled() -> set[signal.Signals]:
    return {getattr(signal, name) for name in HANDLED if hasattr(signal, name)}


def ignore_preemption_signals() -> None:
    """SIG_IGN for SIGTERM / SIGUSR1 / SIGINT in this process (a data worker: the trainer handles them); then
    lets them through again if they were held back (:func:`preemption_signals_blocked`): one that arrived
    meanwhile is discarded, since it is ignored now."""
    sigs = _handled()
    for sig in sigs:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)


@contextlib.contextmanager
def preemption_signals_blocked() -> Iterator[None]:
    """Hold SIGTERM / SIGUSR1 / SIGINT back in this thread while the block runs; around the start of worker
    processes (``iter(DataLoader)``).

    A forked worker inherits the mask, so a signal that reaches it before its ``worker_init`` has set SIG_IGN
    (Slurm signals every process of the step, and a new epoch forks new workers at any time) waits, blocked,
    and is then discarded, where PyTorch's worker handler would have killed the worker and the trainer failed
    with ``DataLoader worker (pid …) is killed by signal: Terminated``, no checkpoint written. The trainer's
    own copy of the signal is delivered when the block ends. (Workers of a ``spawn``/``forkserver`` context do
    not inherit it; the project's loaders use Linux's default, ``fork``.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _handled())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_init(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """``worker_init_fn`` of every project DataLoader: preemption signals left to the trainer, one thread
    per worker (the workers decode in parallel; the trainer's threads stay free)."""
    ignore_preemption_signals()
    torch.set_num_threads(1)
