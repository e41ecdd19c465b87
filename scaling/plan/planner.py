"""``make_plan``: a config + an allocation → memory parts, recommendation, rejected choices, time, launch line.

The one entry point of :mod:`scaling.plan` (``scaling plan`` and ``scaling train --check`` call it); the result is
plain data (what ``--json`` prints)."""

from __future__ import annotations

import dataclasses
import os
import re

from scaling.plan import launch, search, timing
from scaling.plan.gpus import GIB, GPU
from scaling.plan.memory import CONTEXT_BYTES, FRAGMENTATION, Setting
from scaling.plan.profile import Profile, profile_for

ARCH_NOTES = {
    70: ["no bf16 on sm_70: fp16 (train.precision=fp16 model.frozen_dtype=fp16) with dynamic loss scaling: Accelerate's "
         "GradScaler without DeepSpeed, DeepSpeed's own with ds_configs/zero2_fp16.json",
         "no FlashAttention on sm_70: SDPA takes its memory-efficient kernel (it keeps the same q, k, v, output and "
         "log-sum-exp for backward as FlashAttention, so the activation figures hold)",
         "the matmul-heavy Triton kernels (fused target-only loss, attention) need sm_80 (scaling.kernels.dispatch): "
         "PyTorch's path runs, with its [targets, vocab] logits buffers; the elementwise kernels compile for sm_70 "
         "(python -m scaling.kernels.aot_check --arch 70)"],
}


def generation_notes(gpu: GPU, cfg) -> list[str]:
    notes = list(ARCH_NOTES.get(gpu.arch, []))
    if cfg.model.fp8_llm and not gpu.fp8:
        notes.append(f"model.fp8_llm needs sm_89+ (Ada/Hopper); {gpu.name} is sm_{gpu.arch}: set model.fp8_llm=false")
    elif gpu.fp8:
        notes.append("FP8 frozen-LLM GEMMs are available on this GPU (model.fp8_llm=true, ZeRO-2, frozen_dtype bf16)")
    if gpu.arch >= 80:
        notes.append("fused Triton kernels (target-only loss, attention, RMSNorm, SwiGLU) run on this GPU "
                     f"(python -m scaling.kernels.aot_check --arch {gpu.arch} checks they compile)")
    return notes


def config_setting(cfg, world: int) -> Setting:
    """The setting the config asks for as written."""
    stage, offload = 0, False
    if cfg.train.deepspeed:
        from scaling.training import ds_config as dsc

        try:
            raw = dsc.load(cfg.train.deepspeed)
            stage, offload = dsc.zero_stage(raw), dsc.offloads_params(raw) or dsc.offloads_optimizer(raw)
        except Exception:  # noqa: BLE001 - a missing JSON only loses this row's strategy
            stage = 3 if "zero3" in cfg.train.deepspeed else 2
            offload = "offload" in cfg.train.deepspeed
    accum = max(1, cfg.train.global_batch // max(1, cfg.train.micro_batch * world))  # (a bad geometry is reported)
    return Setting(cfg.train.precision, cfg.train.micro_batch, accum, stage, offload, cfg.train.gradient_checkpointing)


def samples_per_epoch(cfg, config_path: str | None, given: int | None) -> tuple[int | None, str]:
    """(training samples per epoch, where from): --samples, data.samples_per_epoch, or the header line
    '(..., 82K training samples)' that configs/generate.py writes (times data.fraction)."""
    if given:
        return given, "--samples"
    if cfg.data.samples_per_epoch:
        return cfg.data.samples_per_epoch, "data.samples_per_epoch"
    if config_path and os.path.isfile(config_path):
        with open(config_path) as fh:
            head = fh.read(2000)
        m = re.search(r"([0-9.]+)([KM]?) training samples", head)
        if m:
            n = float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6}[m.group(2)] * cfg.data.fraction
            return max(1, int(n)), f"the config's header ({m.group(0)}) x data.fraction {cfg.data.fraction:g}"
    return None, "unknown: pass --samples N (or set data.samples_per_epoch)"


