"""The GPUs the planner knows, as data: memory, dense peak throughput per precision, generation features.

Peak figures are NVIDIA's dense tensor-core numbers (no sparsity) for the SXM parts; FP8 only from sm_89.
``--gpu-mem GB --peak-tflops N`` describes any other card (``custom``).
"""

from __future__ import annotations

import dataclasses

from scaling.config.base import ConfigError, suggest

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float  # what CUDA reports as total (a "32 GB" V100 has 31.7 GiB)
    arch: int  # compute capability x 10
    peak_tflops: dict[str, float]  # dense tensor-core peak per compute precision
    bf16: bool
    flash_attention: bool  # FlashAttention kernels of PyTorch SDPA (sm_80+); else the memory-efficient kernel
    memory_gbs: float = 1000.0  # HBM bandwidth, GB/s (reading the frozen weights bounds a small micro-batch)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)

    @property
    def fp8(self) -> bool:
        return self.arch >= 89


GPUS: dict[str, GPU] = {
    "v100-16": GPU("V100-SXM2-16GB", 15.77, 70, {"fp16": 125.0, "fp32": 15.7}, bf16=False, flash_attention=False, memory_gbs=900.0),
    "v100-32": GPU("V100-SXM2-32GB", 31.74, 70, {"fp16": 125.0, "fp32": 15.7}, bf16=False, flash_attention=False, memory_gbs=900.0),
    "a100-40": GPU("A100-SXM4-40GB", 39.39, 80, {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}, bf16=True, flash_attention=True, memory_gbs=1555.0),
    "a100-80": GPU("A100-SXM4-80GB", 79.15, 80, {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}, bf16=True, flash_attention=True, memory_gbs=2039.0),
    "h100-80": GPU("H100-SXM5-80GB", 79.11, 90, {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "fp32": 67.0}, bf16=True,
                   flash_attention=True, memory_gbs=3350.0),
    "h200": GPU("H200-SXM-141GB", 139.8, 90, {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "fp32": 67.0}, bf16=True,
                flash_attention=True, memory_gbs=4800.0),
}


CPU_ARCH = 0  # ``--gpu cpu``: plan a CPU run (fp32, no CUDA context; --gpu-mem is the memory it may use)


def get_gpu(name: str | None, memory_gb: float | None = None, peak_tflops: float | None = None, arch: int = 80) -> GPU:
    """A GPU of :data:`GPUS`, ``cpu``, or a custom one from ``--gpu-mem GB --peak-tflops N`` (treated as sm_``arch``)."""
    if (name or "").lower() == "cpu":
        return GPU(f"CPU ({memory_gb or 16:g} GB)", (memory_gb or 16) * 1e9 / GIB, CPU_ARCH,
                   {"fp32": peak_tflops or 0.5}, bf16=False, flash_attention=False, memory_gbs=20.0)
    if memory_gb is not None or peak_tflops is not None:
        if memory_gb is None or peak_tflops is None:
            raise ConfigError("a custom GPU needs both --gpu-mem GB and --peak-tflops N (dense 16-bit tensor TFLOP/s)")
        if memory_gb <= 0 or peak_tflops <= 0:
            raise ConfigError(f"--gpu-mem and --peak-tflops must be > 0, got {memory_gb} and {peak_tflops}")
        base = GPUS.get(name or "", None)
        a = base.arch if base else arch
        return GPU(f"custom {memory_gb:g} GB / {peak_tflops:g} TFLOP/s", memory_gb * 1e9 / GIB, a,
                   {"bf16": peak_tflops, "fp16": peak_tflops, "fp32": peak_tflops / 8}, bf16=a >= 80, flash_attention=a >= 80,
                   memory_gbs=base.memory_gbs if base else 1500.0)
    key = (name or "").lower()
    if key not in GPUS:
        raise ConfigError(f"unknown GPU {name!r}{suggest(key, GPUS)}; valid: {sorted(GPUS)}, cpu (or --gpu-mem GB "
                          "--peak-tflops N)")
    return GPUS[key]


def match_gpu(device_name: str, props) -> tuple[str | None, float | None, float | None, int]:
    """(table key, None, None, arch) for a CUDA device of the table, else (None, its memory in GB, a 16-bit peak guess
    of the nearest generation, arch) -- what ``scaling train --check`` plans for on a GPU machine (the compute
    capability decides bf16, FlashAttention and FP8 for a GPU outside the table)."""
    name = device_name.upper()
    gib = props.total_memory / GIB
    arch = props.major * 10 + props.minor
    for key, gpu in GPUS.items():
        family = gpu.name.split("-")[0]
        if family in name and abs(gpu.memory_gib - gib) < 0.15 * gpu.memory_gib:
            return key, None, None, arch
    guess = {70: 125.0, 75: 65.0, 80: 312.0, 86: 150.0, 89: 360.0, 90: 989.0}.get(arch, 100.0)
    return None, props.total_memory / 1e9, guess, arch
