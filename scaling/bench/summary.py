"""The table of ``launch/bench_gpu.sh``: every figure of its ``scaling bench`` JSON files, side by side.

    python -m scaling.bench.summary OUT_DIR        (prints the table; the script tees it to OUT_DIR/summary.txt)

Training-step rows are relative to the plain step of the same run (``depalm.json``'s for the Liger,
torchao and LiMBeR rows, which run in their own processes at the same shapes); missing files are
reported as failed, packages that were not installed as such.
"""

from __future__ import annotations

import json
import os
import sys

STEP_RUNS = {  # file -> rows it holds
    "depalm": ("plain", "ours", "ours_fp8"),
    "depalm_cached": ("plain", "ours"),
    "depalm_liger": ("plain_liger",),
    "depalm_torchao": ("ours", "ours_torchao_fp8"),
    "limber_all": ("ours",),
}
GEN_ROWS = ("hf", "ours_dynamic", "ours_static", "ours_static_graph")


def _load(out: str, name: str) -> dict | None:
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    try:
        return json.load(open(path))
    except json.JSONDecodeError:
        return None


def summary(out: str) -> str:
    lines = []
    runs = {name: _load(out, name) for name in (*STEP_RUNS, "generate")}
    base = (runs["depalm"] or {}).get("plain")
    gpu = next((r["config"]["gpu"] for r in runs.values() if r), "?")
    lines.append(f"GPU: {gpu}")
    lines.append(f"{'training step':34s} {'step ms':>9s} {'samples/s':>10s} {'TFLOP/s':>8s} {'peak GB':>8s}  vs plain")
    for name, rows in STEP_RUNS.items():
        res = runs[name]
        if res is None:
            lines.append(f"{name:34s} (failed: see {name}.log)")
            continue
        ref = res.get("plain") or base
        for row in rows:
            r = res.get(row)
            if r:
                ratio = f"{r['samples_s'] / ref['samples_s']:.2f}x" if ref else "n/a"
                lines.append(f"{name + ' ' + row:34s} {r['step_ms']:9.1f} {r['samples_s']:10.1f} {r['tflops']:8.1f} "
                             f"{(r['peak_gb'] or 0):8.1f}  {ratio}")
        for row, why in res.get("skipped", {}).items():
            lines.append(f"{name + ' ' + row:34s} skipped: {why}")
        if "fp8_effect" in res:
            e = res["fp8_effect"]
            lines.append(f"{'':34s} FP8 effect: loss relative diff {e['loss_rel_diff']:.2e}, gradient cosine {e['grad_cosine']:.4f}")
    d, lig, tao, lim = (runs[k] for k in ("depalm", "depalm_liger", "depalm_torchao", "limber_all"))
    if d and lig and "plain_liger" in lig:
        lines.append(f"ours / plain+Liger-Kernel (samples/s): {d['ours']['samples_s'] / lig['plain_liger']['samples_s']:.2f}x")
    if d and tao and "ours_fp8" in d and "ours_torchao_fp8" in tao:
        lines.append(f"our FP8 / torchao row-wise float8 (samples/s): "
                     f"{d['ours_fp8']['samples_s'] / tao['ours_torchao_fp8']['samples_s']:.2f}x")
    if d and lim:
        lines.append(f"LiMBeR(all) / DePALM step time: {lim['ours']['step_ms'] / d['ours']['step_ms']:.2f}x (paper: ~4x)")
    g = runs["generate"]
    if g is None:
        lines.append("generation (failed: see generate.log)")
    else:
        c = g["config"]
        lines.append(f"generation: batch {c['batch']}, {c.get('prefix_tokens', '?')}-token prefix + {c['prompt_len']}-token "
                     f"prompts, {c['new_tokens']} new tokens")
        lines.append(f"{'':34s} {'total ms':>9s} {'samples/s':>10s} {'prefill ms':>10s} {'ms/decode step':>15s}")
        for row in GEN_ROWS:
            r = g.get(row)
            if r:
                lines.append(f"{'generate ' + row:34s} {r['total_ms']:9.1f} {r['samples_s']:10.1f} {r['prefill_ms']:10.1f} "
                             f"{r['decode_ms_per_step']:15.2f}")
        if "ratio_samples_s" in g:
            lines.append(f"ours ({g['best']}) / HF generate (samples/s): {g['ratio_samples_s']:.2f}x (target >= 3x); "
                         f"greedy tokens equal to HF's: {g['tokens_equal_hf']:.1%}")
    for name in ("plain_profile.txt", "ours_profile.txt"):
        path = os.path.join(out, name)
        lines.append(f"profile: {path}" if os.path.exists(path) else f"profile: {name} missing")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m scaling.bench.summary OUT_DIR", file=sys.stderr)
        return 2
    print(summary(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
