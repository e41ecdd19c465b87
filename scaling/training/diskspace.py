"""A checkpoint that cannot be written: recognise a full disk and say so, with the space a checkpoint needs.

torch reports a full disk while saving as ``RuntimeError: [enforce fail at inline_container.cc:...]
unexpected pos`` (or ``PytorchStreamWriter failed writing file``), safetensors as ``... (os error 28)``,
plain writes as ``OSError(errno.ENOSPC)``. :func:`is_disk_full` recognises all of them (and a quota
exceeded). :class:`CheckpointWriteError` carries the message the trainer prints: what could not be written,
where, the free space and the space a checkpoint of this run takes.

Peak disk use of a run: while checkpoint N is written, the ``train.keep_last`` previous ones still exist
(they are pruned only after N is complete), so ``(keep_last + 1) × checkpoint size`` plus ``RUN/best``
(one adapter) plus the logs.
"""

from __future__ import annotations

import errno
import os
import shutil

from scaling.config.base import ConfigError

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
FULL_MESSAGES = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122",
                 "unexpected pos", "failed writing file")


class CheckpointWriteError(ConfigError):
    """A checkpoint could not be written (printed by the CLI as ``error: ...``)."""

    def __init__(self, message: str, disk_full: bool):
        super().__init__(message)
        self.disk_full = disk_full


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        text = str(e).lower()
        if any(m in text for m in FULL_MESSAGES):
            return True
    return False


def dir_size(path: str) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def describe(err: BaseException, root: str, step: int, checkpoint_bytes: int, keep_last: int) -> str:
    """One paragraph: what failed, where, free space, what a checkpoint and the run's peak need."""
    try:
        free = human(shutil.disk_usage(root).free)
    except OSError:
        free = "unknown"
    what = "no space left on device" if is_disk_full(err) else "write failed"
    size = human(checkpoint_bytes) if checkpoint_bytes else "unknown"
    peak = human((keep_last + 1) * checkpoint_bytes) if checkpoint_bytes else "unknown"
    return (f"{what}: the checkpoint of step {step} could not be written in {root} ({free} free there; one "
            f"checkpoint of this run takes {size}, and up to train.keep_last + 1 = {keep_last + 1} of them ({peak}) "
            f"exist while the newest is written)" + ("" if is_disk_full(err) else f" [{type(err).__name__}: {err}]"))
