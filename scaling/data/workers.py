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
from its own init function.
"""

from __future__ import annotations

import signal

import torch

from scaling.common.signals import HANDLED


def ignore_preemption_signals() -> None:
    """SIG_IGN for SIGTERM / SIGUSR1 / SIGINT in this process (a data worker: the trainer handles them)."""
    for name in HANDLED:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def worker_init(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """``worker_init_fn`` of every project DataLoader: preemption signals left to the trainer, one thread
    per worker (the workers decode in parallel; the trainer's threads stay free)."""
    ignore_preemption_signals()
    torch.set_num_threads(1)
