"""Concurrent requests → one ``generate`` call per batch.

Requests wait in a queue; the worker takes the first, then keeps collecting for up to ``max_wait_s``
(or until ``max_batch_size`` are waiting), groups them by key (task, beams, new-token budget: only
requests with the same generation settings share a call) and runs each group as one batch in a
single worker thread (the model is used by one call at a time). While a batch generates, new
requests queue up and form the next batch. Every call is logged (``scaling.serve`` logger):
``batch 3: 8 requests in one generate call (task=caption, beams=1, max_new_tokens=20), 412 ms, 24 waiting``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("scaling.serve")


class Batcher:
    """``await batcher.submit(key, item)`` → ``(result, batch_size)``; ``run_batch(key, items)`` → results."""

    def __init__(self, run_batch: Callable[[Hashable, list[Any]], list[Any]], max_batch_size: int = 8,
                 max_wait_s: float = 0.02, describe: Callable[[Hashable], str] = str):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.describe = describe
        self.calls = 0
        self.queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.create_task(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, key: Hashable, item: Any) -> tuple[Any, int]:
        if self.queue is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((key, item, future))
        return await future

    async def _collect(self) -> list[tuple]:
        assert self.queue is not None
        pending = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(pending) < self.max_batch_size:
            try:
                pending.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                pending.append(await asyncio.wait_for(self.queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        return pending

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._collect()
            groups: dict[Hashable, list[tuple]] = {}
            for entry in pending:
                groups.setdefault(entry[0], []).append(entry)
            for key, entries in groups.items():
                live = [e for e in entries if not e[2].cancelled()]  # a client that went away
                if not live:
                    continue
                self.calls += 1
                call = self.calls
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self._executor, self.run_batch, key, [e[1] for e in live])
                except Exception as err:  # noqa: BLE001 - every waiting request gets the error
                    log.exception("batch %d: generate failed for %d request(s)", call, len(live))
                    for e in live:
                        if not e[2].done():
                            e[2].set_exception(err)
                    continue
                log.info("batch %d: %d request%s in one generate call (%s), %.0f ms, %d waiting", call, len(live),
                         "" if len(live) == 1 else "s", self.describe(key), (time.perf_counter() - t0) * 1000,
                         self.queue.qsize() if self.queue else 0)
                for e, result in zip(live, results):
                    if not e[2].done():
                        e[2].set_result((result, len(live)))
