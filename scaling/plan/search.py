"""The recommendation: the fastest setting that fits with :data:`MARGIN` to spare and keeps the config's global batch.

Candidates: compute precision (bf16 where the GPU has it, else fp16 with dynamic loss scaling), micro-batch (every
divisor that gives ``global = micro x accumulation x GPUs``), strategy (DDP, ZeRO-2, ZeRO-3, ZeRO-3 with CPU
offload: the shipped ``ds_configs/``) and activation checkpointing off/on. Each candidate gets its per-GPU peak
(:mod:`scaling.plan.memory`) and step time (:mod:`scaling.plan.timing`); one that does not fit is rejected with
the part that overflowed. Ties in time go to the setting with more memory left.
"""

from __future__ import annotations

import dataclasses

from scaling.plan.gpus import CPU_ARCH, GIB, GPU
from scaling.plan.memory import CONTEXT_BYTES, CPU_CONTEXT_BYTES, Setting, breakdown
from scaling.plan.profile import Profile
from scaling.plan.timing import step_seconds

MARGIN = 0.10  # of the GPU's memory kept free beyond the planned peak (spikes the model does not see)
STRATEGIES = [(0, False), (2, False), (3, False), (3, True)]  # (ZeRO stage, offload); 0 = DDP / one process
CPU_STRATEGIES = [(0, False)]  # a CPU run: one process or DDP over gloo


@dataclasses.dataclass
class Candidate:
    setting: Setting
    memory: dict
    time: dict
    fits: bool
    reason: str  # why it was rejected ('' when it fits)


def precisions(gpu: GPU | None) -> list[str]:
    if gpu is None or gpu.arch == CPU_ARCH:
        return ["fp32"]
    return ["bf16"] if gpu.bf16 else ["fp16"]


def micro_batches(global_batch: int, world: int) -> list[int]:
    return [m for m in range(1, global_batch + 1) if global_batch % (m * world) == 0]


def evaluate(p: Profile, s: Setting, gpu: GPU, world: int, gpus_per_node: int, mfu: float, net_gbps: float,
             cached_features: bool, kernels: str, global_batch: int | None = None) -> Candidate:
    mem = breakdown(p, s, world, gpus_per_node, gpu.arch or None, cached_features, kernels,
                    context_bytes=CPU_CONTEXT_BYTES if gpu.arch == CPU_ARCH else CONTEXT_BYTES)
    budget = gpu.memory_bytes * (1 - MARGIN)
    fits = mem["peak"] <= budget
    reason = ""
    t = step_seconds(p, s, gpu, world, gpus_per_node, mfu, net_gbps)
    if global_batch is not None and global_batch % (s.micro_batch * world):
        return Candidate(s, mem, t, False, f"micro-batch {s.micro_batch} x {world} GPUs does not divide the global batch "
                         f"{global_batch} (valid micro-batches: {micro_batches(global_batch, world)[:10]})")
    if not fits:
        over = mem["peak"] - budget
        top = sorted(((k, v) for k, v in mem["gpu"].items() if k != "framework"), key=lambda kv: -kv[1])[:2]
        parts = " + ".join(f"{k} {v / GIB:.1f} GiB" for k, v in top)
        reason = (f"peak {mem['peak'] / GIB:.1f} GiB > {budget / GIB:.1f} GiB ({gpu.name} less {MARGIN:.0%}) by "
                  f"{over / GIB:.1f} GiB; largest parts: {parts}")
    return Candidate(s, mem, t, fits, reason)


def search(p: Profile, gpu: GPU, world: int, gpus_per_node: int, global_batch: int, mfu: float, net_gbps: float,
           cached_features: bool = False, kernels: str = "auto") -> tuple[Candidate | None, list[Candidate]]:
    """(best fitting candidate or None, every candidate evaluated)."""
    out = []
    for precision in precisions(gpu):
        for m in micro_batches(global_batch, world):
            for stage, offload in STRATEGIES if gpu.arch != CPU_ARCH else CPU_STRATEGIES:
                for ckpt in (False, True):
                    s = Setting(precision, m, global_batch // (m * world), stage, offload, ckpt)
                    out.append(evaluate(p, s, gpu, world, gpus_per_node, mfu, net_gbps, cached_features, kernels,
                                        global_batch))
    fitting = [c for c in out if c.fits]
    # fastest; within 0.1 ms the simpler one (no ZeRO-3, no offload, no recomputation), then the smaller peak
    best = min(fitting, key=lambda c: (round(c.time["step"], 4), c.setting.zero_stage, c.setting.offload,
                                       c.setting.checkpointing, c.memory["peak"])) if fitting else None
    return best, out


def rejected_summary(candidates: list[Candidate], best: Candidate | None) -> list[Candidate]:
    """The rejected candidates worth showing: for each strategy and checkpointing, the largest micro-batch that
    fits is followed by the next one up, which did not (what overflowed there)."""
    shown = []
    keys = sorted({(c.setting.zero_stage, c.setting.offload, c.setting.checkpointing) for c in candidates})
    for key in keys:
        group = sorted((c for c in candidates if (c.setting.zero_stage, c.setting.offload, c.setting.checkpointing) == key),
                       key=lambda c: c.setting.micro_batch)
        fit = [c for c in group if c.fits]
        top = fit[-1].setting.micro_batch if fit else 0
        bad = [c for c in group if not c.fits and c.setting.micro_batch > top]
        if bad:
            shown.append(bad[0])
    return shown
