"""The request batcher of ``scaling serve`` alone (no model): requests with the same key share a call, no call
exceeds the batch size, every request gets its own result, and a failing call fails only its own requests."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from scaling.serve.batcher import Batcher


def run_async(coro):
    """``asyncio.run`` in a thread of its own: the session's Playwright browser keeps an event loop in this one."""
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_concurrent_requests_share_calls_by_key_and_get_their_own_results():
    calls: list[tuple[str, list[int]]] = []

    def run_batch(key, items):
        calls.append((key, list(items)))
        time.sleep(0.05)  # while a call runs, the next requests queue up
        return [f"{key}:{i * i}" for i in items]

    async def scenario():
        batcher = Batcher(run_batch, max_batch_size=4, max_wait_s=0.02)
        await batcher.start()
        try:
            keys = ["a" if i % 3 else "b" for i in range(30)]
            return keys, await asyncio.gather(*(batcher.submit(k, i) for i, k in enumerate(keys)))
        finally:
            await batcher.stop()

    keys, results = run_async(scenario())
    assert [r for r, _ in results] == [f"{k}:{i * i}" for i, k in enumerate(keys)]
    assert all(len(items) <= 4 for _, items in calls) and len(calls) < 30
    assert sum(len(items) for _, items in calls) == 30
    assert all(all(keys[i] == key for i in items) for key, items in calls)  # one key per call
    assert max(size for _, size in results) > 1


def test_a_failing_call_fails_its_requests_and_the_batcher_goes_on():
    lock = threading.Lock()

    def run_batch(key, items):
        with lock:
            if key == "bad":
                raise RuntimeError("model exploded")
            return [i + 1 for i in items]

    async def scenario():
        batcher = Batcher(run_batch, max_batch_size=8, max_wait_s=0.01)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="model exploded"):
                await batcher.submit("bad", 1)
            return await batcher.submit("good", 41)
        finally:
            await batcher.stop()

    assert run_async(scenario()) == (42, 1)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(lambda k, i: i, max_batch_size=0)
