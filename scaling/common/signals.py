"""The signals a training job handles, for the trainer and for every process it starts.

The trainer (:mod:`scaling.training.signals`) turns SIGTERM and SIGUSR1 (a preemption: checkpoint, requeue) and
SIGINT (Ctrl-C: checkpoint, exit 130) into a stop at the next step boundary; its DataLoader workers
(:mod:`scaling.data.workers`) ignore the same signals and leave them to it.
"""

HANDLED = ("SIGTERM", "SIGUSR1", "SIGINT")
INTERRUPT_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
