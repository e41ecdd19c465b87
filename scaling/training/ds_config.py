"""DeepSpeed JSON configs: read, check against the training config, fill the values the trainer owns.

The trainer owns the batch geometry, clipping and precision. In ``ds_configs/*.json`` those keys
are ``"auto"``; :func:`resolve` fills them from ``train.*``. A number (or boolean) that is not
``"auto"`` must agree with the training config, otherwise it is reported — with every other
problem — before any model loads. The trainer also owns the optimizer and the schedule (AdamW +
warm-up/cosine, :mod:`scaling.training.optim` / :mod:`scaling.training.schedule`): a JSON with an
``optimizer`` or ``scheduler`` section is refused.

Owned keys → source:

=================================== =====================================================
``train_batch_size``                ``train.global_batch``
``train_micro_batch_size_per_gpu``  ``train.micro_batch``
``gradient_accumulation_steps``     ``global_batch / (micro_batch × world size)``
``gradient_clipping``               ``train.clip``
``fp16.enabled`` / ``bf16.enabled`` ``train.precision == "fp16"`` / ``"bf16"``
=================================== =====================================================
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

AUTO = "auto"


def load(path: str) -> dict[str, Any]:
    """Read a DeepSpeed JSON file; errors name the file."""
    from scaling.config.base import ConfigError

    if not os.path.isfile(path):
        raise ConfigError(f"train.deepspeed: {path!r} does not exist (shipped configs: ds_configs/zero2_bf16.json, ...)")
    try:
        with open(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise ConfigError(f"train.deepspeed: {path!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"train.deepspeed: {path!r} must hold a JSON object")
    return data


def zero_stage(ds: dict[str, Any]) -> int:
    return int((ds.get("zero_optimization") or {}).get("stage", 0) or 0)


def offloads_optimizer(ds: dict[str, Any]) -> bool:
    device = ((ds.get("zero_optimization") or {}).get("offload_optimizer") or {}).get("device", "none")
    return str(device).lower() not in ("none", "")


def offloads_params(ds: dict[str, Any]) -> bool:
    device = ((ds.get("zero_optimization") or {}).get("offload_param") or {}).get("device", "none")
    return str(device).lower() not in ("none", "")


def owned_values(global_batch: int, micro_batch: int, world_size: int, clip: float, precision: str) -> dict[str, Any]:
    """The values the trainer owns, as dotted DeepSpeed keys."""
    return {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": global_batch // max(1, micro_batch * world_size),
        "gradient_clipping": clip,
        "fp16.enabled": precision == "fp16",
        "bf16.enabled": precision == "bf16",
    }


def _get(ds: dict, dotted: str) -> Any:
    node: Any = ds
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(ds: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = ds
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _agrees(given: Any, want: Any) -> bool:
    if isinstance(want, bool):
        return isinstance(given, bool) and given == want
    if isinstance(given, bool) or not isinstance(given, (int, float)):
        return False
    return abs(float(given) - float(want)) <= 1e-12 * max(1.0, abs(float(want)))


def check(ds: dict[str, Any], owned: dict[str, Any], path: str = "the DeepSpeed config") -> list[str]:
    """Problems: owned values that are neither absent, "auto" nor equal to the training config's."""
    source = {
        "train_batch_size": "train.global_batch",
        "train_micro_batch_size_per_gpu": "train.micro_batch",
        "gradient_accumulation_steps": "train.global_batch / (train.micro_batch × world size)",
        "gradient_clipping": "train.clip",
        "fp16.enabled": "train.precision",
        "bf16.enabled": "train.precision",
    }
    problems = []
    for key, want in owned.items():
        given = _get(ds, key)
        if given is None or given == AUTO:
            continue
        if not _agrees(given, want):
            problems.append(
                f"{path}: {key} is {json.dumps(given)} but the training config gives {json.dumps(want)} "
                f"(from {source[key]}); set it to \"auto\" in the JSON or change {source[key]}"
            )
    for section in ("optimizer", "scheduler"):
        if section in ds:
            problems.append(
                f"{path}: remove the '{section}' section — the trainer owns the optimizer (AdamW, train.lr, "
                f"train.weight_decay) and the warm-up/cosine schedule (train.warmup_fraction, train.min_lr_ratio)"
            )
    stage = zero_stage(ds)
    if stage not in (0, 1, 2, 3):
        problems.append(f"{path}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage}")
    if offloads_params(ds) and stage != 3:
        problems.append(f"{path}: zero_optimization.offload_param needs stage 3 (got stage {stage})")
    for key in ("fp16", "bf16"):
        section = ds.get(key)
        if section is not None and not isinstance(section, dict):
            problems.append(f"{path}: '{key}' must be an object like {{\"enabled\": \"auto\"}}")
    return problems


def resolve(ds: dict[str, Any], owned: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``ds`` with the owned values filled in (call :func:`check` first)."""
    out = copy.deepcopy(ds)
    for key, value in owned.items():
        _set(out, key, value)
    if out.get("bf16", {}).get("enabled"):
        # a non-finite gradient skips the step (counted) instead of corrupting the weights
        out["bf16"].setdefault("check_grad_overflow", True)
    if out.get("fp16", {}).get("enabled"):
        out["fp16"].setdefault("loss_scale", 0)  # 0 = dynamic loss scaling
    # torch's AdamW (or DeepSpeedCPUAdam with offload) is what ZeRO partitions
    out.setdefault("zero_allow_untested_optimizer", True)
    out.setdefault("steps_per_print", 10**9)  # the trainer logs; keep DeepSpeed's own progress lines quiet
    out.setdefault("wall_clock_breakdown", False)
    return out
