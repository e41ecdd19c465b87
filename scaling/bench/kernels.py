"""Benchmark of the Triton kernels of ``scaling.kernels`` against their PyTorch references.

    python -m scaling.bench.kernels [--op NAME] [--json] [--json-out PATH]

On CUDA: the real shapes of the project (QPMapper attention B=32, H=8, 257+32 tokens, head dim 128;
LLaMA-7B-sized injection / loss / RMSNorm / SwiGLU / rotary in bf16), forward and forward+backward,
in ms with ``triton.testing.do_bench`` (median), plus GB/s (memory-bound ops: minimal bytes moved / time)
or TFLOP/s (attention, fused loss), and peak extra memory. On CPU: a tiny smoke run (the Triton side
under ``TRITON_INTERPRET=1``; interpreter timings are meaningless, the point is that everything runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import torch

if not torch.cuda.is_available():  # must happen before the kernels are imported (decorated)
    os.environ.setdefault("TRITON_INTERPRET", "1")

from scaling.kernels.attention import attention, attention_reference  # noqa: E402
from scaling.kernels.fp8_linear import fp8_linear, quantize_rows, quantize_rows_reference  # noqa: E402
from scaling.kernels.prefix_injection import (  # noqa: E402
    inject_prefix,
    inject_prefix_reference,
    overwrite_slots,
    overwrite_slots_reference,
)
from scaling.kernels.rms_norm import (  # noqa: E402
    residual_rms_norm,
    residual_rms_norm_reference,
    rms_norm,
    rms_norm_reference,
)
from scaling.kernels.rope import qkv_rope, qkv_rope_reference, rope, rope_reference  # noqa: E402
from scaling.kernels.swiglu import swiglu, swiglu_reference  # noqa: E402
from scaling.kernels.target_loss import target_cross_entropy, target_cross_entropy_reference  # noqa: E402

OPS = ("attention", "attention_last_layer", "inject_prefix", "overwrite_slots", "target_loss", "rms_norm",
       "residual_rms_norm", "swiglu", "qkv_rope", "rope", "fp8_quantize", "fp8_linear")


def _bench(fn: Callable[[], object], cuda: bool) -> float:
    """Median milliseconds of ``fn``."""
    if cuda:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100))
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _peak_mb(fn: Callable[[], object], cuda: bool) -> float | None:
    if not cuda:
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _fwd_bwd(fwd: Callable[[], object], inputs: list[torch.Tensor]) -> Callable[[], None]:
    def run():
        out = fwd()
        outs = out if isinstance(out, tuple) else (out,)
        outs = [o for o in outs if o.requires_grad]
        grads = [torch.ones_like(o) for o in outs]
        torch.autograd.backward(outs, grads, inputs=[t for t in inputs if t.requires_grad])
        for t in inputs:
            t.grad = None
    return run


def _case(op: str, cuda: bool):
    """(shape description, dtype, {impl: fwd closure}, grad inputs, bytes of fwd, flops of fwd, flops of fwd+bwd)."""
    dev = "cuda" if cuda else "cpu"
    bf16 = torch.bfloat16
    if op in ("attention", "attention_last_layer"):
        B, H, N, D = (32, 8, 289, 128) if cuda else (1, 2, 40, 64)
        nq = N if op == "attention" else (32 if cuda else 8)
        x = torch.randn(B, N, H, D, device=dev, dtype=bf16)
        k = x.transpose(1, 2).detach().requires_grad_()
        v = torch.randn(B, H, N, D, device=dev, dtype=bf16, requires_grad=True)
        q = torch.randn(B, H, nq, D, device=dev, dtype=bf16, requires_grad=True)
        flops = 4 * B * H * nq * N * D
        return (f"B={B} H={H} Nq={nq} Nk={N} D={D}", bf16,
                {"triton": lambda: attention(q, k, v, mode="triton"), "torch": lambda: attention_reference(q, k, v)},
                [q, k, v], None, flops, flops * 3.5)  # bwd ~2.5x fwd (recompute included)
    if op == "inject_prefix":
        B, P, T, D, V = (32, 40, 24, 4096, 32000) if cuda else (2, 5, 7, 64, 100)
        W = torch.randn(V, D, device=dev, dtype=bf16)
        ids = torch.randint(0, V, (B, T), device=dev)
        mask = torch.ones(B, T, device=dev, dtype=torch.long)
        mask[:, : T // 4] = 0
        prefix = torch.randn(B, P, D, device=dev, dtype=bf16, requires_grad=True)
        nbytes = 2 * B * (P + T) * D * 2
        return (f"B={B} P={P} T={T} D={D}", bf16,
                {"triton": lambda: inject_prefix(W, ids, mask, prefix, mode="triton")[0],
                 "torch": lambda: inject_prefix_reference(W, ids, mask, prefix)[0]},
                [prefix], nbytes, None, None)
    if op == "overwrite_slots":
        B, S, n, D = (32, 64, 32, 4096) if cuda else (2, 12, 4, 64)
        hidden = torch.randn(B, S, D, device=dev, dtype=bf16, requires_grad=True)
        tokens = torch.randn(B, n, D, device=dev, dtype=bf16, requires_grad=True)
        nbytes = 2 * B * S * D * 2
        return (f"B={B} S={S} n={n} D={D}", bf16,
                {"triton": lambda: overwrite_slots(hidden, tokens, 8, mode="triton"),
                 "torch": lambda: overwrite_slots_reference(hidden, tokens, 8)},
                [hidden, tokens], nbytes, None, None)
    if op == "target_loss":
        N, D, V = (768, 4096, 32000) if cuda else (24, 32, 97)
        h = torch.randn(N, D, device=dev, dtype=bf16, requires_grad=True)
        W = (torch.randn(V, D, device=dev) * D ** -0.5).to(bf16)  # frozen lm_head
        y = torch.randint(0, V, (N,), device=dev)
        flops = 2 * N * D * V
        return (f"N={N} D={D} V={V}", bf16,
                {"triton": lambda: target_cross_entropy(h, W, y, label_smoothing=0.1, mode="triton"),
                 "torch": lambda: target_cross_entropy_reference(h, W, y, 0.1)},
                [h], None, flops, flops * 2)  # logits (+ d_hidden = d_logits @ W in fwd+bwd)
    if op == "rms_norm":
        B, T, D = (32, 64, 4096) if cuda else (2, 5, 64)
        x = torch.randn(B, T, D, device=dev, dtype=bf16, requires_grad=True)
        w = torch.randn(D, device=dev, dtype=bf16)
        return (f"[{B}, {T}, {D}]", bf16,
                {"triton": lambda: rms_norm(x, w, 1e-6, mode="triton"), "torch": lambda: rms_norm_reference(x, w, 1e-6)},
                [x], 2 * x.numel() * 2, None, None)
    if op == "residual_rms_norm":  # a decoder layer's residual add + post-attention norm (fused layer)
        B, T, D = (32, 64, 4096) if cuda else (2, 5, 64)
        x = torch.randn(B, T, D, device=dev, dtype=bf16, requires_grad=True)
        d = torch.randn(B, T, D, device=dev, dtype=bf16, requires_grad=True)
        w = torch.randn(D, device=dev, dtype=bf16)
        return (f"[{B}, {T}, {D}]", bf16,
                {"triton": lambda: residual_rms_norm(x, w, 1e-6, delta=d, mode="triton"),
                 "torch": lambda: residual_rms_norm_reference(x, w, 1e-6, d)},
                [x, d], 4 * x.numel() * 2, None, None)
    if op == "swiglu":
        B, T, F_ = (32, 64, 11008) if cuda else (2, 5, 96)
        g = torch.randn(B, T, F_, device=dev, dtype=bf16, requires_grad=True)
        u = torch.randn(B, T, F_, device=dev, dtype=bf16, requires_grad=True)
        return (f"[{B}, {T}, {F_}]", bf16,
                {"triton": lambda: swiglu(g, u, mode="triton"), "torch": lambda: swiglu_reference(g, u)},
                [g, u], 3 * g.numel() * 2, None, None)
    if op == "rope":
        B, H, T, D = (32, 32, 64, 128) if cuda else (1, 2, 5, 32)
        q = torch.randn(B, T, H, D, device=dev, dtype=bf16).transpose(1, 2).detach().requires_grad_()
        k = torch.randn(B, T, H, D, device=dev, dtype=bf16).transpose(1, 2).detach().requires_grad_()
        ang = torch.arange(T, device=dev)[:, None].float() * torch.rand(D // 2, device=dev)
        ang = torch.cat([ang, ang], -1)[None]
        cos, sin = ang.cos().to(bf16), ang.sin().to(bf16)
        return (f"q,k [{B}, {H}, {T}, {D}]", bf16,
                {"triton": lambda: rope(q, k, cos, sin, mode="triton"), "torch": lambda: rope_reference(q, k, cos, sin)},
                [q, k], 4 * q.numel() * 2, None, None)
    if op == "qkv_rope":  # the fused layer's head split + rotary; its backward writes d(qkv) directly
        B, H, T, D = (32, 32, 57, 128) if cuda else (1, 2, 5, 32)
        qkv = torch.randn(B, T, 3 * H * D, device=dev, dtype=bf16, requires_grad=True)
        ang = torch.arange(T, device=dev)[:, None].float() * torch.rand(D // 2, device=dev)
        ang = torch.cat([ang, ang], -1)[None]
        cos, sin = ang.cos().to(bf16), ang.sin().to(bf16)
        return (f"qkv [{B}, {T}, {3 * H * D}]", bf16,
                {"triton": lambda: qkv_rope(qkv, cos, sin, H, H, D, mode="triton"),
                 "torch": lambda: qkv_rope_reference(qkv, cos, sin, H, H, D)},
                [qkv], 4 * B * T * H * D * 2, None, None)
    if op == "fp8_quantize":
        M, K = (1824, 4096) if cuda else (7, 96)
        x = torch.randn(M, K, device=dev, dtype=bf16)
        return (f"[{M}, {K}] → e4m3", bf16,
                {"triton": lambda: quantize_rows(x, mode="triton"), "torch": lambda: quantize_rows_reference(x)},
                [], 3 * x.numel(), None, None)
    if op == "fp8_linear":  # the gate|up GEMM of LLaMA-7B at DePALM's token count; "torch" = the bf16 GEMM
        M, K, N = (1824, 4096, 22016) if cuda else (7, 64, 96)
        fp8_ok = not cuda or torch.cuda.get_device_capability() >= (8, 9)
        if not fp8_ok:
            raise RuntimeError("fp8_linear needs compute capability >= 8.9")
        w = (torch.randn(N, K, device=dev) * K**-0.5).to(bf16)
        wq, ws = quantize_rows(w)
        wtq, wts = quantize_rows(w.t().contiguous())
        x = torch.randn(M, K, device=dev, dtype=bf16, requires_grad=True)
        flops = 2 * M * N * K
        return (f"M={M} K={K} N={N}", bf16,
                {"triton": lambda: fp8_linear(x, wq, ws, wtq, wts, mode="triton"),
                 "torch": lambda: torch.nn.functional.linear(x, w)},
                [x], None, flops, 2 * flops)  # forward + input gradient (frozen weight)
    raise ValueError(f"unknown op {op!r}; choose from {OPS}")


def run(ops: list[str]) -> list[dict]:
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else "cpu (Triton interpreter; timings not meaningful)"
    records = []
    for op in ops:
        shape, dtype, impls, inputs, nbytes, flops_f, flops_fb = _case(op, cuda)
        outs = {}
        for impl, fwd in impls.items():
            with torch.no_grad():
                outs[impl] = fwd()
            passes = [("fwd", fwd)] + ([("fwd+bwd", _fwd_bwd(fwd, inputs))] if inputs else [])  # quantisation: no backward
            for pass_name, fn in passes:
                if pass_name == "fwd":
                    def fn_ng(f=fn):
                        with torch.no_grad():
                            return f()
                    fn = fn_ng
                ms = _bench(fn, cuda)
                rec = {"op": op, "shape": shape, "dtype": str(dtype).replace("torch.", ""), "pass": pass_name,
                       "impl": impl, "ms": round(ms, 4), "device": device}
                if pass_name == "fwd" and nbytes:
                    rec["GB/s"] = round(nbytes / ms / 1e6, 1)
                flops = flops_f if pass_name == "fwd" else flops_fb
                if flops:
                    rec["TFLOP/s"] = round(flops / ms / 1e9, 1)
                peak = _peak_mb(fn, cuda)
                if peak is not None:
                    rec["peak_extra_MiB"] = round(peak, 1)
                records.append(rec)
        a, b = outs["triton"], outs["torch"]
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        diff = max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))
        for rec in records:
            if rec["op"] == op:
                rec["max_abs_diff_vs_torch"] = diff
    return records


def _print_table(records: list[dict]) -> None:
    print(f"device: {records[0]['device'] if records else '-'}")
    by_key: dict[tuple, dict] = {}
    for r in records:
        by_key.setdefault((r["op"], r["shape"], r["pass"]), {})[r["impl"]] = r
    header = f"{'op':22s} {'shape':30s} {'pass':8s} {'triton ms':>10s} {'torch ms':>10s} {'speedup':>8s}  throughput (triton / torch)  peak MiB (triton / torch)"
    print(header)
    print("-" * len(header))
    for (op, shape, pass_name), impls in by_key.items():
        t, r = impls.get("triton"), impls.get("torch")
        unit = "GB/s" if "GB/s" in t else ("TFLOP/s" if "TFLOP/s" in t else None)
        thr = f"{t[unit]} / {r[unit]} {unit}" if unit else ""
        mem = f"{t.get('peak_extra_MiB', '-')} / {r.get('peak_extra_MiB', '-')}"
        print(f"{op:22s} {shape:30s} {pass_name:8s} {t['ms']:10.4f} {r['ms']:10.4f} {r['ms'] / t['ms']:7.2f}x  "
              f"{thr:28s} {mem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", choices=OPS, action="append", help="benchmark only this op (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    parser.add_argument("--json-out", metavar="PATH", help="also write the JSON records to PATH")
    args = parser.parse_args(argv)
    records = run(args.op or list(OPS))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(records, f, indent=1)
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
    else:
        _print_table(records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
