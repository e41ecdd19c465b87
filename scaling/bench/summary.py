"""The table of ``launch/bench_gpu.sh``: every figure of its ``scaling bench`` JSON files, side by side.

    python -m scaling.bench.summary OUT_DIR        (prints the table; the script tees it to OUT_DIR/summary.txt)

The headline figures come first (our training step vs the plain one and vs the plain one patched with
Liger-Kernel, generation vs Hugging Face ``generate``), then every row. Training-step rows are relative
to the plain step of the same run (``depalm.json``'s for the Liger, FP8, torchao and LiMBeR rows, which
run in their own processes at the same shapes); the CUDA-graph generation row is relative to
``generate.json``'s Hugging Face row. A run is reported as not run yet (no file: its part of the script
has not run), not run (``NAME.notrun``: the part's time budget ran out, with the reason), failed (a log
without JSON) or skipped (a package that was not installed, a CPU-only limit).
"""

from __future__ import annotations

import json
import os
import sys

STEP_RUNS = {  # file -> rows it holds
    "depalm": ("plain", "ours"),
    "depalm_liger": ("plain_liger",),
    "depalm_fp8": ("ours", "ours_fp8"),
    "depalm_cached": ("plain", "ours"),
    "depalm_torchao": ("ours", "ours_torchao_fp8"),
    "limber_all": ("ours",),
}
GEN_RUNS = {"generate": ("hf", "ours_dynamic", "ours_static"), "generate_graph": ("ours_static_graph",)}
STEP_TARGET = 1.6  # issue 18: training step >= 1.6x plain, and >= plain + Liger-Kernel


def _load(out: str, name: str) -> dict | None:
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    try:
        return json.load(open(path))
    except json.JSONDecodeError:
        return None


def _missing(out: str, name: str) -> str:
    """Why ``name`` has no result: not run yet / not run (reason) / failed."""
    notrun = os.path.join(out, name + ".notrun")
    if os.path.exists(notrun):
        return f"not run: {open(notrun).read().strip()}"
    if os.path.exists(os.path.join(out, name + ".log")):
        return f"failed: see {name}.log"
    return "not run yet"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def headline(runs: dict) -> list[str]:
    """The three comparisons the first part of the script exists for."""
    lines = ["headline:"]
    d, lig, g, gg = (runs.get(k) for k in ("depalm", "depalm_liger", "generate", "generate_graph"))
    ours, plain = (d or {}).get("ours"), (d or {}).get("plain")
    if ours and plain:
        r = ours["samples_s"] / plain["samples_s"]
        mem = (f", peak memory {ours['peak_gb'] / plain['peak_gb']:.2f}x plain's"
               if ours.get("peak_gb") and plain.get("peak_gb") else "")
        lines.append(f"  training step, ours / plain (samples/s): {r:.2f}x (target >= {STEP_TARGET:g}x: {_met(r >= STEP_TARGET)}){mem}")
    else:
        lines.append("  training step, ours / plain: n/a (depalm.json has no plain and ours rows)")
    liger = (lig or {}).get("plain_liger")
    if ours and liger:
        r = ours["samples_s"] / liger["samples_s"]
        lines.append(f"  training step, ours / plain+Liger-Kernel (samples/s): {r:.2f}x (target >= 1x: {_met(r >= 1)})")
    else:
        why = ((lig or {}).get("skipped") or {}).get("plain_liger") or "depalm_liger.json has no plain_liger row"
        lines.append(f"  training step, ours / plain+Liger-Kernel: n/a ({why})")
    hf = (g or {}).get("hf")
    if g and "ratio_samples_s" in g:
        lines.append(f"  generation, ours ({g['best']}) / HF generate (samples/s): {g['ratio_samples_s']:.2f}x "
                     f"(target >= {g.get('target_ratio', 3):g}x: {_met(g['ratio_samples_s'] >= g.get('target_ratio', 3))})")
    else:
        lines.append("  generation, ours / HF generate: n/a (generate.json has no comparison)")
    graph = (gg or {}).get("ours_static_graph")
    if graph and hf:
        r = graph["samples_s"] / hf["samples_s"]
        lines.append(f"  generation, ours (static cache, CUDA graph) / HF generate (samples/s): {r:.2f}x")
    return lines


def summary(out: str) -> str:
    runs = {name: _load(out, name) for name in (*STEP_RUNS, *GEN_RUNS)}
    base = (runs["depalm"] or {}).get("plain")
    gpu = next((r["config"]["gpu"] for r in runs.values() if r and "config" in r), "?")
    lines = [f"GPU: {gpu}", *headline(runs), ""]
    lines.append(f"{'training step':34s} {'step ms':>9s} {'samples/s':>10s} {'TFLOP/s':>8s} {'peak GB':>8s}  vs plain")
    for name, rows in STEP_RUNS.items():
        res = runs[name]
        if res is None:
            lines.append(f"{name:34s} ({_missing(out, name)})")
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
        for row, note in res.get("notes", {}).items():
            lines.append(f"{'':34s} note ({row}): {note}")
    d, fp8, tao, lim = (runs[k] for k in ("depalm", "depalm_fp8", "depalm_torchao", "limber_all"))
    if fp8 and tao and "ours_fp8" in fp8 and "ours_torchao_fp8" in tao:
        lines.append(f"our FP8 / torchao row-wise float8 (samples/s): "
                     f"{fp8['ours_fp8']['samples_s'] / tao['ours_torchao_fp8']['samples_s']:.2f}x")
    if d and lim and "ours" in d and "ours" in lim:
        lines.append(f"LiMBeR(all) / DePALM step time: {lim['ours']['step_ms'] / d['ours']['step_ms']:.2f}x (paper: ~4x)")
    lines.append("")
    g = runs["generate"]
    c = (g or runs["generate_graph"] or {}).get("config")
    if c:
        lines.append(f"generation: batch {c.get('batch', '?')}, {c.get('prefix_tokens', '?')}-token prefix + "
                     f"{c.get('prompt_len', '?')}-token prompts, {c.get('new_tokens', '?')} new tokens; decode steps timed "
                     f"by {c.get('decode_timing', '?')}")
    lines.append(f"{'':34s} {'total ms':>9s} {'samples/s':>10s} {'prefill ms':>10s} {'ms/decode step':>15s}")
    for name, rows in GEN_RUNS.items():
        res = runs[name]
        if res is None:
            lines.append(f"{name:34s} ({_missing(out, name)})")
            continue
        for row in rows:
            r = res.get(row)
            if r:
                lines.append(f"{'generate ' + row:34s} {r['total_ms']:9.1f} {r['samples_s']:10.1f} {r['prefill_ms']:10.1f} "
                             f"{r['decode_ms_per_step']:15.2f}")
        for row, why in res.get("skipped", {}).items():
            lines.append(f"{'generate ' + row:34s} skipped: {why}")
    if g and "tokens_equal_hf" in g:
        lines.append(f"greedy tokens equal to HF's: {g['tokens_equal_hf']:.1%}; static cache = dynamic: "
                     f"{g.get('static_equals_dynamic')}")
    if runs["generate_graph"] and "graph_equals_dynamic" in runs["generate_graph"]:
        lines.append(f"CUDA-graph decode tokens = dynamic cache's: {runs['generate_graph']['graph_equals_dynamic']}")
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
