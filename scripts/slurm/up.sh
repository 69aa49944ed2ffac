#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests and for trying profiles/slurm locally.
# Debian 12, as root, no systemd needed: installs slurm-wlm, munge, slurmdbd and MariaDB from apt when
# missing, writes every config into a project-owned state folder (scripts/slurm/common.sh; the one
# thing outside it is the link /etc/slurm/slurm.conf, which job steps need), starts
# munged, mariadbd, slurmdbd, slurmctld and slurmd, waits for the node to be idle and for `sacct` to
# report a finished smoke job. Idempotent: daemons already running (checked by pid file and
# /proc/PID/exe) are kept. Stop it with scripts/slurm/down.sh.
#
# slurmdbd is not optional: snakemake-executor-plugin-slurm 2.8.0 reads job status from `sacct`, which
# needs the accounting database; without it Snakemake waits forever after the first job.
#
# Last line on stdout: `export SLURM_CONF=...`, so `eval "$(scripts/slurm/up.sh | tail -1)"` points the
# SLURM clients (sbatch, sacct, Snakemake's plugin) at this cluster.
set -euo pipefail
. "$(dirname "$0")/common.sh"

[ "$(id -u)" = 0 ] || { echo "up.sh: needs root (it installs packages and starts daemons)" >&2; exit 2; }
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
  { echo "up.sh: needs Debian's apt-get and dpkg-query" >&2; exit 2; }
t0=$(now)

