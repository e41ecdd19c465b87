#!/bin/bash
# Multi-node training with the DeepSpeed launcher (passwordless SSH to every node of the hostfile).
#   bash launch/deepspeed_train.sh configs/coco_depalm.yaml [key=value ...]
# --no_local_rank: the trainer reads LOCAL_RANK from the environment, as under every other launcher.
# No requeue here (not SLURM): exit code 124 = checkpointed after SIGTERM; run again to resume.
set -uo pipefail
# ================================ set these ================================
HOSTFILE="${HOSTFILE:-launch/hostfile}"          # >>> SET: see launch/hostfile.example
DS_CONFIG="${DS_CONFIG:-ds_configs/zero2_bf16.json}"  # >>> SET: zero2_fp16.json on V100
MASTER_PORT="${MASTER_PORT:-29500}"
# ===========================================================================
CONFIG="${1:?usage: launch/deepspeed_train.sh CONFIG [key=value ...]}"; shift
exec deepspeed --hostfile "$HOSTFILE" --master_port "$MASTER_PORT" --no_local_rank \
    --module scaling train --config "$CONFIG" train.deepspeed="$DS_CONFIG" "$@"
