"""Leaving the process group at the end of a run (``scaling.training.distributed.shutdown``), 2 gloo ranks.

A rank that finishes first (rank 1: rank 0 still writes the summary) must not tear its connections down while
another rank may still use them: ``shutdown()`` waits for every rank, ``shutdown(clean=False)`` (after an error,
when the others may never arrive) does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scaling.training.distributed import free_port

pytestmark = [pytest.mark.distributed]

RANK_SCRIPT = r"""
import json, sys, time
from scaling.training import distributed
rank, port, clean, out = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "clean", sys.argv[4]
env = distributed.DistEnv(rank=rank, world_size=2, local_rank=rank, source="torch")
import os
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
distributed.init(env, distributed.pick_device(env, "cpu"), timeout_min=2)
distributed.barrier()
# what a finished run leaves behind (built by both ranks: DDP's constructor is collective): a DDP module (whose reducer holds the group) in a reference cycle
import gc, weakref, torch
gc.disable()  # only shutdown() may collect it here
class Holder:
    pass
holder = Holder()
holder.model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
holder.itself = holder
ddp = weakref.ref(holder.model)
del holder
if rank == 0:
    time.sleep(3)  # rank 0 still busy (the summary, the last save) when rank 1 is done
entered = time.time()
distributed.shutdown(clean=clean)
json.dump({"entered": entered, "left": time.time(), "ddp_alive_after_shutdown": ddp() is not None},
          open(f"{out}/rank{rank}.json", "w"))
"""


def _run_two_ranks(tmp_path, clean: bool) -> dict[int, dict]:
    port = str(free_port())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(rank), port, "clean" if clean else "error",
                               str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    return {rank: json.load(open(tmp_path / f"rank{rank}.json")) for rank in (0, 1)}


def test_a_clean_shutdown_waits_for_every_rank(tmp_path):
    times = _run_two_ranks(tmp_path, clean=True)
    # rank 1 arrived first but left only after rank 0 had arrived
    assert times[1]["entered"] < times[0]["entered"] <= times[1]["left"], times


def test_the_objects_holding_the_group_are_freed_before_it_is_destroyed(tmp_path):
    """A DDP module left in a reference cycle (the trainer's) is collected by shutdown(), not at interpreter exit,
    where destroying its process group's gloo threads aborted a finished rank (SIGABRT, seen in CI)."""
    times = _run_two_ranks(tmp_path, clean=True)
    assert [times[rank]["ddp_alive_after_shutdown"] for rank in (0, 1)] == [False, False]


def test_a_shutdown_after_an_error_does_not_wait(tmp_path):
    times = _run_two_ranks(tmp_path, clean=False)
    assert times[1]["left"] < times[0]["entered"], times
