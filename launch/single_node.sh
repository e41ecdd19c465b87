#!/bin/bash
# One machine, all its GPUs (or the CPU): torchrun --standalone.
#   bash launch/single_node.sh configs/coco_depalm.yaml [key=value ...]
#   NGPUS=4 bash launch/single_node.sh configs/coco_depalm.yaml train.deepspeed=ds_configs/zero3_bf16.json
# SIGTERM / SIGUSR1 to this script (or Ctrl-C: SIGINT, which stops at once) reach the trainers once, through
# torchrun; after a SIGTERM/SIGUSR1 they checkpoint and this script exits 124: run the same command again to
# resume. Under SLURM use launch/slurm_train.sbatch (SLURM signals every process itself, and requeues).
set -uo pipefail
source launch/lib.sh || { echo "run this from the repository root" >&2; exit 2; }
CONFIG="${1:?usage: launch/single_node.sh CONFIG [key=value ...]}"; shift
NGPUS="${NGPUS:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"   # >>> SET to override
REQUEUE_EXIT=124                                # = train.requeue_exit_code
OUT_DIR=$(scaling_run_dir "$CONFIG" "$@") || exit 2
rm -f "$OUT_DIR/requeue"

set -m  # torchrun in its own process group: a signal reaches it once, from the traps below, not also from the terminal
torchrun --standalone --nproc_per_node="$NGPUS" \
    --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout=110 \
    -m scaling train --config "$CONFIG" "$@" &
PID=$!
for sig in TERM USR1 INT HUP; do
    # shellcheck disable=SC2064
    trap "echo \"[\$(date)] SIG$sig: passing it to the trainers\" >&2; kill -s $sig $PID 2>/dev/null" "$sig"
done
wait_through_signals "$PID"
finish "$OUT_DIR" "$WAIT_RC" "$REQUEUE_EXIT"
