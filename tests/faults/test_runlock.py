"""Fault campaign round three, the run lock (issue 24 item 8): a dead job's lock is taken over by exactly one of the
jobs racing for it, and liveness is judged by a start-time token stored with the pid and by the heartbeat."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest

from scaling.config.base import ConfigError
from scaling.training import runlock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _racer(out, start, done, results):
    start.wait()
    try:
        lock = runlock.RunLock(out).acquire()
    except ConfigError as err:
        results.put(("refused", str(err)[:300]))
        done.wait()
        return
    results.put(("held", lock.token))
    done.wait()  # hold it until every racer has tried
    lock.release()


def test_exactly_one_of_three_jobs_racing_for_a_dead_jobs_lock_takes_it(tmp_path, monkeypatch):
    real = runlock.holder_alive

    def slow_judgement(info, *a, **kw):  # widen the window between judging the lock dead and acting on it
        alive = real(info, *a, **kw)
        time.sleep(0.3)
        return alive

    monkeypatch.setattr(runlock, "holder_alive", slow_judgement)
    ctx = multiprocessing.get_context("fork")
    for trial in range(3):
        out = str(tmp_path / f"run{trial}")
        os.makedirs(out)
        with open(os.path.join(out, runlock.LOCK), "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": _dead_pid(), "started": "earlier"}, fh)
        start, done, results = ctx.Barrier(3), ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_racer, args=(out, start, done, results)) for _ in range(3)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        held = [r for r in got if r[0] == "held"]
        assert len(held) == 1, got
        assert all("in use by a live training job" in r[1] for r in got if r[0] == "refused"), got
        assert not os.path.exists(os.path.join(out, runlock.TAKEOVER))


def _lock(out, **info):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, runlock.LOCK)
    with open(path, "w") as fh:
        json.dump({"host": socket.gethostname(), "started": "earlier", **info}, fh)
    return path


def test_a_pid_reused_by_an_unrelated_process_does_not_hold_the_lock(tmp_path):
    # pid 1 exists, but it is not the process that wrote the lock (another start time, e.g. after a container restart)
    _lock(str(tmp_path / "a"), pid=1, pid_start="another-boot:12345")
    with runlock.RunLock(str(tmp_path / "a")) as held:
        assert runlock.read(str(tmp_path / "a"))["token"] == held.token


def test_a_lock_without_a_token_is_judged_by_its_heartbeat(tmp_path):
    path = _lock(str(tmp_path / "b"), pid=1)
    with pytest.raises(ConfigError, match="in use by a live training job"):  # a fresh heartbeat: maybe alive
        runlock.RunLock(str(tmp_path / "b")).acquire()
    old = time.time() - 3600
    os.utime(path, (old, old))  # an hour old: dead, whatever process has pid 1 now
    with runlock.RunLock(str(tmp_path / "b")):
        pass


def test_the_holder_itself_is_alive_however_old_its_heartbeat(tmp_path):
    path = _lock(str(tmp_path / "c"), pid=os.getpid(), pid_start=runlock.start_token(os.getpid()))
    old = time.time() - 3600
    os.utime(path, (old, old))  # suspended (scontrol suspend, SIGSTOP): still the same process
    with pytest.raises(ConfigError, match="in use by a live training job"):
        runlock.RunLock(str(tmp_path / "c")).acquire()
    assert runlock.start_token(os.getpid()) and runlock.start_token(_dead_pid()) is None
