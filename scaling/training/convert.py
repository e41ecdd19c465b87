"""Turn any checkpoint into something to share or load elsewhere; describe a checkpoint.

``scaling convert CKPT --to FORMAT OUT`` where CKPT is a checkpoint directory
(``RUN/checkpoints/step_N``), a run directory (its latest checkpoint), an adapter file or a directory
holding only ``adapter.safetensors`` (``RUN/best``):

* ``adapter`` → one ``.safetensors`` file: the trainable weights in fp32, with the resolved config
  and the backbone fingerprints in its metadata (what :func:`~scaling.training.checkpoint.load_adapter`
  reads). Checkpoints of every ZeRO stage hold it already (gathered at save time); ``--from-shards``
  rebuilds it from DeepSpeed's ZeRO partitions instead (DeepSpeed's ``zero_to_fp32``).
* ``peft`` → a directory loadable with ``peft.PeftModel.from_pretrained(llm, OUT)`` holding the LLM's
  LoRA weights (methods with ``model.finetune.lora_rank > 0``), plus ``scaling_adapter.safetensors``
  for the rest of the interface (mapper, prompts), which peft has no place for.
* ``consolidated`` → one ``.safetensors`` file of plain fp32 tensors named like the model's
  parameters, built from the optimizer's fp32 master partitions for DeepSpeed checkpoints
  (``zero_to_fp32``) or from the weights otherwise; metadata: step and method only.

:func:`describe` gathers what ``scaling inspect`` prints.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any
from unittest import mock

import torch

from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt

FORMATS = ("adapter", "peft", "consolidated")


def _checkpoint_dir(path: str) -> str | None:
    """The checkpoint directory behind ``path`` (None for an adapter file or an adapter-only directory: ``RUN/best``)."""
    if os.path.isfile(path):
        return None
    if os.path.isfile(os.path.join(path, ckpt.ADAPTER)) and not os.path.isfile(os.path.join(path, ckpt.STATE)):
        return None  # RUN/best: the adapter alone (no trainer state, optimizer or ZeRO partitions)
    return ckpt.resolve_checkpoint(path)


def _shards_state(ckpt_dir: str) -> dict[str, torch.Tensor]:
    """fp32 trainable weights reassembled from DeepSpeed's ZeRO partitions (offline, no processes)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    if not os.path.isdir(os.path.join(ckpt_dir, "deepspeed")):
        raise ConfigError(f"{ckpt_dir} has no deepspeed/ directory: it was not written by DeepSpeed (use it without --from-shards)")
    from deepspeed.utils import zero_to_fp32

    # zero_to_fp32 unpickles the partitions with torch.load(weights_only=False): a crafted file would run code.
    # Its module-level `torch` is swapped for one whose load is weights_only=True + the DeepSpeed allowlist.
    with mock.patch.object(zero_to_fp32, "torch", _WeightsOnlyTorch()):
        state = get_fp32_state_dict_from_zero_checkpoint(ckpt_dir, tag="deepspeed", exclude_frozen_parameters=True)
    return {k: v.float() for k, v in state.items()}


class _WeightsOnlyTorch:
    """``torch`` as seen by DeepSpeed's ``zero_to_fp32``, with :func:`torch.load` always weights-only."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, map_location=None, **_ignored):  # weights_only=False from the caller is overridden
        return ckpt.weights_only_deepspeed_load(f, map_location=map_location)


def load_weights(path: str, from_shards: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(fp32 trainable weights, adapter metadata) of a checkpoint, run directory or adapter file."""
    ckpt_dir = _checkpoint_dir(path)
    adapter = ckpt.resolve_adapter_path(ckpt_dir or path)
    tensors, meta = ckpt.read_adapter(adapter)
    if from_shards:
        if ckpt_dir is None:
            raise ConfigError(f"--from-shards needs a checkpoint directory (RUN/checkpoints/step_N), {path} is an adapter "
                              f"file or adapter-only directory (such as RUN/best): convert it without --from-shards")
        shards = _shards_state(ckpt_dir)
        missing = sorted(set(tensors) - set(shards))
        if missing:
            raise ConfigError(f"the ZeRO partitions of {ckpt_dir} lack {len(missing)} trainable weight(s), e.g. {missing[:3]}")
        tensors = {k: shards[k] for k in tensors}
    return tensors, meta


