"""The run directory a training job owns: its lock, requeue marker, ``config.yaml`` and ``ranks/`` files.

``RUN/lock`` (rank 0, :class:`~scaling.training.runlock.RunLock`) keeps a second live job out; a requeue
marker left by an earlier job is removed first of all (a job failing at start-up must not be requeued
forever); :func:`prepare` refuses to mix a fresh run with an earlier run's checkpoints and writes the
resolved ``config.yaml``; :func:`write_rank_file` records who each process was (``RUN/ranks/rankNNNNN.json``,
for debugging multi-node jobs).
"""

from __future__ import annotations

import os

import torch
import yaml

from scaling.common.run_layout import REQUEUE_FILE
from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt
from scaling.training import distributed


def remove_requeue_marker(output_dir: str) -> None:
    try:
        os.remove(os.path.join(output_dir, REQUEUE_FILE))
    except FileNotFoundError:
        pass


def refuse_earlier_run(cfg) -> None:
    """``train.resume=never`` in a directory holding checkpoints: the two runs' checkpoints would mix."""
    root = ckpt.checkpoints_dir(cfg.train.output_dir)
    earlier = ckpt.list_checkpoints(root) if cfg.train.resume == "never" else []
    if earlier:
        raise ConfigError(
            f"{root} holds checkpoints of an earlier run ({os.path.basename(earlier[-1][1])} the newest) and "
            f"train.resume=never starts afresh: the two runs' checkpoints would mix (pruning keeps the highest "
            f"steps, a later resume could pick the old run's). Use another train.output_dir, move or delete "
            f"{root}, or resume it with train.resume=auto"
        )


def prepare(output_dir: str, cfg_dict: dict, is_main: bool) -> None:
    """Rank 0: create ``RUN/checkpoints``, remove partial checkpoints, write ``RUN/config.yaml``."""
    if not is_main:
        return
    root = ckpt.checkpoints_dir(output_dir)
    os.makedirs(root, exist_ok=True)
    ckpt.clean_partial(root)
    with open(os.path.join(output_dir, "config.yaml"), "w") as fh:
        yaml.safe_dump(cfg_dict, fh, sort_keys=False)


def write_rank_file(output_dir: str, env, device, model, strategy, accumulation: int, fused: dict) -> None:
    """``RUN/ranks/rankNNNNN.json``: who this process was (debugging multi-node jobs; read by the tests)."""
    local = total = 0
    for _, p in model.named_parameters():
        if not p.requires_grad:
            total += getattr(p, "ds_numel", p.numel())
            local += p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
    info = {
        "rank": env.rank, "world_size": env.world_size, "local_rank": env.local_rank,
        "launcher_env": env.source, "process_group_size": distributed.world_size(),
        "process_group_rank": distributed.rank(), "host": os.uname().nodename, "pid": os.getpid(),
        # how the launcher reached this node: SLURM's node name, the SSH connection of a hostfile launcher
        "slurm_node": os.environ.get("SLURMD_NODENAME"), "ssh_connection": os.environ.get("SSH_CONNECTION"),
        "device": str(device), "strategy": strategy.kind, "zero_stage": strategy.zero_stage,
        "frozen_params_total": total, "frozen_params_local": local, "accumulation": accumulation,
        "fused_llm_layers": fused.get("fused_layers", 0), "fp8_llm_layers": fused.get("fp8_layers", 0),
        # rotary frequencies must stay fp32 under bf16/fp16 training (DeepSpeed < 0.19.2 cast every buffer)
        "inv_freq_dtypes": sorted({str(b.dtype) for n, b in model.named_buffers() if n.endswith("inv_freq")}),
        # the CPU threads this rank computed with (a launcher that loses OMP_NUM_THREADS on the way, as pdsh's bare
        # remote shell does, leaves torch one thread per core: other sums, other losses)
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
    }
    os.makedirs(os.path.join(output_dir, "ranks"), exist_ok=True)
    ckpt.write_json_atomic(os.path.join(output_dir, "ranks", f"rank{env.rank:05d}.json"), info)
