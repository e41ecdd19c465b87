# Shared by launch/*.sh and launch/*.sbatch; sourced from the repository root (`source launch/lib.sh`).
# shellcheck shell=bash

# The run directory the trainer will use (train.output_dir after CONFIG and the overrides); a config error
# fails here, before anything starts.   usage: OUT_DIR=$(scaling_run_dir CONFIG [key=value ...]) || exit 2
scaling_run_dir() {
    local config="$1"; shift
    python -m scaling train --config "$config" "$@" --print-config \
        | python -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["train"]["output_dir"])'
}

# Wait for PID while trapped signals arrive (each one interrupts `wait`); WAIT_RC = its exit code.
wait_through_signals() {
    local pid="$1"
    while true; do
        wait "$pid"; WAIT_RC=$?
        kill -0 "$pid" 2>/dev/null || break
    done
}

# A rendezvous port per job, so two jobs whose first node is the same do not collide: MASTER_PORT if set,
# else derived from SLURM_JOB_ID (or this shell's pid outside SLURM).
job_port() {
    echo "${MASTER_PORT:-$((10000 + ${SLURM_JOB_ID:-$$} % 20000))}"  # 10000-29999: below the ephemeral range
}

# OVERRIDES (a space-separated string of key=value) as the array OVR, with train.output_dir=RUN_DIR last
# when RUN_DIR is set (`scaling sweep` sets it; it may contain spaces, and it replaces any output_dir given).
overrides_array() {
    OVR=()
    local item items=()
    read -r -a items <<< "${OVERRIDES:-}"
    for item in ${items[@]+"${items[@]}"}; do
        if [ -n "${RUN_DIR:-}" ] && [[ "$item" == train.output_dir=* ]]; then continue; fi
        OVR+=("$item")
    done
    if [ -n "${RUN_DIR:-}" ]; then OVR+=("train.output_dir=$RUN_DIR"); fi
}

# The state of a SLURM job as scontrol reports it (PENDING, RUNNING, ...; empty when unknown).
job_state() {
    scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1
}

# Processes per node: PROCS_PER_NODE when set, else the GPUs SLURM gave this node, else 1 (a node without
# GPUs or GRES); OMP_NUM_THREADS: OMP_THREADS when set, else the node's CPUs (SLURM_CPUS_PER_TASK, one task per
# node) shared by those processes.   usage: slurm_layout  (sets PROCS_PER_NODE, exports OMP_NUM_THREADS)
slurm_layout() {
    local gpus="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}"
    gpus="${gpus##*:}"                              # "h100:8" -> "8"
    if [ -z "${PROCS_PER_NODE:-}" ]; then
        if [[ "$gpus" =~ ^[0-9]+$ ]] && [ "$gpus" -gt 0 ]; then PROCS_PER_NODE="$gpus"; else PROCS_PER_NODE=1; fi
    fi
    if ! [[ "$PROCS_PER_NODE" =~ ^[1-9][0-9]*$ ]]; then
        echo "error: PROCS_PER_NODE=$PROCS_PER_NODE: set a positive number of processes per node" >&2
        exit 2
    fi
    local cpus="${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}"
    export OMP_NUM_THREADS="${OMP_THREADS:-$(( cpus / PROCS_PER_NODE > 0 ? cpus / PROCS_PER_NODE : 1 ))}"
}