def to_adapter(path: str, out: str, from_shards: bool = False) -> str:
    tensors, meta = load_weights(path, from_shards)
    info = {k: v for k, v in meta.items() if k not in ("format", "config", "fingerprints", "method")}
    _makedirs_for(out)
    ckpt.save_adapter(out, tensors, meta["config"], meta.get("fingerprints") or {}, **info)
    return out


def to_consolidated(path: str, out: str) -> str:
    from safetensors.torch import save_file

    ckpt_dir = _checkpoint_dir(path)
    uses_ds = ckpt_dir is not None and os.path.isdir(os.path.join(ckpt_dir, "deepspeed"))
    tensors, meta = load_weights(path, from_shards=uses_ds)
    _makedirs_for(out)
    save_file({k: v.contiguous() for k, v in tensors.items()}, out,
              metadata={"step": json.dumps(meta.get("step")), "method": str(meta.get("method")),
                        "source": "zero_to_fp32" if uses_ds else "adapter"})
    return out


def peft_key(name: str) -> str | None:
    """Our parameter name of a LoRA weight → peft's saved key (None when not a LoRA weight of the LLM).

    ``llm.model.layers.0.self_attn.q_proj.lora_A.default.weight`` →
    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``.
    """
    if not name.startswith("llm.") or ".lora_" not in name:
        return None
    parts = name[len("llm."):].split(".")
    out = []
    for i, part in enumerate(parts):
        if i > 0 and parts[i - 1].startswith("lora_") and part == "default":
            continue  # the adapter name is not part of peft's saved keys
        out.append(part)
    return "base_model.model." + ".".join(out)


def to_peft(path: str, out: str) -> str:
    tensors, meta = load_weights(path)
    ft = (meta["config"].get("model") or {}).get("finetune") or {}
    rank = int(ft.get("lora_rank") or 0)
    if rank <= 0:
        raise ConfigError(
            f"method {meta.get('method')!r} has no LoRA weights (model.finetune.lora_rank=0), so there is no peft form; "
            f"use --to adapter (scaling.training.checkpoint.load_adapter loads it)"
        )
    # imported after the refusals above: peft imports transformers (seconds), a refusal needs neither
    from peft import LoraConfig
    from safetensors.torch import save_file

    lora = {peft_key(k): v for k, v in tensors.items() if peft_key(k)}
    other_llm = sorted(k for k in tensors if k.startswith("llm.") and not peft_key(k))
    if other_llm:  # bias/norm tuning, bottleneck adapters, deep prompts inside the LLM
        raise ConfigError(
            f"this adapter also trains {len(other_llm)} LLM tensor(s) that are not LoRA (e.g. {other_llm[:3]}): a peft LoRA "
            f"checkpoint cannot hold them, so PeftModel would not be the trained model; use --to adapter or "
            f"--to consolidated (scaling.training.checkpoint.load_adapter loads both)"
        )
    targets = sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in lora})
    os.makedirs(out, exist_ok=True)
    config = LoraConfig(
        r=rank, lora_alpha=float(ft.get("lora_alpha", 16.0)), lora_dropout=float(ft.get("lora_dropout", 0.0)),
        target_modules=ft.get("lora_targets") or targets, bias="none", task_type="CAUSAL_LM",
        base_model_name_or_path=(meta["config"].get("model") or {}).get("llm"),
    )
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in lora.items()}, os.path.join(out, "adapter_model.safetensors"))
    info = {k: v for k, v in meta.items() if k not in ("format", "config", "fingerprints", "method")}
    ckpt.save_adapter(os.path.join(out, "scaling_adapter.safetensors"), tensors, meta["config"],
                      meta.get("fingerprints") or {}, **info)
    return out


