"""Kernel tests: run the Triton kernels under the CPU interpreter when no CUDA GPU is present.

``TRITON_INTERPRET=1`` must be in the environment before the ``@triton.jit`` kernels are decorated
(i.e. before ``scaling.kernels.*`` is imported), and ideally before ``triton`` itself is imported.
It is set here, at conftest import, only when CUDA is unavailable (on a GPU machine the compiled
kernels are tested). Running ``TRITON_INTERPRET=1 pytest tests/kernels`` is the cleanest; if some
earlier import (e.g. the shared ``tests/conftest.py`` pulling in ``torch._dynamo``, which imports
triton) came first, triton's ``@jit`` standard library and any already imported ``scaling.kernels``
modules are rebuilt for the interpreter below.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch

HAS_CUDA = torch.cuda.is_available()



def _rebuild_triton_stdlib_for_interpreter() -> None:
    """If ``triton`` was imported before TRITON_INTERPRET was set (``torch._dynamo`` imports it, and a
    shared conftest may import that first), triton's own ``@jit`` library functions (``tl.zeros``,
    ``tl.sum``, ``tl.cumsum``, ...) were built for compilation; rebuild them for the interpreter."""
    tl = sys.modules.get("triton.language")
    std = sys.modules.get("triton.language.standard")
    if tl is None or std is None:
        return
    from triton.runtime.interpreter import InterpretedFunction

    if isinstance(getattr(std, "zeros", None), InterpretedFunction):
        return
    old = dict(vars(std))
    importlib.reload(std)
    for name, value in vars(std).items():
        if isinstance(value, InterpretedFunction) and getattr(tl, name, None) is old.get(name):
            setattr(tl, name, value)


if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"
    _rebuild_triton_stdlib_for_interpreter()
    _dispatch = sys.modules.get("scaling.kernels.dispatch")
    if _dispatch is not None and not getattr(_dispatch, "_INTERPRET_AT_IMPORT", False):
        # dependency order: helpers first, then the op modules, then the patcher
        for _name in ("_triton_utils", "dispatch", "attention", "prefix_injection", "target_loss",
                      "rms_norm", "swiglu", "swiglu_packed", "rope", "fp8_linear", "patch"):
            _mod = sys.modules.get(f"scaling.kernels.{_name}")
            if _mod is not None:
                importlib.reload(_mod)

import pytest  # noqa: E402

DEVICE = "cuda" if HAS_CUDA else "cpu"


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