def make_plan(cfg, config_path: str, gpu: GPU, nodes: int, gpus_per_node: int, mfu=None,
              net_gbps: float = timing.DEFAULT_NET_GBPS, profile: Profile | None = None,
              samples: int | None = None) -> dict:
    world = nodes * gpus_per_node
    p = profile or profile_for(cfg)
    mfu_value, mfu_source = timing.read_mfu(mfu, p, gpu)
    cached = bool(cfg.data.use_features)
    kernels = cfg.model.kernels
    best, candidates = search.search(p, gpu, world, gpus_per_node, cfg.train.global_batch, mfu_value, net_gbps,
                                     cached, kernels)
    own = config_setting(cfg, world)
    if own.precision == "bf16" and not gpu.bf16:
        own = dataclasses.replace(own, precision="fp16")
    as_written = search.evaluate(p, own, gpu, world, gpus_per_node, mfu_value, net_gbps, cached, kernels,
                                 cfg.train.global_batch)
    samples, samples_source = samples_per_epoch(cfg, config_path, samples)
    rec = timing.recipe(samples, cfg.train.global_batch, cfg.train.epochs, cfg.train.max_steps)
    out = {
        "config": config_path, "gpu": dataclasses.asdict(gpu), "nodes": nodes, "gpus_per_node": gpus_per_node,
        "world_size": world, "global_batch": cfg.train.global_batch,
        "model": {"llm": p.llm, "encoder": p.encoder, "method": cfg.model.method, "injection": p.injection,
                  "frozen_params": p.frozen_params, "trainable_params": p.trainable_params,
                  "largest_layer_params": p.largest_layer_params, "layers": p.n_layers,
                  "sequence": {"prefix": p.prefix_len, "text": p.text_len, "total": p.seq_len, "targets": p.n_targets},
                  "backprop_layers": [p.backprop_layers[0], p.backprop_layers[-1]] if p.backprop_layers else None,
                  "flops_per_sample": p.at(p.flops_total, 1)},
        "assumptions": {"margin": search.MARGIN, "framework_bytes": CONTEXT_BYTES, "fragmentation": FRAGMENTATION,
                        "mfu": mfu_value, "mfu_source": mfu_source, "net_gbps": net_gbps,
                        "cached_features": cached, "kernels": kernels},
        "notes": p.notes + generation_notes(gpu, cfg),
        "as_written": _cand(as_written, cfg, config_path, nodes, gpus_per_node, rec),
        "recommendation": _cand(best, cfg, config_path, nodes, gpus_per_node, rec) if best else None,
        "rejected": [_cand(c, cfg, config_path, nodes, gpus_per_node, rec) for c in search.rejected_summary(candidates, best)],
        "recipe": dict(rec, samples_per_epoch=samples, samples_source=samples_source),
    }
    if best is None:
        out["advice"] = advice(p, gpu, world, candidates)
    return out


def _cand(c, cfg, config_path, nodes, gpus_per_node, rec) -> dict:
    s = c.setting
    d = {"setting": dataclasses.asdict(s), "label": s.label(), "fits": c.fits, "reason": c.reason,
         "memory": c.memory, "time": c.time}
    if rec.get("steps"):
        hours = rec["steps"] * c.time["step"] / 3600
        d["time"] = dict(c.time, total_hours=hours, gpu_hours=hours * nodes * gpus_per_node)
    if c.fits:
        d["launch"] = launch.launch_lines(config_path, s, nodes, gpus_per_node)
    return d


def advice(p: Profile, gpu: GPU, world: int, candidates) -> str:
    """What to change when nothing fits."""
    low = min(candidates, key=lambda c: c.memory["peak"])
    return (f"nothing fits {gpu.name} ({gpu.memory_gib:.0f} GiB less {search.MARGIN:.0%}): the smallest peak is "
            f"{low.memory['peak'] / GIB:.1f} GiB ({low.setting.label()}). Use GPUs with more memory, more GPUs "
            f"(ZeRO-3 partitions the {p.frozen_params / 1e9:.1f}B frozen parameters), a shorter text "
            f"(data.max_text_len) or fewer perceptual tokens, or cached features (data.use_features=true)")
