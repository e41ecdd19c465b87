"""Preemption: SIGTERM / SIGUSR1 set a flag; the loop checkpoints at the next step boundary and exits.

SLURM sends ``SIGUSR1`` ahead of the time limit when the batch script asks for it
(``#SBATCH --signal=USR1@120``) and ``SIGTERM`` when it preempts or cancels a job. A handler only
records the signal: the loop checks :meth:`StopFlag.agreed` at every optimizer-step boundary (the
flag is all-reduced, so every rank stops at the same step even when the signal reached them at
different times), saves a checkpoint, writes ``RUN/requeue`` and exits with
``train.requeue_exit_code`` (124). ``launch/*.sbatch`` requeue the job on that file or code; the
requeued job resumes by itself (``train.resume=auto`` finds ``checkpoints/latest``).

Repeated preemption signals are ignored (the save must finish).

SIGINT (Ctrl-C) is handled the way torchtune and Lightning users expect: the first one also checkpoints at the
next step boundary, but writes no requeue marker and exits 130 (an interrupt, not a preemption); a second
one raises ``KeyboardInterrupt`` at once (no checkpoint). :meth:`StopFlag.agreed` tells the ranks apart
from a preemption with one all-reduce of two flags.
"""

from __future__ import annotations

import os
import signal
import time

from scaling.common.run_layout import REQUEUE_FILE
from scaling.common.signals import HANDLED, INTERRUPT_EXIT_CODE
from scaling.training import distributed

__all__ = ["HANDLED", "INTERRUPT_EXIT_CODE", "REQUEUE_FILE", "SignalBudget", "StopFlag"]


class StopFlag:
    """Records preemption signals; :meth:`agreed` tells every rank whether any rank got one."""

    def __init__(self, signals: tuple[str, ...] = HANDLED):
        self.signum: int | None = None
        self.received_at: float | None = None
        self.interrupts = 0  # SIGINTs received
        self.interrupted_agreed = False  # set by agreed(): some rank got a SIGINT (and none a preemption signal)
        self._previous: dict[int, object] = {}
        self._signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]

    def _handler(self, signum, frame):  # noqa: ARG002 - signal handler signature
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts > 1:
                raise KeyboardInterrupt  # second Ctrl-C: abort now, no checkpoint
            # os.write: a print here could re-enter a print the signal interrupted
            os.write(2, b"\nCtrl-C: checkpointing at the end of this step, then stopping (press Ctrl-C again to abort "
                        b"at once, without a checkpoint)\n")
        if self.signum is None:
            self.signum = signum
            self.received_at = time.time()

    def install(self) -> StopFlag:
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

    @property
    def interrupted(self) -> bool:
        """This rank's signal was Ctrl-C (SIGINT) rather than a preemption signal."""
        return self.signum == signal.SIGINT

    def agreed(self, device="cpu") -> bool:
        """True on every rank when any rank received a signal (one tiny all-reduce).

        Also sets :attr:`interrupted_agreed`: True when a rank got Ctrl-C and none a preemption signal
        (a preemption wins: its job must be requeued)."""
        preempt = 1.0 if self.local and not self.interrupted else 0.0
        interrupt = 1.0 if self.interrupted else 0.0
        preempt, interrupt = distributed.all_reduce([preempt, interrupt], "max", device)
        self.interrupted_agreed = interrupt > 0 and preempt == 0
        return preempt > 0 or interrupt > 0


SCHEDULER_JOB_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")  # Slurm, PBS/Torque, LSF, SGE


def under_scheduler() -> bool:
    """Whether this process runs inside a batch scheduler's job (which may signal it, then SIGKILL it)."""
    return any(os.environ.get(name) for name in SCHEDULER_JOB_VARIABLES)


class SignalBudget:
    """How long a preemption checkpoint takes, against the time the job has between the signal and SIGKILL.

    After SIGTERM/SIGUSR1 the trainer finishes the current step, then saves. Slurm sends SIGKILL ``KillWait``
    seconds (30 by default) after SIGTERM when a job is killed without grace time (scancel, GraceTime=0
    preemption); DeepSpeed's launcher 30 s after passing a signal on. ``train.signal_budget`` is that time:
    :meth:`saved` measures every save and returns a warning (once) when the slowest step plus the slowest save
    exceed it. ``--shutdown-timeout`` of torchrun does not extend it: SLURM's SIGKILL reaches every process.
    """

    def __init__(self, budget: float, scheduled: bool | None = None):
        self.budget = budget
        # a local run is never killed KillWait seconds after a signal: warn only under a batch scheduler
        self.scheduled = under_scheduler() if scheduled is None else scheduled
        self.step_seconds = 0.0  # slowest optimizer step of this job
        self.save_seconds = 0.0  # slowest checkpoint of this job
        self.warned = False

    def step(self, seconds: float) -> None:
        self.step_seconds = max(self.step_seconds, seconds)

    def needed(self) -> float:
        return self.step_seconds + self.save_seconds

    def saved(self, seconds: float) -> str | None:
        """Record a save's duration; a warning text the first time step + save exceed the budget."""
        self.save_seconds = max(self.save_seconds, seconds)
        if self.warned or not self.scheduled or self.needed() <= self.budget:
            return None
        self.warned = True
        return (
            f"warning: a preemption checkpoint needs up to {self.needed():.1f} s (a step {self.step_seconds:.1f} s + a "
            f"save {self.save_seconds:.1f} s), more than train.signal_budget={self.budget:g} s between the signal and "
            f"SIGKILL (Slurm's KillWait when a job is killed without grace time; DeepSpeed's launcher waits 30 s): the "
            f"job may be killed before it is saved. Ask for the signal earlier (#SBATCH --signal=USR1@SECONDS before "
            f"the time limit), use a partition with GraceTime, ask your admins for a longer KillWait, or make saves "
            f"faster (a local/faster output_dir file system); set train.signal_budget to your cluster's value"
        )
