"""Who am I in the job: rank, world size and device from the launcher's environment; process groups.

Every launcher is read the same way, so one command runs under all of them:

* ``torchrun``, ``accelerate launch``, ``deepspeed``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
  (+ ``MASTER_ADDR``/``MASTER_PORT``), which win when present;
* ``srun`` starting one task per GPU directly: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (or
  ``SLURM_NTASKS``), ``SLURM_LOCALID``. Only inside a job *step* (``SLURM_STEP_ID`` set): a
  ``python -m scaling train`` typed in the batch shell of an 8-task allocation is one process,
  not rank 0 of 8;
* nothing: a single process.

:func:`init` exports the variables ``torch.distributed`` and DeepSpeed read, picks the device
(``cuda:LOCAL_RANK`` when CUDA exists, else CPU) and creates the process group (NCCL on GPU, gloo
on CPU) when the world has more than one rank or DeepSpeed needs one.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os
import socket
import subprocess

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single"  # torch | slurm | single

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: dict, key: str) -> int | None:
    value = env.get(key)
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def read_env(env: dict | None = None) -> DistEnv:
    """Rank/world size/local rank from the environment (see the module docstring for the order)."""
    env = dict(os.environ if env is None else env)
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and world is not None:
        local = _int(env, "LOCAL_RANK")
        return DistEnv(rank, world, rank if local is None else local, "torch")
    if env.get("SLURM_STEP_ID") is not None and _int(env, "SLURM_PROCID") is not None:
        world = _int(env, "SLURM_STEP_NUM_TASKS") or _int(env, "SLURM_NTASKS") or 1
        if world > 1:
            return DistEnv(_int(env, "SLURM_PROCID") or 0, world, _int(env, "SLURM_LOCALID") or 0, "slurm")
    return DistEnv()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_master_addr() -> str | None:
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if not nodes:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else None
    except (OSError, subprocess.SubprocessError):
        return None


def export_env(env: DistEnv) -> None:
    """Set RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT for torch.distributed and DeepSpeed."""
    os.environ["RANK"] = str(env.rank)
    os.environ["WORLD_SIZE"] = str(env.world_size)
    os.environ["LOCAL_RANK"] = str(env.local_rank)
    if "MASTER_ADDR" not in os.environ:
        addr = _slurm_master_addr() if env.source == "slurm" else None
        if env.distributed and addr is None:
            raise RuntimeError(
                "MASTER_ADDR is not set: export MASTER_ADDR (the first node's host name) and MASTER_PORT, "
                "or launch through torchrun/deepspeed/launch/slurm_train.sbatch"
            )
        os.environ["MASTER_ADDR"] = addr or "127.0.0.1"
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = "29500" if env.distributed else str(free_port())


def pick_device(env: DistEnv, want: str = "auto") -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (or asked for), else CPU."""
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible (check CUDA_VISIBLE_DEVICES / the node's GPUs)")
    n = torch.cuda.device_count()
    if env.local_rank >= n:
        raise RuntimeError(
            f"LOCAL_RANK {env.local_rank} but only {n} GPU(s) are visible: start one process per GPU "
            f"(--nproc_per_node / --ntasks-per-node = GPUs per node)"
        )
    torch.cuda.set_device(env.local_rank)
    return torch.device("cuda", env.local_rank)


def init(env: DistEnv, device: torch.device, deepspeed: bool = False, backend: str | None = None, timeout_min: int = 30) -> None:
    """Create the default process group (if not there yet). DeepSpeed's own initialiser when it runs."""
    if dist.is_available() and dist.is_initialized():
        return
    if not env.distributed and not deepspeed:
        return
    export_env(env)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    timeout = datetime.timedelta(minutes=timeout_min)
    if deepspeed:
        import deepspeed as ds

        ds.init_distributed(dist_backend=backend, auto_mpi_discovery=False, timeout=timeout)
    else:
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size, timeout=timeout, **kwargs)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def all_reduce(values: list[float], op: str = "sum", device: torch.device | str = "cpu") -> list[float]:
    """Reduce a few Python floats over all ranks (one collective); identity in a single process."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.tolist()


def broadcast_object(obj, src: int = 0):
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown(clean: bool = True) -> None:
    """Leave the process group. ``clean`` (the run ended normally on every rank): wait for every rank first, so
    that no rank closes its connections while another still talks to it (a gloo peer that loses a connection
    mid-operation aborts its process). After an error, leave at once: the other ranks may never arrive."""
    if is_initialized():
        # free what still holds the group -- the trainer's DDP module (its reducer keeps the group) sits in reference
        # cycles that only the garbage collector breaks -- now, while the runtime is whole: destroyed only at
        # interpreter exit, the group's gloo threads end the process with "terminate called without an active
        # exception" (SIGABRT) after a run that finished
        gc.collect()
        try:
            if clean and world_size() > 1:
                dist.barrier()
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
