#!/bin/bash
# Multi-node training with the DeepSpeed launcher (passwordless SSH to every node of the hostfile).
#   bash launch/deepspeed_train.sh configs/coco_depalm.yaml [key=value ...]
# --no_local_rank: the trainer reads LOCAL_RANK from the environment, as under every other launcher.
# No requeue here (not SLURM): SIGTERM / SIGUSR1 to this script are passed to the trainers once (through the
# DeepSpeed launcher), they checkpoint, and this script exits 124: run the same command again to resume.
# DeepSpeed's launcher SIGKILLs trainers 30 s after passing a signal on: the step + save must fit in that.
set -uo pipefail
source launch/lib.sh || { echo "run this from the repository root" >&2; exit 2; }
# ================================ set these ================================
HOSTFILE="${HOSTFILE:-launch/hostfile}"          # >>> SET: see launch/hostfile.example
DS_CONFIG="${DS_CONFIG:-ds_configs/zero2_bf16.json}"  # >>> SET: zero2_fp16.json on V100
MASTER_PORT="$(job_port)"
REQUEUE_EXIT=124                                # = train.requeue_exit_code
# ===========================================================================
CONFIG="${1:?usage: launch/deepspeed_train.sh CONFIG [key=value ...]}"; shift
if [ ! -f "$HOSTFILE" ]; then
    # (the DeepSpeed launcher would only warn and train on this machine alone)
    echo "error: no hostfile at $HOSTFILE: copy launch/hostfile.example there and list your nodes (or set HOSTFILE=...);" \
         "for one machine use launch/single_node.sh" >&2
    exit 2
fi
NODES=$(grep -cvE '^[[:space:]]*(#|$)' "$HOSTFILE")
if [ "$NODES" -gt 1 ]; then
    # pdsh hands the command to a remote shell, which would expand patterns and reinterpret quotes
    for arg in "$@"; do
        case "$arg" in
            *[\{\}\*\?\$\`\;\|\&\<\>\(\)\!\"\'\\]*)
                echo "error: '$arg' has shell characters that the remote shell of a multi-node launch would expand or" \
                     "reinterpret (a shard pattern would become one argument per shard): put it in the YAML config" >&2
                exit 2 ;;
        esac
    done
fi
OUT_DIR=$(scaling_run_dir "$CONFIG" train.deepspeed="$DS_CONFIG" "$@") || exit 2
rm -f "$OUT_DIR/requeue"

set -m  # the launcher in its own process group: a signal reaches the trainers once, from the traps below
deepspeed --hostfile "$HOSTFILE" --master_port "$MASTER_PORT" --no_local_rank \
    --module scaling train --config "$CONFIG" train.deepspeed="$DS_CONFIG" "$@" &
PID=$!
pass_on() {  # signal for the trainers
    echo "[$(date)] SIG$1: passing it to the trainers" >&2
    if [ "$NODES" -gt 1 ]; then
        kill -s TERM "$PID" 2>/dev/null          # the multi-node runner stops pdsh and the launchers on every node
    else
        pkill -"$1" -P "$PID" 2>/dev/null        # one node: deepspeed.launcher.launch passes it to the trainers
    fi
}
trap 'pass_on TERM' TERM
trap 'pass_on TERM' USR1   # the launchers pass on SIGTERM/SIGINT only; the trainers treat both alike
trap 'pass_on INT' INT
wait_through_signals "$PID"
finish "$OUT_DIR" "$WAIT_RC" "$REQUEUE_EXIT"