def convert(path: str, fmt: str, out: str, from_shards: bool = False) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    if fmt == "adapter":
        return to_adapter(path, out, from_shards)
    if from_shards:  # peft reads the adapter; consolidated already reads the ZeRO partitions when there are any
        raise ConfigError(f"--from-shards applies to --to adapter only (--to {fmt} "
                          f"{'reads the ZeRO partitions by itself when the checkpoint has them' if fmt == 'consolidated' else 'reads the adapter'}); "
                          f"drop the flag, or convert with --to adapter --from-shards first")
    if fmt == "peft":
        return to_peft(path, out)
    return to_consolidated(path, out)


def _makedirs_for(out: str) -> None:
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)


def describe(path: str) -> dict[str, Any]:
    """What ``scaling inspect`` prints: method, backbones, step, parameter counts, metrics, training state."""
    ckpt_dir = _checkpoint_dir(path)
    tensors, meta = ckpt.read_adapter(ckpt.resolve_adapter_path(ckpt_dir or path))
    cfg = meta.get("config") or {}
    model = cfg.get("model") or {}
    counts: OrderedDict[str, int] = OrderedDict()
    for name, t in tensors.items():
        head = name.split(".")[0]
        if head == "llm":
            head = "llm (lora)" if ".lora_" in name else "llm (bias/norm)"
        elif head == "extractor":
            head = "encoder (bias/norm)"
        counts[head] = counts.get(head, 0) + t.numel()
    fps = meta.get("fingerprints") or {}
    info: dict[str, Any] = {
        "path": os.path.abspath(path),
        "method": meta.get("method"),
        "backbones": {
            "llm": model.get("llm"), "encoder": model.get("encoder"),
            "llm_architecture": (fps.get("llm") or {}).get("architecture"),
            "encoder_architecture": (fps.get("encoder") or {}).get("architecture"),
            "frozen_dtype": model.get("frozen_dtype"),
        },
        "step": meta.get("step"),
        "trainable_parameters": sum(counts.values()),
        "parameters_by_component": dict(counts),
        "metrics": meta.get("metrics") or {},
        "data": {k: (cfg.get("data") or {}).get(k) for k in ("name", "task", "train")},
    }
    if ckpt_dir is not None:
        state = ckpt.read_json(os.path.join(ckpt_dir, ckpt.STATE))
        info["checkpoint"] = {
            "dir": os.path.abspath(ckpt_dir),
            "format": "deepspeed" if os.path.isdir(os.path.join(ckpt_dir, "deepspeed")) else "torch",
            **{k: state.get(k) for k in ("step", "total_steps", "epoch", "world_size", "strategy", "zero_stage",
                                         "precision", "skipped_steps", "samples_seen", "train_seconds", "last_loss", "best")},
        }
        info["metrics"] = info["metrics"] or state.get("last_metrics") or {}
    return info


def format_description(info: dict[str, Any]) -> str:
    lines = [f"{info['path']}", f"  method: {info['method']}"]
    b = info["backbones"]
    lines.append(f"  llm: {b['llm']} [{b['llm_architecture']}], encoder: {b['encoder']} [{b['encoder_architecture']}], frozen {b['frozen_dtype']}")
    lines.append(f"  step: {info['step']}")
    parts = ", ".join(f"{k} {v:,}" for k, v in info["parameters_by_component"].items())
    lines.append(f"  trainable parameters: {info['trainable_parameters']:,} ({parts})")
    if "checkpoint" in info:
        c = info["checkpoint"]
        last_loss = f"{c['last_loss']:.4g}" if isinstance(c["last_loss"], float) else f"{c['last_loss']}"
        lines.append(
            f"  checkpoint: {c['format']} (strategy {c['strategy']}, ZeRO stage {c['zero_stage']}), world size {c['world_size']}, "
            f"epoch {c['epoch']}, step {c['step']}/{c['total_steps']}, skipped {c['skipped_steps']}, "
            f"{_duration(c['train_seconds'] or 0)}, last loss {last_loss}"
        )
        if c.get("best"):
            lines.append(f"  best: {c['best']}")
    metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info["metrics"].items())
    lines.append(f"  last metrics: {metrics or '-'}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
