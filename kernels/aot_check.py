"""Ahead-of-time compile check of every Triton kernel for real GPU targets, without a GPU.

    python -m scaling.kernels.aot_check [--arch 90 --arch 80] [--quick] [--json]

The CPU interpreter (``TRITON_INTERPRET=1``) checks what the kernels compute but not whether they
*compile*: the code generator is stricter (types of loop-carried values, constexpr handling,
``tl.dot`` shape limits) and shared memory is finite. This tool runs each op's Python launcher on
CPU tensors at the project's real shapes with the kernels replaced by a recorder, then compiles
every recorded specialization (same signature, constexprs, ``num_warps``, ``num_stages``) with
Triton's CUDA backend down to a cubin (``ptxas`` ships with the triton wheel) for the requested
compute capabilities, and checks the static shared memory against the device limit.

Must run in a process where ``TRITON_INTERPRET`` is unset (kernels built for compilation).
Not covered: register pressure / spills at run time, autotuning, and the numerics (the interpreter
tests and the GPU tests cover those).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

# static shared memory per block, opt-in maximum (bytes)
SMEM_LIMIT = {70: 98304, 75: 65536, 80: 166912, 86: 101376, 89: 101376, 90: 232448}

_TORCH_TO_TRITON = {
    torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
    torch.bool: "i1", torch.float8_e4m3fn: "fp8e4nv",
}


class _Recorder:
    """Stands in for a ``@triton.jit`` kernel: ``rec[grid](*args, **kw)`` records the call."""

    def __init__(self, fn, calls: list):
        self.fn = fn
        self.calls = calls

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append((self.fn, args, kwargs))
        return launch


def _signature(fn, args, kwargs) -> tuple[dict, dict, dict]:
    opts = {k: kwargs[k] for k in ("num_warps", "num_stages") if k in kwargs}
    values = dict(zip(fn.arg_names, args))
    values.update({k: v for k, v in kwargs.items() if k not in opts})
    const_names = {fn.arg_names[i] for i in fn.constexprs}
    sig, consts = {}, {}
    for name in fn.arg_names:
        v = values[name]
        if name in const_names:
            sig[name] = "constexpr"
            consts[name] = v
        elif isinstance(v, torch.Tensor):
            sig[name] = "*" + _TORCH_TO_TRITON[v.dtype]
        elif isinstance(v, bool):
            sig[name] = "i1"
        elif isinstance(v, int):
            sig[name] = "i32" if -2**31 <= v < 2**31 else "i64"
        elif isinstance(v, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: cannot type argument {name}={v!r}")
    return sig, consts, opts


def record_launches(quick: bool = False, dtypes: list[torch.dtype] | None = None) -> list[tuple[Any, tuple, dict]]:
    """Run every launcher (forward and backward) at the real shapes with recording kernels.

    ``dtypes``: the activation dtypes to launch with (default: bf16 when ``quick``, else bf16, fp16, fp32)."""
    from . import attention as att
    from . import fp8_linear as f8
    from . import prefix_injection as inj
    from . import rms_norm as rms
    from . import rope as rp
    from . import swiglu as sw
    from . import swiglu_packed as swp
    from . import target_loss as tls

    calls: list = []
    patched = []
    for mod in (att, f8, inj, rms, rp, sw, swp, tls):
        for name, obj in list(vars(mod).items()):
            if name.startswith("_") and name.endswith("_kernel") and hasattr(obj, "arg_names"):
                patched.append((mod, name, obj))
                setattr(mod, name, _Recorder(obj, calls))
    try:
        if dtypes is None:
            dtypes = [torch.bfloat16] if quick else [torch.bfloat16, torch.float16, torch.float32]
        # attention: QPMapper (B=32, H=8, 289 tokens, D=128), last layer (32 queries), other head dims
        att_shapes = [(289, 289, 128), (32, 289, 128)] + ([] if quick else [(300, 517, 64), (300, 517, 80)])
        for dt in dtypes:
            for nq, nk, d in att_shapes:
                q = torch.zeros(2, 2, nq, d, dtype=dt)
                k = torch.zeros(2, 2, nk, d, dtype=dt)
                o, lse = att._attention_fwd(q, k, k, 0.1)
                att._attention_bwd(o, q, k, k, o, lse, 0.1, True, True)
        # fused loss: real D / block sizes (N, V reduced: the CPU matmul is not what is checked)
        for dt in dtypes:
            for ls in (0.0, 0.1):
                h = torch.zeros(8, 64, dtype=dt)
                w = torch.zeros(5000, 64, dtype=dt)
                y = torch.zeros(8, dtype=torch.long)
                tls._flce_forward(h, w, y, None, ls, -100, None, True, False, False)
                tls._flce_forward(h, w, y, None, ls, -100, None, False, False, False)
        # injection / slots (LLaMA-7B width), bf16 LLM with fp32 interface output
        for dt in dtypes:
            W = torch.zeros(100, 4096, dtype=dt)
            ids = torch.zeros(2, 24, dtype=torch.long)
            for mask_dt in ((torch.long,) if quick else (torch.long, torch.bool, torch.int32)):
                inj._inject_prefix_fwd(W, ids, torch.ones(2, 24, dtype=mask_dt), torch.zeros(2, 40, 4096, dtype=torch.float32))
            inj._inject_prefix_fwd(W, ids, torch.ones(2, 24, dtype=torch.long), torch.zeros(2, 40, 4096, dtype=dt))
            hid = torch.zeros(2, 64, 4096, dtype=dt)
            tok = torch.zeros(2, 32, 4096, dtype=dt)
            inj.OverwriteSlotsFunction.apply(hid.requires_grad_(), tok.requires_grad_(), 0).sum().backward()
        # LLaMA elementwise kernels
        for dt in dtypes:
            x = torch.zeros(2, 3, 4096, dtype=dt, requires_grad=True)
            for wdt in {dt, torch.float32}:
                wt = torch.ones(4096, dtype=wdt, requires_grad=True)
                rms.RMSNormFunction.apply(x, wt, 1e-6).float().sum().backward()
            for delta in (x.detach().clone().requires_grad_(), None):  # add + norm, norm + residual gradient
                s, y = rms.ResidualRMSNormFunction.apply(x, delta, x.new_ones(4096), 1e-6)
                (s.float().sum() + y.float().sum()).backward()
            g = torch.zeros(2, 3, 11008, dtype=dt, requires_grad=True)
            sw.SwiGLUFunction.apply(g, g.detach().clone().requires_grad_()).float().sum().backward()
            q = torch.zeros(2, 32, 5, 128, dtype=dt, requires_grad=True)
            kk = torch.zeros(2, 8, 5, 128, dtype=dt, requires_grad=True)
            cs = torch.zeros(1, 5, 128, dtype=dt)
            qo, ko = rp.RopeFunction.apply(q, kk, cs, cs, 1)
            (qo.float().sum() + ko.float().sum()).backward()
            for hk in (32, 8):  # the fused layer's q|k|v split + rotary (LLaMA-7B MHA, GQA)
                qkv = torch.zeros(2, 5, (32 + 2 * hk) * 128, dtype=dt, requires_grad=True)
                sum(o.float().sum() for o in rp.QKVRopeFunction.apply(qkv, cs, cs, 32, hk, 128)).backward()
            gu = torch.zeros(2, 3, 2 * 11008, dtype=dt, requires_grad=True)
            swp.PackedSwiGLUFunction.apply(gu).float().sum().backward()
            # FP8 row quantisation: LLaMA-7B rows (4096: one block; 11008: a loop over blocks)
            for width in (4096, 11008):
                f8._quantize_rows_triton(torch.zeros(3, width, dtype=dt))
    finally:
        for mod, name, obj in patched:
            setattr(mod, name, obj)
    return calls


def check(archs: list[int], quick: bool = False, verbose: bool = True) -> list[dict]:
    """Compile every recorded specialization for each arch; returns one record per compilation."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("aot_check must run with TRITON_INTERPRET unset")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    # --quick checks one dtype: bf16, or fp16 when a target predates bf16 (sm_70/sm_75, V100/T4),
    # which would otherwise skip every bf16 launch and check nothing
    dtypes = None
    if quick:
        dtypes = [torch.bfloat16] + ([torch.float16] if min(archs) < 80 else [])
    calls = record_launches(quick, dtypes)
    seen = set()
    records = []
    for arch in archs:
        for fn, args, kwargs in calls:
            tensor_dtypes = {a.dtype for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)}
            if arch < 80 and torch.bfloat16 in tensor_dtypes:
                continue  # no bf16 on pre-Ampere GPUs
            if arch < 89 and torch.float8_e4m3fn in tensor_dtypes:
                continue  # no e4m3 before Ada / Hopper (the launcher runs PyTorch's cast there)
            sig, consts, opts = _signature(fn, args, kwargs)
            key = (arch, fn.__name__, tuple(sig.items()), tuple(sorted((k, str(v)) for k, v in consts.items())),
                   tuple(sorted(opts.items())))
            if key in seen:
                continue
            seen.add(key)
            rec = {"arch": arch, "kernel": fn.__name__,
                   "dtypes": sorted({v for v in sig.values() if v.startswith("*")}),
                   "constexprs": {k: str(v) for k, v in consts.items()}, **opts}
            t0 = time.perf_counter()
            try:
                k = triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", arch, 32),
                                   options=opts)
                rec["shared_bytes"] = int(k.metadata.shared)
                limit = SMEM_LIMIT.get(arch)
                rec["ok"] = limit is None or k.metadata.shared <= limit
                if not rec["ok"]:
                    rec["error"] = f"shared memory {k.metadata.shared} > {limit}"
            except Exception as err:  # noqa: BLE001 - report every failure
                rec["ok"] = False
                rec["error"] = f"{type(err).__name__}: {str(err)[:400]}"
            rec["compile_s"] = round(time.perf_counter() - t0, 2)
            records.append(rec)
            if verbose:
                status = "ok " if rec["ok"] else "FAIL"
                print(f"[{status}] sm_{arch} {rec['kernel']:32s} {','.join(rec['dtypes']):28s} "
                      f"warps={opts.get('num_warps', '-')} stages={opts.get('num_stages', '-')} "
                      f"smem={rec.get('shared_bytes', '-')} {rec['compile_s']}s {rec.get('error', '')}", flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, action="append", help="compute capability x10 (default: 80 and 90)")
    parser.add_argument("--quick", action="store_true", help="bf16 real shapes only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    records = check(args.arch or [80, 90], quick=args.quick, verbose=not args.json)
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
    bad = [r for r in records if not r["ok"]]
    print(f"{len(records) - len(bad)}/{len(records)} kernel specializations compiled within limits", file=sys.stderr)
    archs = args.arch or [80, 90]
    empty = sorted(a for a in archs if not any(r["arch"] == a for r in records))
    if empty:  # a check that checked nothing is a failure, not a pass
        print(f"error: no kernel specialization was compiled for {', '.join(f'sm_{a}' for a in empty)} "
              f"(every recorded launch was skipped for that target); nothing was checked", file=sys.stderr)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