# A signal that reached the batch shell alone (`scancel -b -s SIG`, `#SBATCH --signal=B:SIG@T`) is passed on to
# the trainers once, as SIGUSR1 (the trainers treat SIGTERM and SIGUSR1 alike): never as SIGTERM through srun,
# which turns a SIGTERM into a SIGKILL of the step. With torchrun (MODE torchrun) it goes to rank 0 directly
# (this node; its stop flag is all-reduced, so every rank stops at the same step), since a second signal would
# cut torchrun's own shutdown short when SLURM signalled the step too (preemption, scancel); before rank 0 has
# written RUN/ranks/rank00000.json, through srun. With one srun task per trainer (MODE tasks), through srun
# (repeated signals are ignored by the trainers).   usage: pass_on_to_step SIG OUT_DIR SRUN_PID MODE
pass_on_to_step() {
    local sig="$1" out_dir="$2" srun_pid="$3" mode="$4" pid=""
    if [ "$mode" = torchrun ] && [ -f "$out_dir/ranks/rank00000.json" ]; then
        pid=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["pid"])' "$out_dir/ranks/rank00000.json" 2>/dev/null)
        # only this job's rank 0 (a file left by an earlier job names another process)
        # (the braces: a rank 0 already gone makes the redirection itself fail, which 2>/dev/null must cover too;
        # grep reads to the end, not -q: under the sbatch scripts' pipefail, a grep that stops early makes tr die
        # of SIGPIPE on a large environment and the pipeline fail)
        if [ -z "$pid" ] || ! { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -x "SLURM_JOB_ID=$SLURM_JOB_ID" > /dev/null; then
            pid=""
        fi
    fi
    if [ -n "$pid" ]; then
        echo "[$(date)] batch shell: SIG$sig, passing it to rank 0 (pid $pid) as SIGUSR1"
        kill -s USR1 "$pid" 2>/dev/null
    else
        echo "[$(date)] batch shell: SIG$sig, passing it to the step as SIGUSR1"
        kill -s USR1 "$srun_pid" 2>/dev/null
    fi
}

# After the trainers exit: a RUN/requeue marker written by this job means "checkpointed after a preemption
# signal". With `requeue` (the sbatch scripts): requeue the SLURM job (exit 0), or exit REQUEUE_EXIT when the
# requeue fails (resubmit to resume). Without: exit REQUEUE_EXIT (run the same command again to resume).
# No marker: exit with the trainers' code.
finish() {  # OUT_DIR RC REQUEUE_EXIT [requeue]
    local out_dir="$1" rc="$2" requeue_exit="$3" mode="${4:-}"
    if [ -f "$out_dir/requeue" ]; then
        local step; step=$(cat "$out_dir/requeue" 2>/dev/null)
        if [ "$mode" = requeue ]; then
            local said
            if said=$(scontrol requeue "$SLURM_JOB_ID" 2>&1); then
                echo "[$(date)] checkpointed at step $step after a preemption signal; requeued job $SLURM_JOB_ID"
                exit 0
            fi
            echo "$said" >&2
            # a preemption (PreemptMode=REQUEUE) may have requeued the job already: scontrol then says "Job is
            # pending execution" (the job is COMPLETING into PENDING) and the job resumes by itself; a second job
            # on the same run directory would train beside it
            local state; state=$(job_state "$SLURM_JOB_ID")
            if [[ "$said" == *"pending execution"* ]]; then state="${state:-PENDING}"; state="$state+requeued"; fi
            case "$state" in
                PENDING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|PREEMPTED|*+requeued)
                    echo "[$(date)] checkpointed at step $step; Slurm has already requeued job $SLURM_JOB_ID (state ${state%+requeued}):" \
                         "it resumes from this checkpoint by itself. Do not resubmit it (a second job would train in the same run directory)"
                    exit 0 ;;
            esac
            echo "[$(date)] checkpointed at step $step, but 'scontrol requeue $SLURM_JOB_ID' failed (job state ${state:-unknown}):" \
                 "resubmit the same job to resume" >&2
            exit "$requeue_exit"
        fi
        echo "[$(date)] checkpointed at step $step after a preemption signal: run the same command again to resume (exit $requeue_exit)"
        exit "$requeue_exit"
    fi
    echo "[$(date)] training exited with code $rc"
    exit "$rc"
}

# DeepSpeed's multi-node runner (pdsh) starts the trainers in remote shells with a bare environment: it exports
# there only what a .deepspeed_env file lists (and a few prefixes: PYTHON*, UCX*, ...). Write FILE with the given
# variables' values as this shell has them (those that are set), after the lines of ~/.deepspeed_env and
# ./.deepspeed_env, which DeepSpeed no longer reads once DS_ENV_FILE names FILE (their values win).
#   usage: write_deepspeed_env FILE VAR [VAR ...]
write_deepspeed_env() {
    local file="$1" var user; shift
    {
        for var in "$@"; do
            if [ -n "${!var+x}" ]; then printf '%s=%q\n' "$var" "${!var}"; fi
        done
        for user in "$HOME/.deepspeed_env" "./.deepspeed_env"; do
            if [ -f "$user" ]; then grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$user"; fi
        done
    } > "$file.tmp" && mv "$file.tmp" "$file"
}
