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

# After the trainers exit: a RUN/requeue marker written by this job means "checkpointed after a preemption
# signal". With `requeue` (the sbatch scripts): requeue the SLURM job (exit 0), or exit REQUEUE_EXIT when the
# requeue fails (resubmit to resume). Without: exit REQUEUE_EXIT (run the same command again to resume).
# No marker: exit with the trainers' code.
finish() {  # OUT_DIR RC REQUEUE_EXIT [requeue]
    local out_dir="$1" rc="$2" requeue_exit="$3" mode="${4:-}"
    if [ -f "$out_dir/requeue" ]; then
        local step; step=$(cat "$out_dir/requeue" 2>/dev/null)
        if [ "$mode" = requeue ]; then
            if scontrol requeue "$SLURM_JOB_ID"; then
                echo "[$(date)] checkpointed at step $step after a preemption signal; requeued job $SLURM_JOB_ID"
                exit 0
            fi
            echo "[$(date)] checkpointed at step $step, but 'scontrol requeue $SLURM_JOB_ID' failed: resubmit the same job to resume" >&2
            exit "$requeue_exit"
        fi
        echo "[$(date)] checkpointed at step $step after a preemption signal: run the same command again to resume (exit $requeue_exit)"
        exit "$requeue_exit"
    fi
    echo "[$(date)] training exited with code $rc"
    exit "$rc"
}
