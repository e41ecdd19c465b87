"""Triton-vs-PyTorch dispatch rules."""

from __future__ import annotations

import pytest
import torch

import scaling.kernels.dispatch as dispatch
from scaling.kernels.dispatch import use_triton


def test_torch_mode_never_uses_triton():
    assert use_triton(torch.zeros(1), matmul_heavy=False, mode="torch") is False
    assert use_triton(torch.zeros(1), matmul_heavy=True, mode="torch") is False


def test_bad_mode():
    with pytest.raises(ValueError):
        use_triton(torch.zeros(1), matmul_heavy=False, mode="fast")


def test_auto_on_cpu_uses_reference():
    # even under the interpreter, auto never picks Triton for CPU tensors
    assert use_triton(torch.zeros(1), matmul_heavy=False, mode="auto") is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_forced_triton_on_cpu_needs_interpreter(monkeypatch):
    assert use_triton(torch.zeros(1), matmul_heavy=True, mode="triton") is True  # conftest set the interpreter
    monkeypatch.setattr(dispatch, "_INTERPRET_AT_IMPORT", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        use_triton(torch.zeros(1), matmul_heavy=False, mode="triton")


def test_forced_triton_without_triton(monkeypatch):
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="import triton"):
        use_triton(torch.zeros(1), matmul_heavy=False, mode="triton")
    assert use_triton(torch.zeros(1), matmul_heavy=False, mode="auto") is False


def test_auto_on_pre_ampere_gpu_keeps_memory_bound_kernels(monkeypatch):
    class FakeCuda:
        is_cuda = True
        device = torch.device("cuda", 0)

    monkeypatch.setattr(dispatch, "interpreter_active", lambda: False)
    monkeypatch.setattr(dispatch, "device_capability", lambda t: (7, 0))  # V100
    assert use_triton(FakeCuda(), matmul_heavy=True, mode="auto") is False
    assert use_triton(FakeCuda(), matmul_heavy=False, mode="auto") is True
    assert use_triton(FakeCuda(), matmul_heavy=True, mode="triton") is True
    monkeypatch.setattr(dispatch, "device_capability", lambda t: (9, 0))  # H100
    assert use_triton(FakeCuda(), matmul_heavy=True, mode="auto") is True


def test_next_power_of_2():
    assert [dispatch.next_power_of_2(n) for n in (0, 1, 2, 3, 80, 128, 129)] == [1, 1, 2, 4, 128, 128, 256]
