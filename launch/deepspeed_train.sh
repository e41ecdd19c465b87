#!/bin/bash
# Multi-node training with the DeepSpeed launcher (passwordless SSH to every node of the hostfile).
#   bash launch/deepspeed_train.sh configs/coco_depalm.yaml [key=value ...]
# --no_local_rank: the trainer reads LOCAL_RANK from the environment, as under every other launcher.
# No requeue here (not SLURM): SIGTERM / SIGUSR1 to this script are passed to the trainers once, they checkpoint,
# and this script exits 124: run the same command again to resume.
# One node: through DeepSpeed's launcher, which SIGKILLs the trainers 30 s after passing a signal on (the step +
# save must fit in that). Several nodes: as SIGUSR1 to rank 0 over SSH (its stop flag is all-reduced: every rank
# stops at the same step); DeepSpeed's multi-node runner is left alone, since on a signal it interrupts pdsh,
# whose closing SSH channels kill the trainers before they save.
# The environment this script sets for the trainers (OMP_NUM_THREADS, and the variables named in PASS_ENV) reaches
# every node: pdsh starts remote shells with a bare environment, so it is written to RUN/deepspeed_env, which
# DeepSpeed's runner exports on each node (DS_ENV_FILE; your own ~/.deepspeed_env and ./.deepspeed_env are
# copied into it first, and win).
set -uo pipefail
source launch/lib.sh || { echo "run this from the repository root" >&2; exit 2; }
# ================================ set these ================================
HOSTFILE="${HOSTFILE:-launch/hostfile}"          # >>> SET: see launch/hostfile.example
DS_CONFIG="${DS_CONFIG:-ds_configs/zero2_bf16.json}"  # >>> SET: zero2_fp16.json on V100
MASTER_PORT="$(job_port)"
REQUEUE_EXIT=124                                # = train.requeue_exit_code
OMP_THREADS="${OMP_THREADS:-}"                  # >>> SET: threads per process (empty: this node's CPUs / slots)
PASS_ENV="${PASS_ENV:-HF_HOME HF_HUB_OFFLINE TRANSFORMERS_OFFLINE TOKENIZERS_PARALLELISM}"  # also sent to every node
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

FIRST_HOST=$(grep -vE '^[[:space:]]*(#|$)' "$HOSTFILE" | head -n 1 | awk '{print $1}')
STARTED=$(date +%s)

# threads per trainer as the sbatch scripts set them (the node's CPUs shared by its processes), on every node
SLOTS=$(grep -vE '^[[:space:]]*(#|$)' "$HOSTFILE" | head -n 1 | sed -n 's/.*slots=\([0-9]*\).*/\1/p')
SLOTS="${SLOTS:-1}"
export OMP_NUM_THREADS="${OMP_THREADS:-$(( $(nproc) / SLOTS > 0 ? $(nproc) / SLOTS : 1 ))}"
ENV_FILE="$(cd "$OUT_DIR" && pwd)/deepspeed_env"
write_deepspeed_env "$ENV_FILE" OMP_NUM_THREADS $PASS_ENV || exit 2
export DS_ENV_FILE="$ENV_FILE"   # an absolute name: DeepSpeed's runner reads it instead of ~/ and ./.deepspeed_env

set -m  # the launcher in its own process group: a signal reaches the trainers once, from the traps below
deepspeed --hostfile "$HOSTFILE" --master_port "$MASTER_PORT" --no_local_rank \
    --module scaling train --config "$CONFIG" train.deepspeed="$DS_CONFIG" "$@" &
PID=$!
rank0_pid() {  # pid of this launch's rank 0 (RUN/ranks/rank00000.json written after it started), or nothing
    local file="$OUT_DIR/ranks/rank00000.json"
    [ -f "$file" ] && [ "$(stat -c %Y "$file")" -ge "$STARTED" ] || return 0
    python -c 'import json, sys; print(json.load(open(sys.argv[1]))["pid"])' "$file" 2>/dev/null
}
pass_on() {  # signal for the trainers
    local pid
    if [ "$NODES" -gt 1 ] && [ "$1" != INT ] && pid=$(rank0_pid) && [ -n "$pid" ]; then
        echo "[$(date)] SIG$1: passing it to rank 0 (pid $pid on $FIRST_HOST) as SIGUSR1" >&2
        ssh "$FIRST_HOST" kill -s USR1 "$pid" || kill -s TERM "$PID" 2>/dev/null
    elif [ "$NODES" -gt 1 ]; then
        echo "[$(date)] SIG$1: passing it to the DeepSpeed runner (no rank 0 yet, or Ctrl-C)" >&2
        kill -s TERM "$PID" 2>/dev/null          # the multi-node runner stops pdsh and the launchers on every node
    else
        echo "[$(date)] SIG$1: passing it to the trainers" >&2
        pkill -"$1" -P "$PID" 2>/dev/null        # one node: deepspeed.launcher.launch passes it to the trainers
    fi
}
trap 'pass_on TERM' TERM
trap 'pass_on TERM' USR1   # the launchers pass on SIGTERM/SIGINT only; the trainers treat both alike
trap 'pass_on INT' INT
wait_through_signals "$PID"
finish "$OUT_DIR" "$WAIT_RC" "$REQUEUE_EXIT"
