# Shared by up.sh and down.sh: where the local cluster keeps its state, and how its daemons are found.
# Everything lives in one project-owned folder; nothing is written to /etc, and the clients find the
# cluster through SLURM_CONF (source "$STATE/env.sh", or let up.sh print the export).
#   PRUNESCOPE_SLURM_DIR        state folder (default /tmp/prunescope-slurm)
#   PRUNESCOPE_SLURM_PORT_BASE  first of four TCP ports on 127.0.0.1: slurmctld, slurmd, slurmdbd,
#                               MariaDB (default 16817, away from a site's 6817-6819 and 3306)
#   PRUNESCOPE_SLURM_PARTITION  the single partition (default debug)

STATE=${PRUNESCOPE_SLURM_DIR:-/tmp/prunescope-slurm}
CLUSTER=prunescope
PARTITION=${PRUNESCOPE_SLURM_PARTITION:-debug}
PORT_BASE=${PRUNESCOPE_SLURM_PORT_BASE:-16817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
export SLURM_CONF=$ETC/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf  # a link to SLURM_CONF while the cluster is up (see up.sh)
MUNGE_SOCKET=$RUN/munge.socket

# daemon name -> pid file and the executable that pid must be (checked before any signal: a stale pid
# file can name a pid the kernel has since given to another process)
declare -A PIDFILE=([munged]=$RUN/munged.pid [mariadbd]=$RUN/mariadbd.pid [slurmdbd]=$RUN/slurmdbd.pid
                    [slurmctld]=$RUN/slurmctld.pid [slurmd]=$RUN/slurmd.pid)
declare -A EXE=([munged]=/usr/sbin/munged [mariadbd]=/usr/sbin/mariadbd [slurmdbd]=/usr/sbin/slurmdbd
                [slurmctld]=/usr/sbin/slurmctld [slurmd]=/usr/sbin/slurmd)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stopped in reverse

# The pid of daemon $1 if its pid file names a live process running that daemon's executable.
daemon_pid() {
  local pf=${PIDFILE[$1]} pid exe want
  [ -s "$pf" ] || return 1
  pid=$(tr -dc 0-9 <"$pf")
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # Debian's /usr/sbin/slurmd is an alternatives link to slurmd-wlm; an upgraded package leaves the
  # old binary running as "<path> (deleted)"
  want=$(readlink -f "${EXE[$1]}")
  [ "$exe" = "$want" ] || [ "$exe" = "$want (deleted)" ] || return 1
  echo "$pid"
}

port_in_use() {  # $1 = TCP port on 127.0.0.1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
