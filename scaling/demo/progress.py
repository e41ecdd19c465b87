"""Progress for the demo: tqdm bars (with ETA) that also work for jobs running in worker processes.

On a 2-core CPU, tiny models train several times faster with one thread each than with two threads
in one process (measured: a ViT step of batch 64 takes 0.08 s on 1 thread, 0.45 s on 2 threads), so
the demo runs independent jobs (pretraining the encoder and the LM; training one method on one task)
in two single-threaded worker processes. :class:`JobRunner` runs them and draws one tqdm bar per
running job in the parent process; a job reports through :class:`Reporter` (a picklable handle on a
queue), never by writing to the terminal itself. A job's own stdout/stderr (trainer logs) go to its
log file.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from tqdm import tqdm


class Reporter:
    """Sends ``(job, event, payload)`` messages to the parent; :meth:`bar` makes a bar-like object."""

    def __init__(self, q, job: str):
        self.q = q
        self.job = job
        self._last = 0.0

    def send(self, event: str, **payload) -> None:
        if self.q is not None:
            self.q.put((self.job, event, payload))

    def bar(self, total: int, desc: str, unit: str = "step") -> RemoteBar:
        return RemoteBar(self, total, desc, unit)

    def echo(self, message: str) -> None:
        self.send("echo", message=message)


class RemoteBar:
    """The subset of the tqdm API the demo uses, forwarded to the parent (throttled to 4 messages/s)."""

    def __init__(self, reporter: Reporter, total: int, desc: str, unit: str):
        self.r, self.n, self.total = reporter, 0, total
        self.postfix: dict[str, Any] = {}
        self._last = 0.0
        self.r.send("bar", desc=desc, total=total, unit=unit)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.time()
        if now - self._last > 0.25 or self.n >= self.total:
            self._last = now
            self.r.send("update", n=self.n, postfix=dict(self.postfix))

    def set_postfix(self, **kw) -> None:
        self.postfix.update({k: str(v) for k, v in kw.items()})

    def close(self) -> None:
        self.r.send("update", n=self.n, postfix=dict(self.postfix))
        self.r.send("close")


class LocalBar(tqdm):
    """A plain tqdm bar (same API as :class:`RemoteBar`)."""


def redraw_interval() -> float:
    """Seconds between redraws: live on a terminal; every 15 s into a log file (CI, SLURM, ``| tee``)."""
    try:
        return 0.1 if sys.stderr.isatty() else 15.0
    except (AttributeError, ValueError):
        return 15.0


def make_bar(total: int, desc: str, reporter: Reporter | None = None, progress: bool = True, unit: str = "step"):
    if reporter is not None:
        return reporter.bar(total, desc, unit)
    return LocalBar(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True, leave=True,
                    mininterval=redraw_interval())


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _call(fn: Callable, job: str, q, log_path: str | None, kwargs: dict) -> Any:
    """Runs in the worker: redirect stdout/stderr to the job's log, call ``fn(reporter=..., **kwargs)``."""
    saved = None
    if log_path:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        saved = (os.dup(1), os.dup(2))
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        return fn(reporter=Reporter(q, job), **kwargs)
    except BaseException as err:
        raise RuntimeError(f"job {job} failed: {type(err).__name__}: {err}\n{traceback.format_exc()}"
                           + (f"(log: {log_path})" if log_path else "")) from None
    finally:
        if saved:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class JobRunner:
    """Run ``(name, fn, kwargs, log_path)`` jobs on ``workers`` single-threaded processes with live bars.

    ``fn`` must be a module-level function taking ``reporter`` plus ``kwargs``; its return value is
    collected. ``workers=0`` runs the jobs in this process, one after the other (same bars). The
    worker processes live until :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(self, workers: int = 2, threads_per_worker: int = 1, progress: bool = True, echo=print):
        self.workers = workers
        self.threads = threads_per_worker
        self.progress = progress
        self.echo = echo
        self._pool: ProcessPoolExecutor | None = None
        self._manager = None
        self._queue = None

    # the worker processes (and their imports of torch/transformers) are shared by every run() call
    def _ensure(self):
        if self.workers == 0:
            if self._queue is None:
                self._queue = queue_mod.Queue()
            return None, self._queue
        if self._pool is None:
            ctx = mp.get_context("spawn")
            self._manager = ctx.Manager()
            self._queue = self._manager.Queue()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init, initargs=(self.threads,))
        return self._pool, self._queue

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None
        self._queue = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, jobs: list[tuple[str, Callable, dict, str | None]],
            on_done: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
        if not jobs:
            return {}
        pool, q = self._ensure()
        bars: dict[str, tqdm] = {}
        free_pos = list(range(max(1, self.workers)))
        pos_of: dict[str, int] = {}
        results: dict[str, Any] = {}

        def drain() -> None:
            while True:
                try:
                    job, event, p = q.get_nowait()
                except queue_mod.Empty:
                    return
                except (EOFError, OSError):
                    return
                if event == "bar":
                    if job in bars:
                        bars[job].close()
                    if job not in pos_of:
                        pos_of[job] = free_pos.pop(0) if free_pos else 0
                    bars[job] = tqdm(total=p["total"], desc=p["desc"], unit=p["unit"], position=pos_of[job],
                                     disable=not self.progress, dynamic_ncols=True, leave=False,
                                     mininterval=redraw_interval())
                elif event == "update" and job in bars:
                    b = bars[job]
                    b.update(p["n"] - b.n)
                    if p.get("postfix"):
                        b.set_postfix(p["postfix"], refresh=False)
                elif event == "close" and job in bars:
                    bars.pop(job).close()
                elif event == "echo":
                    tqdm.write(p["message"], file=sys.stderr)

        def finish(job: str, value: Any) -> None:
            drain()
            if job in bars:
                bars.pop(job).close()
            if job in pos_of:
                free_pos.append(pos_of.pop(job))
                free_pos.sort()
            results[job] = value
            if on_done:
                on_done(job, value)

        try:
            if self.workers == 0:
                for name, fn, kwargs, _log in jobs:
                    value = fn(reporter=_LocalReporter(name, q, drain), **kwargs)
                    finish(name, value)
                return results
            pending = {pool.submit(_call, fn, name, q, log, kwargs): name for name, fn, kwargs, log in jobs}
            while pending:
                done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    name = pending.pop(fut)
                    try:
                        value = fut.result()
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        self.close()
                        raise
                    finish(name, value)
            return results
        finally:
            if self._queue is not None:
                drain()
            for b in bars.values():
                b.close()


class _LocalReporter(Reporter):
    """In-process reporter: messages are drawn right away."""

    def __init__(self, job: str, q, drain: Callable[[], None]):
        super().__init__(q, job)
        self._drain = drain

    def send(self, event: str, **payload) -> None:
        super().send(event, **payload)
        self._drain()
