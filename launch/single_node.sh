#!/bin/bash
# One machine, all its GPUs (or the CPU): torchrun --standalone. Works inside or outside SLURM.
#   bash launch/single_node.sh configs/coco_depalm.yaml [key=value ...]
#   NGPUS=4 bash launch/single_node.sh configs/coco_depalm.yaml train.deepspeed=ds_configs/zero3_bf16.json
# Exit code 124 means: checkpointed after SIGTERM/SIGUSR1; run the same command again to resume.
set -uo pipefail
CONFIG="${1:?usage: launch/single_node.sh CONFIG [key=value ...]}"; shift
NGPUS="${NGPUS:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"   # >>> SET to override
exec torchrun --standalone --nproc_per_node="$NGPUS" \
    --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout=110 \
    -m scaling train --config "$CONFIG" "$@"
