"""Text form of a plan (``scaling plan``, ``scaling train --check``); ``--json`` prints the dict itself."""

from __future__ import annotations

from scaling.plan.gpus import GIB

PARTS = ["frozen weights", "trainable states", "activations", "backward working set", "loss buffers", "encoder",
         "batches", "framework"]


def gib(n: float) -> str:
    return f"{n / GIB:6.2f}"


def _hours(h: float) -> str:
    return f"{h:,.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def render(plan: dict) -> str:
    g = plan["gpu"]
    m = plan["model"]
    a = plan["assumptions"]
    seq = m["sequence"]
    lines = [
        f"Plan for {plan['config']} on {plan['nodes']} node(s) x {plan['gpus_per_node']} x {g['name']} "
        f"({g['memory_gib']:.1f} GiB, sm_{g['arch']}); global batch {plan['global_batch']}",
        f"model: {m['method'] or 'custom'} with {m['llm']} + {m['encoder']}: {m['frozen_params'] / 1e9:.2f}B frozen, "
        f"{m['trainable_params'] / 1e6:.1f}M trainable; {m['injection']} injection: the gradient crosses LLM layers "
        + (f"{m['backprop_layers'][0]}..{m['backprop_layers'][1]}" if m["backprop_layers"] else "none")
        + f" of {m['layers']}",
        f"sequence: {seq['prefix']} prefix + {seq['text']} text tokens = {seq['total']} positions, {seq['targets']} "
        f"targets; {m['flops_per_sample'] / 1e12:.2f} TFLOP per sample (forward + backward, counted)",
    ]
    cols = [("as written", plan["as_written"])]
    if plan["recommendation"]:
        cols.append(("recommended", plan["recommendation"]))
    lines.append("")
    lines.append(f"{'per-GPU memory (GiB)':24s}" + "".join(f"{name:>14s}" for name, _ in cols))
    for part in PARTS:
        lines.append(f"  {part:22s}" + "".join(f"{gib(c['memory']['gpu'][part]):>14s}" for _, c in cols))
    lines.append(f"  {'peak':22s}" + "".join(f"{gib(c['memory']['peak']):>14s}" for _, c in cols)
                 + "   (weights + states + batches + framework + max(encoder, activations + max(working set, loss)))")
    lines.append(f"  {'budget':22s}" + f"{gib(g['memory_gib'] * GIB * (1 - a['margin'])):>14s}" * len(cols)
                 + f"   ({g['memory_gib']:.1f} GiB less {a['margin']:.0%} margin)")
    for name, c in cols:
        host = ", ".join(f"{k} {v / GIB:.1f} GiB" for k, v in c["memory"]["host"].items() if v)
        lines.append(f"{name}: {c['label']}: " + ("fits" if c["fits"] else f"does NOT fit: {c['reason']}")
                     + (f"; host memory per node: {host}" if host else ""))
    lines.append("")
    rec = plan["recipe"]
    for name, c in cols:
        t = c["time"]
        s = (f"{name}: step {t['step']:.2f} s (compute {t['compute']:.2f} s at MFU {a['mfu']:.2f}, communication "
             f"{t['communication']:.2f} s)")
        if "total_hours" in t:
            s += f"; {rec['steps']:,} steps = {_hours(t['total_hours'])}, {t['gpu_hours']:,.0f} GPU-hours"
        lines.append(s)
    ep = f"{rec['epochs']:g} epochs" if rec.get("epochs") else "epochs unknown"
    lines.append(f"recipe: {ep} of {rec['samples_per_epoch'] or '?'} samples ({rec['samples_source']}); "
                 f"MFU: {a['mfu_source']}")
    if plan["rejected"]:
        lines.append("")
        lines.append("rejected (the next micro-batch up of each strategy):")
        for c in plan["rejected"]:
            lines.append(f"  {c['label']}: {c['reason']}")
    if plan["recommendation"]:
        lines.append("")
        lines.append("launch:")
        for k, v in plan["recommendation"]["launch"].items():
            lines.append(f"  {k:11s} {v}")
    else:
        lines.append("")
        lines.append(f"no setting fits: {plan['advice']}")
    lines.append("")
    lines.append("notes:")
    lines += [f"  - {n}" for n in plan["notes"]]
    lines.append(f"  - framework allowance: {a['framework_bytes'] / GIB:.1f} GiB (CUDA context, workspaces, NCCL) + "
                 f"{a['fragmentation']:.0%} of the dynamic parts (allocator fragmentation)")
    return "\n".join(lines)
