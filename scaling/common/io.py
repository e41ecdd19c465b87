"""Files written whole or not at all: a temporary file beside the target, renamed over it at the end.

:func:`atomic_write` opens the temporary file (``with atomic_write(path) as fh: ...``);
:func:`atomic_path` yields its path for writers that open it themselves (``torch.save``,
safetensors' ``save_file``); :class:`AtomicFile` is the same for a file kept open across calls
(a shard being written). A reader sees the old file or the new one, never half of one; on an
error the temporary file is removed and the target left as it was. ``fsync=True`` puts the data
on stable storage before the rename (checkpoints).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any


def temp_name(path: str) -> str:
    """The temporary file of ``path``: beside it (same file system, so the rename is atomic), one per process."""
    return f"{path}.{os.getpid()}.tmp"


def fsync_file(path: str) -> None:
    """Flush a file (or directory) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file beside ``path`` (``.file``), moved onto ``path`` by :meth:`commit` or removed by
    :meth:`abort`."""

    def __init__(self, path: str, mode: str = "w", fsync: bool = False, **open_kwargs: Any):
        self.path, self.tmp, self.fsync = path, temp_name(path), fsync
        self.file: IO = open(self.tmp, mode, **open_kwargs)

    def commit(self) -> None:
        self.file.flush()
        if self.fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(OSError):
            os.remove(self.tmp)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", fsync: bool = False, **open_kwargs: Any) -> Iterator[IO]:
    """Write ``path`` whole or not at all: ``with atomic_write(path) as fh: fh.write(...)``."""
    out = AtomicFile(path, mode, fsync, **open_kwargs)
    try:
        yield out.file
    except BaseException:
        out.abort()
        raise
    out.commit()


@contextlib.contextmanager
def atomic_path(path: str, fsync: bool = False) -> Iterator[str]:
    """The temporary path to write ``path`` through (``with atomic_path(p) as tmp: torch.save(obj, tmp)``)."""
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path: str, obj: Any, fsync: bool = False, **dump_kwargs: Any) -> None:
    """``json.dump(obj, **dump_kwargs)`` into ``path``, atomically."""
    with atomic_write(path, fsync=fsync) as fh:
        json.dump(obj, fh, **dump_kwargs)
