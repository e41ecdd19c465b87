#!/bin/bash
# Stops what tests/cluster/up.sh DIR started, each daemon by its pid file, and removes its /etc/hosts line.
#   bash tests/cluster/down.sh DIR [--rm]
set -uo pipefail
DIR="${1:?usage: tests/cluster/down.sh DIR [--rm]}"
if [ -f "$DIR/slurm.conf" ]; then  # jobs first, so that no step outlives its slurmd
    SLURM_CONF="$DIR/slurm.conf" timeout 10 scancel --full --signal=KILL --user=root 2>/dev/null || true
fi
stop() {  # PIDFILE: TERM, then KILL after 10 s
    local pidfile="$1" pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
for pidfile in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR"/sshd-*.pid "$DIR/munged.pid"; do
    stop "$pidfile"
done
if [ -f "$DIR/hosts-added" ]; then
    grep -vF "# scaling tests/cluster/up.sh $DIR" /etc/hosts > "$DIR/hosts.new" && cat "$DIR/hosts.new" > /etc/hosts
    rm -f "$DIR/hosts-added"
fi
if [ "${2:-}" = --rm ]; then rm -rf "$DIR"; fi
exit 0
