"""One job per run directory: a lock file held by rank 0 (host, pid, start time, heartbeat).

``RUN/lock`` is created atomically (``O_EXCL``) by rank 0 of a training job before it writes anything
else into the run directory, and removed when the job ends (finished, preempted or failed). While
the job runs, a daemon thread touches it every :data:`HEARTBEAT_S` seconds.

A second job finding the lock decides whether the holder is alive:

* same host: alive while its pid exists *and* is the same process: the lock stores the pid's start token
  (boot id + start time from ``/proc/PID/stat``), so a pid reused by an unrelated process (pid 1 after a
  container restart) is dead. A lock without a token (older versions) is alive only while its heartbeat is
  younger than :data:`STALE_AFTER_S` as well;
* another host (the pid cannot be checked): alive while the heartbeat is younger than
  :data:`STALE_AFTER_S` (a requeued SLURM job on another node takes over the lock of a killed one).

A live holder makes the new job stop with a :class:`ConfigError` that names it and the fix; a dead
holder's lock is taken over with a warning. The takeover is atomic: only the job that creates
``RUN/lock.takeover`` (``O_EXCL``) may replace the dead lock, and only if the lock is still the one it judged
dead (same token); every job re-reads the lock after creating it and holds it only if the token is its own.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from scaling.config.base import ConfigError

LOCK = "lock"
TAKEOVER = "lock.takeover"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
TAKEOVER_STALE_S = 60.0  # a takeover file older than this was left by a job killed while taking over


def start_token(pid: int) -> str | None:
    """``BOOT_ID:START_TICKS`` of a live process (None when it cannot be read: not Linux, no such pid)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        start = stat.rsplit(")", 1)[1].split()[19]  # field 22, after the parenthesised command name
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except (OSError, IndexError):
        return None
    return f"{boot}:{start}"


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read(output_dir: str) -> dict | None:
    """The holder recorded in ``RUN/lock`` (``{}`` when unreadable), or None without a lock."""
    path = os.path.join(output_dir, LOCK)
    try:
        with open(path) as fh:
            info = json.load(fh)
        info["heartbeat"] = os.path.getmtime(path)
        return info if isinstance(info, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"heartbeat": _mtime(path)}


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def holder_alive(info: dict, now: float | None = None, stale_after: float = STALE_AFTER_S) -> bool:
    """Is the job that wrote ``info`` (a lock's content + its ``heartbeat`` mtime) still running? See the module
    docstring."""
    now = time.time() if now is None else now
    fresh = now - float(info.get("heartbeat") or 0.0) < stale_after
    if info.get("host") == _host() and isinstance(info.get("pid"), int):
        pid = info["pid"]
        if not _pid_alive(pid):
            return False
        recorded, current = info.get("pid_start"), start_token(pid)
        if recorded and current:
            return recorded == current  # the same process (however old its heartbeat: it may be suspended)
        return fresh  # no token to compare: the pid may belong to another process; the heartbeat decides
    return fresh


class RunLock:
    """``with RunLock(run_dir):`` or :meth:`acquire` / :meth:`release` (rank 0 only)."""

    def __init__(self, output_dir: str, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
                 warn: Callable[[str], None] | None = None):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.warn = warn or (lambda msg: None)
        self.held = False
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _info(self) -> dict:
        return {"host": _host(), "pid": os.getpid(), "pid_start": start_token(os.getpid()), "token": self.token,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}

    def _create(self) -> bool:
        """Create the lock (``O_EXCL``) and confirm by re-reading it that it is ours."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(self._info(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        return (read(self.output_dir) or {}).get("token") == self.token

    def _take_over(self, judged: dict) -> None:
        """Remove the dead lock ``judged``, atomically among racing jobs: under ``lock.takeover`` (``O_EXCL``), and
        only if the lock still is the one judged dead (a racer may have replaced it with its own live lock)."""
        takeover = os.path.join(self.output_dir, TAKEOVER)
        try:
            fd = os.open(takeover, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if time.time() - _mtime(takeover) > TAKEOVER_STALE_S:  # left by a job killed while taking over
                try:
                    os.rename(takeover, f"{takeover}.stale.{os.getpid()}")
                    os.remove(f"{takeover}.stale.{os.getpid()}")
                except OSError:
                    pass
            time.sleep(0.05)
            return
        try:
            os.close(fd)
            now = read(self.output_dir)
            same = now is not None and all(now.get(k) == judged.get(k) for k in ("token", "pid", "host", "started"))
            if same:
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
        finally:
            try:
                os.remove(takeover)
            except FileNotFoundError:
                pass

    def acquire(self) -> RunLock:
        os.makedirs(self.output_dir, exist_ok=True)
        for _ in range(20):
            if self._create():
                break
            info = read(self.output_dir)
            if info is None:  # released meanwhile
                continue
            if holder_alive(info, stale_after=self.stale_after_s):
                who = f"host {info.get('host', '?')} pid {info.get('pid', '?')}"
                if info.get("slurm_job_id"):
                    who += f" (SLURM job {info['slurm_job_id']})"
                age = time.time() - float(info.get("heartbeat") or 0.0)
                raise ConfigError(
                    f"{self.output_dir} is in use by a live training job: {who}, started {info.get('started', '?')}, "
                    f"lock refreshed {age:.0f} s ago. Two jobs writing one run directory would mix their checkpoints. "
                    f"Wait for it to end or stop it (its rank 0 is {who}), or use another train.output_dir. If that "
                    f"job is dead (e.g. its node was lost), delete {self.path}"
                )
            self._take_over(info)
            if self._create():
                self.warn(f"took over the lock of a dead job on {self.output_dir} (host {info.get('host', '?')} pid "
                          f"{info.get('pid', '?')}, started {info.get('started', '?')})")
                break
        else:
            raise ConfigError(f"could not take the lock {self.path} (another job is starting on it); try again")
        self.held = True
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        info = read(self.output_dir)
        if info and info.get("token") == self.token:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
