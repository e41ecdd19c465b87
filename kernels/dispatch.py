"""Triton-vs-PyTorch dispatch shared by every op in ``scaling.kernels``.

Each functional op (``attention``, ``inject_prefix``, ``target_cross_entropy``, ``rms_norm`` ...)
takes a ``mode`` argument and asks :func:`use_triton` which implementation to run:

* ``"torch"``  -- always the pure-PyTorch reference (``<op>_reference``).
* ``"triton"`` -- always the Triton kernel; raises a clear ``RuntimeError`` when that is impossible
  (triton missing, or a CPU tensor while the Triton interpreter is not active).
* ``"auto"``   -- Triton when the tensor lives on a CUDA device and triton is importable, except
  for *matmul-heavy* kernels (attention, fused lm-head loss) on GPUs of compute capability < 8.0
  (V100 / T4): current Triton lowers ``tl.dot`` to FMA loops there (no tensor cores), so SDPA /
  cuBLAS is much faster. Memory-bound kernels (injection, RMSNorm, SwiGLU, rotary) stay in Triton
  on those GPUs. CPU tensors use the reference in ``auto`` mode, even under the interpreter.

Interpreter note: Triton decides *when a kernel is decorated* (module import) whether ``@triton.jit``
builds an interpreted function, so ``TRITON_INTERPRET=1`` must be in the environment before
``scaling.kernels.*`` is imported (``tests/kernels/conftest.py`` does that on CPU-only machines).
"""

from __future__ import annotations

import functools
import os

import torch

_MODES = ("auto", "triton", "torch")

# State of the interpreter switch when the op modules were imported (they import this module
# before decorating their kernels, so this is the mode their @triton.jit functions were built in).
_INTERPRET_AT_IMPORT = os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when ``import triton`` works."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def interpreter_active() -> bool:
    """True when the Triton kernels of this package were built for the CPU interpreter."""
    return _INTERPRET_AT_IMPORT and os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=16)
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def device_capability(tensor: torch.Tensor) -> tuple[int, int]:
    """Compute capability of ``tensor``'s CUDA device ((0, 0) for non-CUDA tensors)."""
    if not tensor.is_cuda:
        return (0, 0)
    index = tensor.device.index if tensor.device.index is not None else torch.cuda.current_device()
    return _capability(index)


def use_triton(tensor: torch.Tensor, matmul_heavy: bool, mode: str = "auto") -> bool:
    """Decide whether an op on ``tensor`` runs its Triton kernel (True) or the PyTorch reference.

    Args:
        tensor: the op's main input (its device decides).
        matmul_heavy: True for kernels dominated by ``tl.dot`` (attention, fused lm-head loss).
        mode: ``"auto"`` | ``"triton"`` | ``"torch"`` (see the module docstring).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if mode == "torch":
        return False
    if mode == "triton":
        if not triton_available():
            raise RuntimeError("mode='triton' was requested but `import triton` fails in this environment")
        if tensor.is_cuda:
            return True
        if interpreter_active():
            return True
        raise RuntimeError(
            f"mode='triton' was requested for a tensor on {tensor.device}, but Triton kernels need a CUDA "
            "tensor, or the Triton CPU interpreter (set TRITON_INTERPRET=1 in the environment *before* "
            "scaling.kernels is imported)."
        )
    # auto
    if not tensor.is_cuda or not triton_available():
        return False
    if interpreter_active():
        # Interpreted kernels on a GPU would round-trip through host memory: never pick that silently.
        return False
    if matmul_heavy and device_capability(tensor) < (8, 0):
        return False
    return True


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (>= 1)."""
    n = int(n)
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@functools.lru_cache(maxsize=16)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_programs_hint(tensor: torch.Tensor, cpu_default: int = 4) -> int:
    """Number of streaming multiprocessors of ``tensor``'s GPU (small constant on CPU/interpreter)."""
    if not tensor.is_cuda:
        return cpu_default
    index = tensor.device.index if tensor.device.index is not None else torch.cuda.current_device()
    return _sm_count(index)


__all__ = [
    "use_triton",
    "triton_available",
    "interpreter_active",
    "device_capability",
    "next_power_of_2",
    "num_programs_hint",
]
