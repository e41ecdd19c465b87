"""Step time, epochs and GPU-hours from the counted FLOPs, the GPU's peak and a stated utilisation.

``step seconds = accumulation x (max(micro-batch FLOPs / (peak x MFU), weight reads / HBM bandwidth) +``
:data:`LAUNCH_OVERHEAD_S` ``+ communication)``, where the micro-batch FLOPs
are counted (:class:`~scaling.plan.profile.Profile`: ``FlopCounterMode`` over a fake training step, plus the
recomputed forward of the checkpointed layers), the MFU defaults to :data:`DEFAULT_MFU` and is calibrated with
``--mfu`` (a number, ``scaling bench --json`` output, or a past run's ``train_summary.json``), and communication
is what the strategy moves per micro-batch at the stated bandwidths. The weight reads (every frozen weight once
in the forward, once in the backward of the layers the gradient crosses, once more when they are recomputed) and
the fixed launch overhead per micro-batch are what make a tiny micro-batch slow although its FLOPs are few.
Communication: ZeRO-3 gathers the frozen weights for the
forward and again for the backward, offload adds their trip over PCIe; DDP/ZeRO-2 reduce the interface's
gradients once per optimizer step.
"""

from __future__ import annotations

import json
import math
import os

from scaling.config.base import ConfigError
from scaling.plan.gpus import GPU
from scaling.plan.memory import Setting, dtype_bytes
from scaling.plan.profile import Profile

DEFAULT_MFU = 0.35  # a frozen-LLM step is mostly large GEMMs; calibrate with --mfu
NVLINK_GBS = {70: 150.0, 80: 300.0, 90: 450.0}  # per-GPU NVLink bus bandwidth inside a node, GB/s
PCIE_GBS = 12.0  # host <-> device, per GPU (PCIe gen3 x16 measured; gen4/5 are faster)
LAUNCH_OVERHEAD_S = 0.025  # kernel launches + Python per micro-batch (~3000 kernels for a 32-layer step)
DEFAULT_NET_GBPS = 100.0  # inter-node network per node, Gbit/s (EDR InfiniBand; HDR: 200)


def micro_batch_flops(p: Profile, s: Setting) -> float:
    """FLOPs of one micro-batch's forward + backward (+ the recomputed forward with checkpointing)."""
    flops = p.at(p.flops_total, s.micro_batch)
    if s.checkpointing:
        flops += sum(p.at(p.flops_layer_recompute[i], s.micro_batch) for i in p.backprop_layers)
    return flops


def bandwidth_gbs(gpu: GPU, world: int, gpus_per_node: int, net_gbps: float) -> float:
    """Bus bandwidth of a ring collective (GB/s): NVLink inside one node; across nodes the ring crosses each node's
    network link, which bounds it (every byte of an all-gather passes every link once)."""
    intra = NVLINK_GBS.get(gpu.arch, 64.0)
    if world <= gpus_per_node:
        return intra
    return min(intra, net_gbps / 8)


def step_seconds(p: Profile, s: Setting, gpu: GPU, world: int, gpus_per_node: int, mfu: float,
                 net_gbps: float = DEFAULT_NET_GBPS) -> dict:
    """{"compute", "communication", "step"} seconds of one optimizer step on each GPU."""
    peak = gpu.peak_tflops.get(s.precision, gpu.peak_tflops.get("fp16", 100.0)) * 1e12
    math_s = micro_batch_flops(p, s) / (peak * mfu)
    layer_bytes = p.frozen_params * dtype_bytes(s.precision) / max(1, p.n_layers)
    reads = p.frozen_params * dtype_bytes(s.precision) + layer_bytes * len(p.backprop_layers) * (2 if s.checkpointing else 1)
    compute = s.accumulation * (max(math_s, reads / (gpu.memory_gbs * 1e9)) + LAUNCH_OVERHEAD_S)
    bw = bandwidth_gbs(gpu, world, gpus_per_node, net_gbps) * 1e9
    frozen = p.frozen_params * dtype_bytes(s.precision)
    comm = 0.0
    if world > 1:
        if s.zero_stage == 3:
            comm += s.accumulation * 2 * frozen * (world - 1) / world / bw
        comm += 2 * p.trainable_params * 2 * (world - 1) / world / bw  # gradient reduce (16-bit), once per step
    if s.zero_stage == 3 and s.offload:
        comm += s.accumulation * 2 * frozen / world / (PCIE_GBS * 1e9)
    return {"compute": compute, "communication": comm, "step": compute + comm}


def recipe(samples_per_epoch: int | None, global_batch: int, epochs: float | None, max_steps: int | None) -> dict:
    """{"steps", "epochs"} of the config's recipe."""
    if max_steps is not None:
        ep = max_steps * global_batch / samples_per_epoch if samples_per_epoch else None
        return {"steps": max_steps, "epochs": ep}
    if not samples_per_epoch:
        return {"steps": None, "epochs": epochs}
    return {"steps": math.ceil(samples_per_epoch * epochs / global_batch), "epochs": epochs}


def read_mfu(value: str | float | None, p: Profile, gpu: GPU) -> tuple[float, str]:
    """(MFU, where it comes from): a number, ``scaling bench --json`` output (its ``mfu``) or a run's
    ``train_summary.json`` (counted FLOPs per sample x samples seen / (train seconds x GPUs x peak))."""
    if value is None:
        return DEFAULT_MFU, f"default {DEFAULT_MFU:.2f} (calibrate with --mfu)"
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = None
    if v is not None:
        if not 0 < v <= 1:
            raise ConfigError(f"--mfu must lie in (0, 1], got {v}")
        return v, "--mfu"
    path = str(value)
    if not os.path.isfile(path):
        raise ConfigError(f"--mfu {path!r}: neither a number nor a file (give 0.4, a `scaling bench --json` output, "
                          "or RUN/train_summary.json)")
    with open(path) as fh:
        data = json.load(fh)
    found = _find_mfu(data)
    if found is not None:
        return found, f"{path} (mfu)"
    if all(k in data for k in ("samples_seen", "train_seconds")) and data.get("train_seconds"):
        n = data.get("n_gpus") or data.get("world_size") or 1
        flops = p.at(p.flops_total, 1) * data["samples_seen"]
        mfu = flops / (data["train_seconds"] * n * gpu.peak_tflops.get("bf16", gpu.peak_tflops.get("fp16")) * 1e12)
        return mfu, f"{path}: {data['samples_seen']} samples in {data['train_seconds']:.0f} s on {n} GPU(s)"
    raise ConfigError(f"--mfu {path}: no 'mfu' field and not a train_summary.json (samples_seen, train_seconds)")


def _find_mfu(data) -> float | None:
    if isinstance(data, dict):
        v = data.get("mfu")
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
        for x in data.values():
            r = _find_mfu(x)
            if r is not None:
                return r
    if isinstance(data, list):
        for x in data:
            r = _find_mfu(x)
            if r is not None:
                return r
    return None
