#!/usr/bin/env bash
# A real one-host SLURM cluster for the launch tests: slurmctld, two slurmd nodes (`slurmd -N`),
# slurmdbd on a private MariaDB so `sacct` (and submitit's job states) work.
#
#   bash tests/slurm/cluster.sh start   # install Debian slurm-wlm/munge/slurmdbd/mariadb if missing, start
#   bash tests/slurm/cluster.sh stop    # cancel jobs, stop every daemon this script started
#   bash tests/slurm/cluster.sh status
#   bash tests/slurm/cluster.sh ensure-state-dir DIR   # create or vet a state directory, nothing else
#
# Runs as root. Configuration goes to /etc/slurm (where every SLURM command looks for it); state, logs,
# spool and the database live under $EGOVLPV2_SLURM_STATE (default /var/tmp/egovlpv2-slurm).
# `start` is idempotent: daemons already running are left alone.
# The state directory is in a world-writable place under a predictable name, and root runs daemons and
# `kill` from what it holds: it is used only if it is a real directory owned by the user running this
# script that no one else may write to (created with `mkdir` without -p when missing); anything else,
# a symlink or a directory another user made first, is refused.
set -euo pipefail

STATE=${EGOVLPV2_SLURM_STATE:-/var/tmp/egovlpv2-slurm}
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=egovlpv2
NODES=(ego-n1 ego-n2)
CPUS_PER_NODE=${EGOVLPV2_SLURM_CPUS:-2}
MEM_PER_NODE_MB=${EGOVLPV2_SLURM_MEM_MB:-8000}
CTLD_PORT=16817
DBD_PORT=16819
NODE_PORT0=16821
DB_PORT=16306
DB_SOCK=$STATE/mysql/mysqld.sock
MARKER="# written by egovlpv2 tests/slurm/cluster.sh"
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf

log() { echo "[cluster.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }

check_state_parent() {  # check_state_parent DIR: others may not swap DIR for their own inside its parent
  local parent mode
  parent=$(realpath -- "$(dirname -- "$1")") || die "the parent of $1 does not exist"
  mode=$(stat -c %a -- "$parent")
  # A parent that others may write to must be sticky (like /tmp), or they could rename DIR away.
  (( (8#$mode & 8#022) == 0 || (8#$mode & 8#1000) != 0 )) || die "$parent is writable by others without the sticky bit; refusing to keep cluster state in it"
}

check_state_dir() {  # check_state_dir DIR: refuse a DIR that someone else could have planted or can change
  local dir=$1 owner mode
  check_state_parent "$dir"
  [[ -L $dir ]] && die "$dir is a symlink; refusing to keep cluster state there"
  [[ -d $dir ]] || die "$dir is not a directory; refusing to keep cluster state there"
  owner=$(stat -c %u -- "$dir") mode=$(stat -c %a -- "$dir")
  [[ $owner == "$(id -u)" ]] || die "$dir is owned by uid $owner, not $(id -u); refusing to use another user's directory"
  (( (8#$mode & 8#022) == 0 )) || die "$dir is writable by group or others (mode $mode); refusing to use it"
}

ensure_state_dir() {  # ensure_state_dir DIR: create DIR (mode 755) when missing, then vet it
  local dir=$1
  check_state_parent "$dir"
  if [[ ! -e $dir && ! -L $dir ]]; then
    mkdir -m 755 -- "$dir" || die "cannot create $dir (its parent must exist; it must not appear meanwhile)"
  fi
  check_state_dir "$dir"
}

alive() {  # alive PIDFILE: the process named in the pid file is running
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: SECONDS scaled like every test bound (tests/helpers.py)
  local seconds what=$2
  seconds=$(cd -- "$REPO" && python3 -c "from tests.helpers import liveness; print(round(liveness($1)))") ||
    die "cannot read the test time factor from $REPO/tests/helpers.py"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s (logs in $STATE/log)"
    sleep 0.5
  done
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurm-wlm)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v munged >/dev/null || missing+=(munge)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  ((${#missing[@]} == 0)) && return
  [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root"
  log "installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

add_hosts() {
  # MASTER_ADDR is the first node's name: if it does not resolve, torch.distributed hangs.
  local name
  for name in "${NODES[@]}"; do
    grep -qE "^[^#]*[[:space:]]$name([[:space:]]|\$)" /etc/hosts || echo "127.0.0.1 $name" >>/etc/hosts
  done
}

write_configs() {
  if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to overwrite a real cluster's config"
  fi
  ensure_state_dir "$STATE"
  mkdir -p /etc/slurm "$STATE"/{log,ctld,mysql}
  local i nodes_conf=""
  for i in "${!NODES[@]}"; do
    nodes_conf+="NodeName=${NODES[$i]} Port=$((NODE_PORT0 + i)) CPUs=$CPUS_PER_NODE RealMemory=$MEM_PER_NODE_MB State=UNKNOWN"$'\n'
  done
  cat >"$CONF" <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again once the old credential expires: 10 s instead of the default 2 min
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
# schedule every 2 s, not every minute: a requeued job starts again as soon as it may
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=600
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
$nodes_conf
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DBD_CONF" <<EOF
$MARKER
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DBD_CONF"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  [[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"  # so that `stop` ends only a munged this script started
  wait_for 10 munged sh -c 'munge -n | unmunge'
}

start_mariadb() {
  local datadir=$STATE/mysql/data
  if [[ ! -d $datadir/mysql ]]; then
    log "initialising the accounting database in $datadir"
    mysql_install_db --user=root --datadir="$datadir" --auth-root-authentication-method=socket >"$STATE/log/mysql_install_db.log" 2>&1
  fi
  if ! alive "$STATE/mysqld.pid"; then
    mariadbd --no-defaults --user=root --datadir="$datadir" --socket="$DB_SOCK" --port=$DB_PORT \
      --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$STATE/mysqld.pid" \
      --log-error="$STATE/log/mysqld.log" --innodb-buffer-pool-size=32M >/dev/null 2>&1 &
    disown
  fi
  wait_for 60 mariadb mariadb --no-defaults --socket="$DB_SOCK" -u root -e 'SELECT 1'
  mariadb --no-defaults --socket="$DB_SOCK" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
  if ! alive "$STATE/slurmdbd.pid"; then slurmdbd; fi
  wait_for 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  if ! alive "$STATE/slurmctld.pid"; then slurmctld; fi
  wait_for 30 slurmctld scontrol ping
  local node
  for node in "${NODES[@]}"; do
    mkdir -p "$STATE/slurmd-$node"
    alive "$STATE/slurmd-$node.pid" || slurmd -N "$node"
  done
  # nodes left DOWN/DRAIN by an earlier unclean stop come back
  scontrol update NodeName="$(IFS=,; echo "${NODES[*]}")" State=RESUME >/dev/null 2>&1 || true
  wait_for 60 "idle nodes" sh -c "[ \$(sinfo -h -N -t idle,mixed,allocated -o %N | sort -u | wc -l) -ge ${#NODES[@]} ]"
}

start() {
  install_packages
  add_hosts
  write_configs
  start_munge
  start_mariadb
  start_slurm
  log "up: $(sinfo -h -N -o '%N %T %c CPUs' | tr '\n' ';') state in $STATE"
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME: TERM, then KILL after 15 s
  local pidfile=$1 name=$2 pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }; sleep 0.5; done
  log "$name (pid $pid) ignored SIGTERM; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop() {
  [[ -e $STATE || -L $STATE ]] || { log "nothing to stop: no $STATE"; return 0; }
  check_state_dir "$STATE"  # its pid files name what gets killed
  if [[ -e $CONF ]] && grep -qF "$MARKER" "$CONF" && alive "$STATE/slurmctld.pid"; then
    scancel --full --quiet --signal=KILL --state=RUNNING "--user=$(id -un)" 2>/dev/null || true
    scancel --quiet "--user=$(id -un)" 2>/dev/null || true
    sleep 1
  fi
  local node
  for node in "${NODES[@]}"; do stop_pidfile "$STATE/slurmd-$node.pid" "slurmd $node" & done
  wait
  stop_pidfile "$STATE/slurmctld.pid" slurmctld
  stop_pidfile "$STATE/slurmdbd.pid" slurmdbd
  stop_pidfile "$STATE/mysqld.pid" mariadb
  stop_pidfile "$STATE/munged.pid" munged
  log "stopped (logs and state kept in $STATE)"
}

status() {
  local name
  [[ -e $STATE || -L $STATE ]] && check_state_dir "$STATE"
  for name in slurmctld slurmdbd mysqld munged "${NODES[@]/#/slurmd-}"; do
    if alive "$STATE/$name.pid"; then echo "$name: running"; else echo "$name: stopped"; fi
  done
  sinfo -N 2>/dev/null || true
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  ensure-state-dir) [[ $# == 2 ]] || { echo "usage: $0 ensure-state-dir DIR" >&2; exit 2; }; ensure_state_dir "$2" ;;
  *) echo "usage: $0 start|stop|status|ensure-state-dir DIR" >&2; exit 2 ;;
esac
