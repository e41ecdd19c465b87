"""The launch line of a recommended setting, for the scripts in ``launch/``."""

from __future__ import annotations

import shlex

from scaling.plan.memory import Setting

DS_CONFIGS = {(2, False, "bf16"): "ds_configs/zero2_bf16.json", (2, False, "fp16"): "ds_configs/zero2_fp16.json",
              (3, False, "bf16"): "ds_configs/zero3_bf16.json", (3, False, "fp16"): "ds_configs/zero3_bf16.json",
              (3, True, "bf16"): "ds_configs/zero3_offload.json", (3, True, "fp16"): "ds_configs/zero3_offload.json"}


def ds_config(s: Setting) -> str | None:
    """The shipped DeepSpeed JSON of a setting (its fp16/bf16 sections are ``auto``: filled from train.precision)."""
    if s.zero_stage == 0:
        return None
    return DS_CONFIGS[(s.zero_stage, s.offload, "fp16" if s.precision == "fp16" else "bf16")]


def overrides(s: Setting) -> list[str]:
    """``key=value`` overrides that give the config this setting (the global batch is the config's)."""
    out = [f"train.micro_batch={s.micro_batch}", f"train.precision={s.precision}",
           f"model.frozen_dtype={'fp32' if s.precision == 'fp32' else s.precision}",
           f"train.gradient_checkpointing={'true' if s.checkpointing else 'false'}",
           f"train.deepspeed={ds_config(s) or 'null'}"]
    return out


def launch_lines(config: str, s: Setting, nodes: int, gpus_per_node: int) -> dict[str, str]:
    """{"sbatch", "deepspeed", "check"} command lines (``single_node`` instead of ``deepspeed`` on one node)."""
    ovr = overrides(s)
    cfg = shlex.quote(config)
    lines = {
        "sbatch": (f"sbatch --nodes={nodes} --gpus-per-node={gpus_per_node} "
                   f"--export=ALL,CONFIG={cfg},OVERRIDES={shlex.quote(' '.join(ovr))} launch/slurm_train.sbatch"),
        "check": f"scaling train --config {cfg} --check --world-size {nodes * gpus_per_node} {' '.join(ovr)}",
    }
    if nodes > 1:
        rest = [o for o in ovr if not o.startswith("train.deepspeed=")]
        ds = ds_config(s)
        if ds:
            lines["deepspeed"] = f"DS_CONFIG={ds} bash launch/deepspeed_train.sh {cfg} {' '.join(rest)}"
    else:
        lines["single_node"] = f"NGPUS={gpus_per_node} bash launch/single_node.sh {cfg} {' '.join(ovr)}"
    return lines
