#!/bin/bash
# A two-node Slurm cluster and two SSH "nodes" on this one machine, for the `cluster` tests (CI runs it as root):
# munged, slurmctld, two slurmd (nodes scnode1/scnode2, each on its own port: Debian's slurm-wlm supports several
# slurmd per host) and one sshd per node on loopback ports, for DeepSpeed's pdsh launcher.
#   bash tests/cluster/up.sh [DIR]        # prints DIR; `source DIR/env.sh` sets SLURM_CONF and PATH for clients
#   bash tests/cluster/down.sh DIR        # stops every daemon by its pid file
# Everything the daemons write lives in DIR (default: a new temporary directory). The node names are added to
# /etc/hosts (127.0.0.1) unless they resolve already; down.sh removes the line again.
# Needs: apt-get install -y slurm-wlm munge openssh-server pdsh
set -euo pipefail
NODES=(scnode1 scnode2)
DIR="${1:-$(mktemp -d /tmp/scaling-cluster.XXXXXX)}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
for tool in munged slurmctld slurmd sshd pdsh sbatch; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "up.sh: $tool is not installed (apt-get install -y slurm-wlm munge openssh-server pdsh)" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "up.sh: run as root (slurmd and sshd need it)" >&2; exit 3; }
export PATH="/usr/sbin:$PATH"
free_ports() {  # N free TCP ports on 127.0.0.1
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
read -r CTLD_PORT SLURMD1 SLURMD2 SSH1 SSH2 <<< "$(free_ports 5)"
CPUS=$(nproc)

# ---------------------------------------------------------------- names -> 127.0.0.1
if ! getent hosts "${NODES[0]}" >/dev/null || ! getent hosts "${NODES[1]}" >/dev/null; then
    echo "127.0.0.1 ${NODES[*]}  # scaling tests/cluster/up.sh $DIR" >> /etc/hosts
    echo "$DIR" > "$DIR/hosts-added"
fi

# ---------------------------------------------------------------- munge
dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none
chmod 600 "$DIR/munge.key"
munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed"

# ---------------------------------------------------------------- slurm
mkdir -p "$DIR/ctld" "$DIR/spool/${NODES[0]}" "$DIR/spool/${NODES[1]}"
cat > "$DIR/slurm.conf" <<CONF
ClusterName=scalingci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also is how long a requeued job waits before it may start again (120 s by default)
AuthInfo=socket=$DIR/munge.socket,cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
# fast scheduling for tests: a requeued or preempting job starts within seconds
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2,sched_min_interval=100000
MinJobAge=5
KillWait=30
InactiveLimit=0
SlurmdTimeout=300
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=${NODES[0]} NodeAddr=127.0.0.1 Port=$SLURMD1 CPUs=$CPUS RealMemory=2000 State=UNKNOWN
NodeName=${NODES[1]} NodeAddr=127.0.0.1 Port=$SLURMD2 CPUs=$CPUS RealMemory=2000 State=UNKNOWN
# preemptible work; 'low' kills at once (GraceTime 0: SIGTERM, KillWait, SIGKILL), 'lowgrace' gives 60 s
PartitionName=low Nodes=${NODES[0]},${NODES[1]} Default=YES PriorityTier=1 MaxTime=INFINITE State=UP
PartitionName=lowgrace Nodes=${NODES[0]},${NODES[1]} PriorityTier=1 GraceTime=60 MaxTime=INFINITE State=UP
PartitionName=high Nodes=${NODES[0]},${NODES[1]} PriorityTier=10 PreemptMode=OFF MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$DIR/slurm.conf"
slurmctld -i
for node in "${NODES[@]}"; do slurmd -N "$node"; done

# ---------------------------------------------------------------- sshd: one per node, loopback ports
mkdir -p "$DIR/ssh" "$DIR/bin" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/id"
cp "$DIR/ssh/id.pub" "$DIR/ssh/authorized_keys"
: > "$DIR/ssh/config"
i=0
for port in "$SSH1" "$SSH2"; do
    node="${NODES[$i]}"
    cat > "$DIR/ssh/sshd_$node.conf" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $DIR/ssh/host_key
PidFile $DIR/sshd-$node.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
SetEnv SCALING_SSH_NODE=$node
CONF
    "$(command -v sshd)" -f "$DIR/ssh/sshd_$node.conf" -E "$DIR/sshd-$node.log"
    cat >> "$DIR/ssh/config" <<CONF
Host $node
    HostName 127.0.0.1
    Port $port
CONF
    i=$((i + 1))
done
cat >> "$DIR/ssh/config" <<CONF
Host *
    User root
    IdentityFile $DIR/ssh/id
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
CONF
# pdsh and DeepSpeed's runner call `ssh` from PATH: this one reads the cluster's config
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$DIR/ssh/config" > "$DIR/bin/ssh"
chmod +x "$DIR/bin/ssh"

cat > "$DIR/env.sh" <<ENV
export SLURM_CONF=$DIR/slurm.conf
export PATH=$DIR/bin:/usr/sbin:\$PATH
export PDSH_RCMD_TYPE=ssh
export SCALING_CLUSTER_DIR=$DIR
ENV

# ---------------------------------------------------------------- wait until both nodes are idle
for _ in $(seq 1 60); do
    idle=$(sinfo -h -N -p low -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
    [ "$idle" -ge 2 ] && break
    sleep 0.5
done
if [ "${idle:-0}" -lt 2 ]; then
    echo "up.sh: the two slurmd did not register (see $DIR/*.log)" >&2
    sinfo -N >&2 || true
    exit 4
fi
for node in "${NODES[@]}"; do
    "$DIR/bin/ssh" "$node" true || { echo "up.sh: ssh $node failed (see $DIR/sshd-$node.log)" >&2; exit 4; }
done
echo "$DIR"