wait_until() {  # $1 = seconds, rest = command; polls every 0.25 s
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

fail() {  # $1 = message, $2 = log file to show
  echo "up.sh: $1" >&2
  [ -n "${2:-}" ] && [ -s "$2" ] && tail -20 "$2" >&2
  exit 1
}

# ---- 1. packages -------------------------------------------------------------------------------------
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "installing ${missing[*]}"
  # The package lists may be missing or stale on a fresh machine: update once, then retry.
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"/tmp/prunescope-slurm-apt.log" 2>&1 ||
    { apt-get update -q >>"/tmp/prunescope-slurm-apt.log" 2>&1 &&
      apt-get install -y -q --no-install-recommends "${missing[@]}" >>"/tmp/prunescope-slurm-apt.log" 2>&1; } ||
    { tail -20 /tmp/prunescope-slurm-apt.log >&2; echo "up.sh: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
t_packages=$(since "$t0")

# ---- 2. configuration ----------------------------------------------------------------------------------
mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/spool/slurmctld" "$STATE/spool/slurmd" "$STATE/db"
chmod 755 "$STATE" "$ETC" "$RUN" "$LOG"  # munged refuses a socket or key folder that others can write
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)  # below the real size, or the node drains
DB_PASS_FILE=$ETC/db.pass
[ -s "$DB_PASS_FILE" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DB_PASS_FILE")
DB_PASS=$(cat "$DB_PASS_FILE")

cat >"$ETC/slurm.conf.new" <<EOF
# Written by scripts/slurm/up.sh: one node, one partition, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No systemd or cgroups in a container: track a job's processes by parentage.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job without a memory request would otherwise get the whole node, and jobs would run one at a time.
DefMemPerCPU=1000
# Memory is enforced as on a real cluster: RSS sampled every second, a step above its --mem is killed
# (state OUT_OF_MEMORY). This also fills sacct's MaxRSS.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# For slurmdbd with munge this names the munge socket of the connection to slurmdbd (default: the system one).
AccountingStoragePass=$MUNGE_SOCKET
# sacct shows the plugin's --comment (rule_<rule>_wildcards_<values>) only when it is stored.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for 5 minutes (the plugin's squeue mode needs >= 3x its poll).
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldTimeout=120
SlurmdTimeout=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
mv "$ETC/slurm.conf.new" "$SLURM_CONF"

(umask 077; cat >"$ETC/slurmdbd.conf" <<EOF
# Written by scripts/slurm/up.sh (mode 600: slurmdbd refuses a config others can read).
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
chmod 600 "$ETC/slurmdbd.conf"

echo "export SLURM_CONF=$SLURM_CONF" >"$STATE/env.sh"
# Clients find the config through SLURM_CONF, but inside a job the plugin's job step calls srun with
# every SLURM_* variable removed but the job's ids, so srun looks in the default place: link it there,
# unless a real cluster's config is already there.
if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
  [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ] ||
    fail "$SYSTEM_CONF exists and is not this cluster's: is another SLURM cluster configured here?"
else
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -s "$SLURM_CONF" "$SYSTEM_CONF"
fi

need_port() {  # $1 = daemon, $2 = port: refuse to start next to someone else's service
  port_in_use "$2" && fail "port $2 for $1 is taken by another process; set PRUNESCOPE_SLURM_PORT_BASE"
  return 0
}

# ---- 3. munged, on its own key and socket -----------------------------------------------------------------
if [ ! -s "$ETC/munge.key" ]; then
  (umask 077; head -c 1024 /dev/urandom >"$ETC/munge.key")
fi
if ! daemon_pid munged >/dev/null; then
  rm -f "${PIDFILE[munged]}" "$MUNGE_SOCKET"
  /usr/sbin/munged --key-file="$ETC/munge.key" --socket="$MUNGE_SOCKET" --pid-file="${PIDFILE[munged]}" \
    --log-file="$LOG/munged.log" --seed-file="$STATE/munge.seed" --force ||
    fail "munged did not start" "$LOG/munged.log"
fi
wait_until 10 sh -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'" || fail "munge does not answer" "$LOG/munged.log"

# ---- 4. MariaDB + slurmdbd ---------------------------------------------------------------------------------
DB_CLIENT=(mariadb --no-defaults --socket="$RUN/mariadbd.sock" -uroot)
if ! daemon_pid mariadbd >/dev/null; then
  need_port mariadbd "$DB_PORT"
  if [ ! -d "$STATE/db/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$STATE/db" --user=root --skip-test-db \
      --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
      fail "mariadb-install-db failed" "$LOG/mariadb-install.log"
  fi
  setsid /usr/sbin/mariadbd --no-defaults --datadir="$STATE/db" --user=root --bind-address=127.0.0.1 \
    --port="$DB_PORT" --socket="$RUN/mariadbd.sock" --pid-file="${PIDFILE[mariadbd]}" \
    --log-error="$LOG/mariadb.log" --skip-name-resolve --innodb-buffer-pool-size=32M \
    </dev/null >/dev/null 2>&1 &
fi
wait_until 60 "${DB_CLIENT[@]}" -e "SELECT 1" || fail "MariaDB does not answer" "$LOG/mariadb.log"
"${DB_CLIENT[@]}" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

if ! daemon_pid slurmdbd >/dev/null; then
  need_port slurmdbd "$DBD_PORT"
  rm -f "${PIDFILE[slurmdbd]}"
  /usr/sbin/slurmdbd || fail "slurmdbd did not start" "$LOG/slurmdbd.log"  # reads slurmdbd.conf beside SLURM_CONF
fi
wait_until 60 sacctmgr -n show cluster || fail "slurmdbd does not answer" "$LOG/slurmdbd.log"
sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null

# ---- 5. slurmctld + slurmd -----------------------------------------------------------------------------------
if ! daemon_pid slurmctld >/dev/null; then
  need_port slurmctld "$CTLD_PORT"
  rm -f "${PIDFILE[slurmctld]}"
  /usr/sbin/slurmctld || fail "slurmctld did not start" "$LOG/slurmctld.log"
fi
if ! daemon_pid slurmd >/dev/null; then
  need_port slurmd "$SLURMD_PORT"
  rm -f "${PIDFILE[slurmd]}"
  /usr/sbin/slurmd -N "$NODE" || fail "slurmd did not start" "$LOG/slurmd.log"
fi
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
wait_until 60 sh -c "sinfo -h -n '$NODE' -o %T | grep -Eq '^(idle|mixed|allocated|drain|drained|draining)'" ||
  fail "node $NODE never registered (state: $(node_state))" "$LOG/slurmd.log"
# A node drained by an earlier run (e.g. a kill that timed out) is put back into service.
if node_state | grep -q drain; then scontrol update nodename="$NODE" state=resume; fi
wait_until 30 sh -c "sinfo -h -n '$NODE' -o %T | grep -Eq '^(idle|mixed|allocated)$'" ||
  fail "node $NODE not usable (state: $(node_state))" "$LOG/slurmctld.log"
t_daemons=$(since "$t0")

# ---- 6. a smoke job, seen finished by sacct (what Snakemake's plugin asks) ------------------------------------
job=$(sbatch --parsable -p "$PARTITION" -t 1 --mem 100 -o /dev/null -J prunescope-smoke --wrap true)
wait_until 60 sh -c "sacct -n -X -P -j '$job' -o State | grep -qx COMPLETED" ||
  fail "smoke job $job not COMPLETED in sacct: $(sacct -n -X -P -j "$job" -o State,Reason 2>&1)" "$LOG/slurmctld.log"

echo "SLURM cluster '$CLUSTER' up: node $NODE ($CPUS CPUs, $MEM_MB MB), partition $PARTITION, state in $STATE"
echo "timings: packages ${t_packages}s, daemons up ${t_daemons}s, total with smoke job $(since "$t0")s"
echo "export SLURM_CONF=$SLURM_CONF"
