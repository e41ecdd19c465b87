"""The kernels compile for a real GPU target (sm_90, via triton's bundled ptxas), without a GPU.

The interpreter tests check the numerics but not that the code generator accepts the kernels or
that their tiles fit in shared memory; ``scaling.kernels.aot_check`` does, in a fresh process
where ``TRITON_INTERPRET`` is unset. Here in its quick form (bf16, the project's real shapes);
run ``python -m scaling.kernels.aot_check`` for all dtypes / head dims and sm_80 + sm_90.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _has_cuda_backend() -> bool:
    try:
        import triton.backends.nvidia as nv
    except Exception:
        return False
    return (Path(nv.__file__).parent / "bin" / "ptxas").exists() or shutil.which("ptxas") is not None


@pytest.mark.skipif(not _has_cuda_backend(), reason="triton's CUDA backend / ptxas not available")
def test_all_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "scaling.kernels.aot_check", "--arch", "90", "--quick", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    records = json.loads(proc.stdout)
    kernels = {r["kernel"] for r in records}
    for name in ("_attn_fwd_kernel", "_attn_bwd_dkdv_kernel", "_attn_bwd_dq_kernel", "_ce_loss_grad_kernel",
                 "_inject_prefix_kernel", "_overwrite_slots_fwd_kernel", "_overwrite_slots_bwd_kernel",
                 "_rms_norm_fwd_kernel", "_rms_norm_bwd_kernel", "_swiglu_fwd_kernel", "_swiglu_bwd_kernel",
                 "_rope_kernel", "_fwd_kernel", "_bwd_kernel", "_quant_rows_kernel"):
        assert name in kernels, f"{name} was never launched by the recorder"
    bad = [r for r in records if not r["ok"]]
    assert not bad, json.dumps(bad, indent=1)[:3000]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_check_that_compiles_nothing_fails(monkeypatch, capsys):
    """``--quick --arch 70`` used to record bf16 launches only, skip all of them (no bf16 before sm_80)
    and exit 0 having compiled 0 kernels. Quick mode now adds fp16 for pre-Ampere targets, and a target
    with no compiled specialization is an error whatever the reason."""
    import torch

    from scaling.kernels import aot_check

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    real = aot_check.record_launches
    seen = []
    monkeypatch.setattr(aot_check, "record_launches", lambda quick, dtypes=None: seen.append(dtypes) or [])
    assert aot_check.main(["--quick", "--arch", "70"]) == 2
    assert torch.float16 in seen[-1], "quick mode must check fp16 on a GPU without bf16"
    aot_check.main(["--quick", "--arch", "90"])
    assert seen[-1] == [torch.bfloat16]
    # the old quick behaviour (bf16 launches only) on sm_70: every launch is skipped -> failure, said so
    monkeypatch.setattr(aot_check, "record_launches", lambda quick, dtypes=None: real(quick, [torch.bfloat16]))
    assert aot_check.main(["--quick", "--arch", "70"]) == 2
    err = capsys.readouterr().err
    assert "0/0 kernel specializations" in err and "no kernel specialization was compiled for sm_70" in err
